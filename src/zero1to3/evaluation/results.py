"""Evaluation results: a resumable per-object JSONL store and the reports (Markdown, JSON, CSV).

Why JSONL: each finished object is one appended, flushed line, so a killed run loses at most the object it
was working on and the next run with the same output folder skips every object already there. The run's
configuration is kept beside it (``config.json``); resuming with a different configuration is refused
rather than mixing incomparable numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zero1to3.atomic import atomic_path, write_json_atomic, write_text_atomic
from zero1to3.evaluation.stats import Summary, summarize
from zero1to3.jsonable import json_safe

RESULTS_FILE = "results.jsonl"
CONFIG_FILE = "config.json"
#: Metrics where lower is better (the table marks the direction).
LOWER_IS_BETTER = {"lpips", "fid", "chamfer"}
_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS", "fid": "FID", "chamfer": "Chamfer",
           "iou": "Vol. IoU", "fscore": "F-score", "mask_iou": "Mask IoU", "masked_psnr": "Masked PSNR (dB)",
           "orbit_sides": "Orbit sides"}


class ResumeMismatch(ValueError):
    """The output folder holds results of a different configuration."""


class ResultStore:
    """Append-only per-object results in ``out_dir/results.jsonl``, tied to one configuration."""

    def __init__(self, out_dir: str | Path, config: dict[str, Any], overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / RESULTS_FILE
        cfg_path = self.out_dir / CONFIG_FILE
        config = json.loads(json.dumps(config))  # normalise (tuples -> lists) before comparing
        if overwrite:
            self.path.unlink(missing_ok=True)
        elif cfg_path.is_file() and self.path.is_file():
            old = json.loads(cfg_path.read_text())
            if old != config:
                diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                raise ResumeMismatch(f"{self.out_dir} holds results of another configuration (differs in: "
                                     f"{', '.join(diff)}); use another output folder or --overwrite")
        try:
            current = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
        except ValueError:
            current = None
        if current != config:  # written only when new or changed
            write_json_atomic(cfg_path, config)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        text = self.path.read_text()
        lines = text.splitlines()
        good: list[str] = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: that object is recomputed
            self.records[rec["object"]] = rec
            good.append(line)
        if len(good) != len(lines) or (text and not text.endswith("\n")):
            # drop the cut line with a temp file + rename: a kill now leaves the old file or the new one
            write_text_atomic(self.path, "".join(line + "\n" for line in good))

    def __contains__(self, name: str) -> bool:
        return name in self.records

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records[record["object"]] = record


@dataclass
class EvalResult:
    """Scores of one evaluation run.

    ``objects``: per-object records (``scores[method][metric]`` = the object's mean over views and
    samples); ``summary[method][metric]``: mean over objects with a 95% interval; ``paired[other][metric]``:
    the first method minus each other one, object by object (the fair test of "beats": it removes the
    spread between objects that both methods share); ``set_metrics``:
    metrics defined on the whole set only (FID); ``notices``: one line per skipped metric or object.
    """

    kind: str
    config: dict[str, Any]
    methods: list[str]
    metrics: list[str]
    objects: list[dict[str, Any]]
    summary: dict[str, dict[str, Summary]] = field(default_factory=dict)
    paired: dict[str, dict[str, Summary]] = field(default_factory=dict)
    set_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    out_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def compute_summary(self, ci: str = "t", seed: int = 0) -> None:
        """Fill :attr:`summary` from the per-object scores."""
        self.summary = {m: {k: summarize([o["scores"][m].get(k) for o in self.objects if m in o["scores"]],
                                         method=ci, seed=seed)
                            for k in self.metrics} for m in self.methods}
        first = self.methods[0] if self.methods else None
        self.paired = {}
        for other in self.methods[1:]:
            both = [o["scores"] for o in self.objects if first in o["scores"] and other in o["scores"]]
            self.paired[other] = {k: summarize([_difference(sc[first].get(k), sc[other].get(k)) for sc in both],
                                               method=ci, seed=seed) for k in self.metrics}

    def mean(self, method: str, metric: str) -> float:
        """Mean over objects (or the set-level value, for FID)."""
        if metric in self.set_metrics.get(method, {}):
            value = self.set_metrics[method][metric]
            return float("nan") if value is None else value
        return self.summary[method][metric].mean

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config, "methods": self.methods, "metrics": self.metrics,
                "ci": f"95% {self.config.get('ci', 't')} interval over objects",
                "summary": {m: {k: s.as_dict() for k, s in d.items()} for m, d in self.summary.items()},
                "paired": {f"{self.methods[0]} - {m}": {k: s.as_dict() for k, s in d.items()}
                           for m, d in self.paired.items()},
                "set_metrics": self.set_metrics, "notices": self.notices, "objects": self.objects}

    def markdown(self, digits: int = 4) -> str:
        """The summary table: one row per method, ``mean [low, high]`` per metric."""
        set_names = sorted({k for d in self.set_metrics.values() for k in d})
        cols = self.metrics + set_names
        head = ["method"] + [_LABELS.get(c, c) + (" ↓" if c in LOWER_IS_BETTER else " ↑") for c in cols] + ["objects"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in self.methods:
            cells = [m]
            for c in self.metrics:
                cells.append(_fmt_summary(self.summary[m][c], digits))
            for c in set_names:
                v = self.set_metrics.get(m, {}).get(c)
                cells.append("n/a" if v is None else f"{v:.{digits}g}" if abs(v) >= 1e4 else f"{v:.{digits}f}")
            n = max((s.n for s in self.summary[m].values()), default=0)
            cells.append(str(n))
            lines.append("| " + " | ".join(cells) + " |")
        for m, diffs in self.paired.items():
            cells = [f"{self.methods[0]} − {m} (paired)"] + [_fmt_summary(diffs[c], digits) for c in self.metrics]
            cells += [""] * len(set_names) + [str(max((s.n for s in diffs.values()), default=0))]
            lines.append("| " + " | ".join(cells) + " |")
        ci = self.config.get("ci", "t")
        lines.append("")
        lines.append(f"Mean over objects with 95% {'Student-t' if ci == 't' else 'percentile-bootstrap'} "
                     "interval in brackets; each object's score is its mean over target views and samples."
                     + (" Paired rows: per-object differences, same interval; an interval clear of 0 means the "
                        "difference is not chance." if self.paired else "")
                     + (" FID is computed once over all target views (no interval)." if set_names else ""))
        for note in self.notices:
            lines.append(f"\n> {note}")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path, stem: str = "summary") -> dict[str, Path]:
        """Write ``stem.md``, ``stem.json`` and ``stem.csv`` into ``out_dir``; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, js, cs = out / f"{stem}.md", out / f"{stem}.json", out / f"{stem}.csv"
        write_text_atomic(md, self.markdown())
        write_json_atomic(js, json_safe(self.to_dict()))
        set_names = sorted({k for d in self.set_metrics.values() for k in d})
        with atomic_path(cs) as tmp_csv, open(tmp_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["object", "method"] + self.metrics + set_names)
            for o in self.objects:
                for m in self.methods:
                    if m in o["scores"]:
                        w.writerow([o["object"], m] + [_num(o["scores"][m].get(k)) for k in self.metrics]
                                   + [""] * len(set_names))
            for m in self.methods:
                s = self.summary[m]
                setv = [_num(self.set_metrics.get(m, {}).get(k)) for k in set_names]
                w.writerow(["mean", m] + [_num(s[k].mean) for k in self.metrics] + setv)
                w.writerow(["ci95_low", m] + [_num(s[k].low) for k in self.metrics] + [""] * len(set_names))
                w.writerow(["ci95_high", m] + [_num(s[k].high) for k in self.metrics] + [""] * len(set_names))
        self.files.update({"markdown": md, "json": js, "csv": cs})
        return {"markdown": md, "json": js, "csv": cs}


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _num(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _fmt_summary(s: Summary, digits: int) -> str:
    if s.n == 0:
        return "n/a"
    if s.low is None:
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} [{s.low:.{digits}f}, {s.high:.{digits}f}]"
