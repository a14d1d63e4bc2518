"""The benchmark's result: JSON and the Markdown table docs/benchmarks.md records, with issue 4's targets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from zero1to3.benchmarking.timing import Row
from zero1to3.jsonable import json_safe

#: Issue 4's targets (H100, official size, 256 px, guidance on): (label, views, sampler, steps, max s/call).
TARGETS: tuple[tuple[str, int, str, int, float], ...] = (
    ("one view, DDIM 50", 1, "ddim", 50, 0.20),
    ("four views, DDIM 50", 4, "ddim", 50, 0.30),
    ("one view, DPM-Solver++ 20", 1, "dpmsolver++", 20, 0.08),
)
TARGET_VIEWS_PER_S_64 = 25.0
#: Issue 16's targets for the embedded model on a 2-core CPU (a laptop's first hour).
CPU_TARGETS: tuple[tuple[str, int, str, int, float], ...] = (
    ("one view, DDIM 50", 1, "ddim", 50, 5.0),
    ("12 views (orbit --views 12), DDIM 50", 12, "ddim", 50, 40.0),
)

TARGET_WARMUP_S = 60.0

#: Columns of the Markdown table (tests check them).
COLUMNS = ("path", "sampler", "steps", "views", "s/call", "views/s", "s/view", "first call s", "warm-up s",
           "peak GiB", "UNet TFLOP/s", "% of ceiling", "speed-up vs ref")

@dataclass
class BenchResult:
    rows: list[Row]
    variants: list[Row]
    env: dict
    flops_per_view_step: int
    ceiling_tflops: float
    ceiling_desc: str
    quality: dict | None = None
    fidelity: dict | None = None
    skipped: list[str] = field(default_factory=list)
    profiles: list[dict] = field(default_factory=list)
    total_s: float = 0.0

    def to_dict(self) -> dict:
        """Plain JSON types; non-finite numbers (PSNR of identical images, unmeasured cells) become None."""
        return json_safe(self._dict())

    def _dict(self) -> dict:
        return {"env": self.env, "flops_per_view_step": self.flops_per_view_step,
                "ceiling_tflops": self.ceiling_tflops, "ceiling": self.ceiling_desc,
                "rows": [r.to_dict() for r in self.rows], "variants": [r.to_dict() for r in self.variants],
                "quality": self.quality, "fidelity": self.fidelity, "skipped": self.skipped,
                "profiles": self.profiles,
                "targets": target_report(self), "total_s": self.total_s}

def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

def _sig(x: float) -> str:
    """Three significant digits: TFLOP/s spans 1e-3 (CPU) to 1e3 (H100)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.3g}"

def _table(rows: Sequence[Row]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [f"{r.path} ({r.mode}, {r.dtype})", r.sampler, f"{r.steps} ({r.unet_steps} UNet)", str(r.views),
                 _fmt(r.seconds), _fmt(r.views_per_s, 2), _fmt(r.s_per_view, 4), _fmt(r.first_call_s, 2),
                 _fmt(r.warmup_s, 2), _fmt(r.peak_gib, 2), _sig(r.unet_tflops),
                 _sig(100 * r.ceiling_fraction), (_fmt(r.speedup, 1) + "x") if math.isfinite(r.speedup) else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines

def target_report(result: BenchResult) -> list[dict]:
    """Targets against the fast rows: issue 4's on a GPU (official size, H100), issue 16's on a CPU."""
    out = []
    fast = [r for r in result.rows if r.path == "fast"]
    on_cpu = "gpu" not in result.env
    for label, views, sampler, steps, limit in CPU_TARGETS if on_cpu else TARGETS:
        hit = [r for r in fast if r.views == views and r.sampler == sampler and r.steps == steps]
        if hit:
            out.append({"target": f"{label} <= {limit} s", "measured": hit[0].seconds, "met": hit[0].seconds <= limit})
    hit = [r for r in fast if r.views == 64 and r.sampler == "ddim" and r.steps == 50]
    if hit and not on_cpu:
        out.append({"target": f"64 views, DDIM 50 >= {TARGET_VIEWS_PER_S_64} views/s", "measured": hit[0].views_per_s,
                    "met": hit[0].views_per_s >= TARGET_VIEWS_PER_S_64})
    warm = [r.first_call_s for r in fast if math.isfinite(r.first_call_s)]
    if warm:
        out.append({"target": f"first-call warm-up < {TARGET_WARMUP_S} s", "measured": max(r.warmup_s for r in fast),
                    "met": max(r.warmup_s for r in fast) < TARGET_WARMUP_S})
    return out

def to_markdown(result: BenchResult) -> str:
    """The whole report as Markdown (what docs/benchmarks.md needs)."""
    env = result.env
    where = env.get("gpu", f"CPU ({env.get('cpu_threads')} threads of {env.get('cpus')} cores, 1-min load average "
                           f"{env.get('load_average_1min')} at the start)")
    lines = [f"## Sampling speed on {where}", "",
             f"torch {env['torch']}, diffusers {env['diffusers']}, Python {env['python']}"
             + (f", CUDA {env['cuda']}, cuDNN {env['cudnn']}" if "cuda" in env else "") + ".",
             f"One guided UNet step = {result.flops_per_view_step / 1e9:.1f} GFLOP per view (FlopCounterMode, "
             f"batch [uncond; cond]); ceiling: {result.ceiling_tflops:.3g} TFLOP/s ({result.ceiling_desc}).",
             "s/call = one whole `pipe(image, poses)` call (encoders, sampler, VAE decode, uint8), median; "
             "first call includes graph capture / compile; warm-up = first call - steady call.", ""]
    lines += _table(result.rows)
    ref = [r for r in result.rows if r.path == "reference"]
    if ref:
        lines += ["", "Reference path (fp32, eager) measured at "
                  + ", ".join(str(r.views) for r in ref) + " views only (it is slow); speed-ups of larger batches "
                  "use the reference's s/view at its largest measured view count."]
    if result.variants:
        lines += ["", "### Ablations (DDIM, fastest and slowest batch)", ""] + _table(result.variants)
    if result.fidelity:
        f = result.fidelity
        lines += ["", f"Fast path vs reference images (same seed, DDIM, {f['images']} images): PSNR "
                  f"{f['psnr_mean']:.2f} dB, SSIM {f['ssim_mean']:.4f}, max |diff| {f['max_abs_uint8']}/255, "
                  f"mean |diff| {f['mean_abs_uint8']:.3f}/255."]
    if result.quality:
        q = result.quality
        lines += ["", f"Fewer steps: {q['fast']} vs {q['reference']} from the same initial noise "
                  f"({q['images']} image x {q['views_per_image']} views): PSNR {q['psnr_mean']:.2f} dB "
                  f"(min {q['psnr_min']:.2f}), SSIM {q['ssim_mean']:.4f} (min {q['ssim_min']:.4f})."]
    for prof in result.profiles:
        lines += ["", f"### Where the time goes: {prof['views']} view(s), {prof['sampler']}, {prof['mode']}", "",
                  "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in prof["stages_s"].items()]
        if "step_ms_by_class" in prof:
            lines += ["", f"One guided UNet step, GPU time by kernel class (total {prof['step_gpu_ms']:.2f} ms):", "",
                      "| kernel class | ms per step | share |", "|---|---|---|"]
            lines += [f"| {k} | {v:.3f} | {100 * v / prof['step_gpu_ms']:.0f}% |"
                      for k, v in prof["step_ms_by_class"].items()]
    targets = target_report(result)
    if targets:
        lines += ["", "### Targets", ""] + [f"- {t['target']}: {t['measured']:.3f} -> {'met' if t['met'] else 'NOT met'}"
                                           for t in targets]
    if result.skipped:
        lines += ["", "Skipped: " + "; ".join(result.skipped) + "."]
    lines += ["", f"Benchmark wall time: {result.total_s:.0f} s."]
    return "\n".join(lines) + "\n"
