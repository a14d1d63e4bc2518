"""A one-screen summary of an evaluation run for the terminal (the full table goes to ``summary.md``).

Why a second table: with PSNR, SSIM, LPIPS, mask IoU, masked PSNR and the side check, ``mean [low, high]``
cells make rows ~200 characters wide. Here each cell is ``mean ±half-width`` of the 95% interval (for an
asymmetric bootstrap interval the larger half), and a paired difference whose interval excludes 0 is marked
``*``.
"""

from __future__ import annotations

import math

from zero1to3.evaluation.results import LOWER_IS_BETTER, EvalResult
from zero1to3.evaluation.stats import Summary

_SHORT = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID", "mask_iou": "IoU",
          "masked_psnr": "mPSNR", "orbit_sides": "sides", "chamfer": "Chamfer", "iou": "IoU", "fscore": "F"}
_DIGITS = {"psnr": 2, "masked_psnr": 2, "fid": 1, "orbit_sides": 2}


def _cell(s: Summary, digits: int, signed: bool = False) -> str:
    if s.n == 0 or not math.isfinite(s.mean):
        return "n/a"
    sign = "+" if signed else ""
    text = f"{s.mean:{sign}.{digits}f}"
    if s.low is not None and s.high is not None:
        text += f" ±{max(s.mean - s.low, s.high - s.mean):.{digits}f}"
        if signed and (s.low > 0 or s.high < 0):
            text += "*"
    return text


def console_table(result: EvalResult) -> str:
    """Compact Markdown table: one row per method and per paired difference, then the notices (one line each)."""
    set_names = sorted({k for d in result.set_metrics.values() for k in d})
    cols = result.metrics + set_names
    head = ["method"] + [_SHORT.get(c, c) + (" ↓" if c in LOWER_IS_BETTER else " ↑") for c in cols] + ["n"]
    rows = []
    for m in result.methods:
        cells = [m] + [_cell(result.summary[m][c], _DIGITS.get(c, 3)) for c in result.metrics]
        for c in set_names:
            v = result.set_metrics.get(m, {}).get(c)
            cells.append("n/a" if v is None else f"{v:.{_DIGITS.get(c, 3)}f}")
        cells.append(str(max((s.n for s in result.summary[m].values()), default=0)))
        rows.append(cells)
    for m, diffs in result.paired.items():
        cells = [f"{result.methods[0]} − {m}"] + [_cell(diffs[c], _DIGITS.get(c, 3), signed=True)
                                                   for c in result.metrics]
        cells += [""] * len(set_names) + [str(max((s.n for s in diffs.values()), default=0))]
        rows.append(cells)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]
    ci = "Student-t" if result.config.get("ci", "t") == "t" else "bootstrap"
    out.append(f"mean ±half-width of the 95% {ci} interval over objects; rows 'A − B': paired per-object "
               "differences, * = interval clear of 0.")
    out += [f"note: {n}" for n in result.notices]
    return "\n".join(out) + "\n"
