"""The sampling speed benchmark: the reference-like path (fp32, eager, DDIM 50) against the fast path, in one process.

Why one process and one table: speed-ups are only meaningful against a baseline measured on the same card in
the same run. Each row reports seconds per call (a whole ``pipe(...)`` call: encoders, sampler, VAE decode,
uint8), views/s, peak GPU memory, the UNet's achieved FLOP rate (one guided step counted with
``torch.utils.flop_counter.FlopCounterMode``, multiplied by the steps run) as a fraction of a bf16 matmul
ceiling measured in the same run, the speed-up over the reference and the first call's extra seconds
(graph capture / compile) separately. ``solver_agreement`` checks that 20-step DPM-Solver++ lands on the
50-step DDIM images (PSNR/SSIM from the same initial noise).
"""

from __future__ import annotations

import copy
import gc
import time
from typing import Any, Callable

import numpy as np
import torch
from torch._dynamo.utils import compile_times

from zero1to3.benchmarking.config import DEFAULT_GPU_VARIANTS, PLAIN, VARIANTS, BenchConfig
from zero1to3.benchmarking.flops import count_unet_flops, matmul_ceiling, profile_call
from zero1to3.benchmarking.quality import fidelity as images_fidelity
from zero1to3.benchmarking.quality import solver_agreement
from zero1to3.benchmarking.report import BenchResult
from zero1to3.benchmarking.timing import Row, environment, measure, synthetic_image
from zero1to3.camera import orbit
from zero1to3.fast import fast_mode
from zero1to3.pipeline import DTYPES, Zero123Pipeline


def clone_pipeline(pipe: Zero123Pipeline, dtype: torch.dtype | None = None) -> Zero123Pipeline:
    """An independent copy of the modules (no captured graphs travel with it), optionally recast."""
    new = Zero123Pipeline(copy.deepcopy(pipe.unet), copy.deepcopy(pipe.vae), copy.deepcopy(pipe.image_encoder),
                          copy.deepcopy(pipe.camera_projection), copy.deepcopy(pipe.scheduler),
                          pipe.feature_extractor, pose_encoding=pipe.pose_encoding)
    new.cpu_threads = pipe.cpu_threads
    return new.to(dtype=dtype) if dtype is not None else new


def _load_pipeline(cfg: BenchConfig, device: torch.device, dtype: torch.dtype) -> Zero123Pipeline:
    if cfg.model is not None:
        pipe = Zero123Pipeline.from_pretrained(cfg.model, image_encoder=cfg.image_encoder, device=device, dtype=dtype)
    else:
        pipe = Zero123Pipeline.from_preset(_preset_name(cfg, device), cfg.seed, device, dtype)
    pipe.cpu_threads = cfg.threads  # None: the library's choice for the model's size (zero1to3.cpu_threads)
    chosen = pipe.sampling_threads()
    if chosen is not None:  # also for the parts timed outside pipe(...) calls, and the reported count
        torch.set_num_threads(chosen)
    return pipe


def _preset_name(cfg: BenchConfig, device: torch.device) -> str:
    return cfg.preset_name or ("zero123" if device.type == "cuda" else "tiny")


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchResult:
    """Measure everything ``cfg`` asks for, reference first; skips (and lists) what the time budget cannot fit."""
    t_start = time.perf_counter()
    device = torch.device(cfg.resolved_device())
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device} asked for, but no CUDA device is available")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fast_dtype = DTYPES[cfg.dtype] if device.type == "cuda" else torch.float32
    skipped: list[str] = []

    def left() -> float:
        return cfg.time_budget_s - (time.perf_counter() - t_start)

    def fits(label: str, need: float) -> bool:
        if left() >= need:
            return True
        skipped.append(f"{label} (time budget: {left():.0f} s left, ~{need:.0f} s needed)")
        log(f"skip: {skipped[-1]}")
        return False

    t0 = time.perf_counter()
    ref_pipe = None
    if cfg.include_reference:
        ref_pipe = _load_pipeline(cfg, device, torch.float32)
        ref_pipe.enable_fast_path(None)  # the reference path: fp32, eager
        fast_pipe = clone_pipeline(ref_pipe, fast_dtype)
    else:
        fast_pipe = _load_pipeline(cfg, device, fast_dtype)
    if cfg.fast_path:
        fast_pipe.enable_fast_path(cfg.fast_path, **_main_options(cfg))
    else:
        fast_pipe.enable_fast_path(None)
    what = cfg.model or f"random weights, preset {_preset_name(cfg, device)}"
    log(f"model ready in {time.perf_counter() - t0:.1f} s ({what}"
        f"; {fast_pipe.image_size} px; fast path {fast_mode(fast_pipe)} {str(fast_dtype).replace('torch.', '')})")

    env = environment(device)
    ceiling, ceiling_desc = matmul_ceiling(device)
    log(f"matmul ceiling: {ceiling:.3g} TFLOP/s ({ceiling_desc})")
    flops = count_unet_flops(fast_pipe, guidance=cfg.guidance_scale != 1.0)
    log(f"UNet FLOPs per view per step (guided): {flops / 1e9:.1f} GFLOP")
    common = dict(repeats=cfg.repeats, flops_per_view_step=flops, ceiling_tflops=ceiling,
                  guidance_scale=cfg.guidance_scale, seed=cfg.seed)

    rows: list[Row] = []
    outputs: dict[tuple[str, int], np.ndarray] = {}
    ref_views = cfg.reference_views if cfg.reference_views is not None else tuple(v for v in cfg.views if v <= 4)
    if ref_pipe is not None:
        for v in ref_views:
            if not fits(f"reference DDIM {cfg.steps} at {v} views", 20.0 + 8.0 * v):
                continue
            row, out = measure(ref_pipe, path="reference", views=v, scheduler="ddim", steps=cfg.steps,
                               **{**common, "repeats": cfg.reference_repeats})
            rows.append(row)
            outputs[("reference", v)] = out
            log(_row_line(row))
    ref_rows = {r.views: r for r in rows if r.path == "reference"}

    for scheduler, steps in (("ddim", cfg.steps), ("dpmsolver++", cfg.solver_steps)):
        for v in cfg.views:
            if not fits(f"fast {scheduler} {steps} at {v} views", 15.0 + 0.3 * v):
                continue
            row, out = measure(fast_pipe, path="fast", views=v, scheduler=scheduler, steps=steps, **common)
            _speedup(row, ref_rows)
            rows.append(row)
            if scheduler == "ddim":
                outputs[("fast", v)] = out
            log(_row_line(row))

    fidelity = None
    shared = [v for v in ref_views if ("reference", v) in outputs and ("fast", v) in outputs]
    if shared:
        fidelity = images_fidelity(np.concatenate([outputs[("fast", v)] for v in shared]),
                             np.concatenate([outputs[("reference", v)] for v in shared]))
        fidelity["views"] = shared
        log(f"fast vs reference images (DDIM {cfg.steps}, same seed): {fidelity}")

    quality = None
    if cfg.quality and cfg.quality_views > 0 and fits("DPM-Solver++ vs DDIM quality", 20.0):
        quality = solver_agreement(fast_pipe, [synthetic_image(fast_pipe.image_size, cfg.seed)],
                                   orbit(cfg.quality_views), fast_steps=cfg.solver_steps,
                                   ref_steps=cfg.steps, guidance_scale=cfg.guidance_scale, seed=cfg.seed)
        log(f"DPM-Solver++ {cfg.solver_steps} vs DDIM {cfg.steps}: PSNR {quality['psnr_mean']:.2f} dB, "
            f"SSIM {quality['ssim_mean']:.4f}")

    profiles = []
    for v in cfg.profile_views:
        if fits(f"profile at {v} views", 10.0 + 0.3 * v):
            profiles.append(profile_call(fast_pipe, v, steps=cfg.steps, guidance_scale=cfg.guidance_scale,
                                         seed=cfg.seed))
            log(f"profile at {v} views: {profiles[-1]}")

    variants: list[Row] = []
    variant_names = cfg.resolved_variants()
    if variant_names and device.type == "cuda":
        variants = _run_variants(cfg, fast_pipe, ref_pipe, common, ref_rows, fits, log)
    elif variant_names:
        skipped.append("ablation variants (CUDA only)")

    result = BenchResult(rows=rows, variants=variants, env=env, flops_per_view_step=flops, ceiling_tflops=ceiling,
                         ceiling_desc=ceiling_desc, quality=quality, fidelity=fidelity, skipped=skipped,
                         profiles=profiles)
    result.total_s = time.perf_counter() - t_start
    if cfg.fast_mode == "compile":  # where the compile time went (dynamo / inductor phases, aggregated)
        log("compile times (s):\n" + str(compile_times(repr="str", aggregate=True)))
    return result


def _run_variants(cfg: BenchConfig, fast_pipe: Zero123Pipeline, ref_pipe: Zero123Pipeline | None, common: dict,
                  ref_rows: dict, fits: Callable[[str, float], bool], log: Callable[[str], None]) -> list[Row]:
    """Each ablation at the smallest and largest view counts, DDIM, on a pipeline of the variant's precision."""
    rows = []
    views = sorted({min(cfg.views), max(cfg.views)})
    for name in cfg.resolved_variants():
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}")
        mode, options, dtype_name, need = VARIANTS[name]
        if not fits(f"variant {name}", need):
            continue
        pipe = fast_pipe
        if DTYPES[dtype_name] != fast_pipe.dtype:
            source = ref_pipe if ref_pipe is not None else fast_pipe
            pipe = clone_pipeline(source, DTYPES[dtype_name])
        pipe.enable_fast_path(mode, **options) if mode else pipe.enable_fast_path(None)
        try:
            for v in views:
                if not fits(f"variant {name} at {v} views", need + 0.3 * v):
                    continue
                row, _ = measure(pipe, path=name, views=v, scheduler="ddim", steps=cfg.steps, **common)
                _speedup(row, ref_rows)
                rows.append(row)
                log(_row_line(row))
        except Exception as exc:  # an ablation failing must not lose the main table
            log(f"variant {name} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            pipe.enable_fast_path(None)
            if pipe is not fast_pipe:
                del pipe
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    # leave the main pipeline as the main table measured it
    fast_pipe.enable_fast_path(cfg.fast_path, **_main_options(cfg)) if cfg.fast_path \
        else fast_pipe.enable_fast_path(None)
    return rows


def _main_options(cfg: BenchConfig) -> dict[str, Any]:
    options: dict[str, Any] = {"channels_last": cfg.channels_last, "fuse_qkv": cfg.fuse_qkv,
                               "inductor_tuning": cfg.inductor_tuning}
    if cfg.fast_mode == "compile":
        options["compile_scope"] = cfg.compile_scope
        if cfg.compile_codecs is not None:
            options["compile_codecs"] = cfg.compile_codecs
    return options


def _speedup(row: Row, ref_rows: dict[int, Row]) -> None:
    """Reference s/view at the same view count, else at the largest measured count below it (said in the basis)."""
    if not ref_rows:
        return
    below = [v for v in ref_rows if v <= row.views] or list(ref_rows)
    v = max(below)
    row.speedup = ref_rows[v].s_per_view / row.s_per_view
    row.speedup_basis = f"reference DDIM {ref_rows[v].steps} at {v} view{'s' if v > 1 else ''}"


def _row_line(row: Row) -> str:
    return (f"{row.path:>12} {row.sampler:>11} {row.steps:3d} steps {row.views:3d} views: {row.seconds:.3f} s/call "
            f"({row.views_per_s:.2f} views/s, first call {row.first_call_s:.2f} s)")
