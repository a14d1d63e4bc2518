"""Sampling speed benchmark: the reference-like path (fp32, eager, DDIM 50) against the fast path, in one process.

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
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from zero1to3.camera import RelativePose
from zero1to3.fast import fast_mode
from zero1to3.model import build_camera_projection, build_image_encoder, build_scheduler, build_unet, build_vae, preset
from zero1to3.pipeline import Conditioning, Zero123Pipeline, make_scheduler, reference_ddim_timesteps, to_uint8

#: Issue 4's targets (H100, official size, 256 px, guidance on): (label, views, sampler, steps, max s/call).
TARGETS: tuple[tuple[str, int, str, int, float], ...] = (
    ("one view, DDIM 50", 1, "ddim", 50, 0.20),
    ("four views, DDIM 50", 4, "ddim", 50, 0.30),
    ("one view, DPM-Solver++ 20", 1, "dpmsolver++", 20, 0.08),
)
TARGET_VIEWS_PER_S_64 = 25.0
TARGET_WARMUP_S = 60.0

#: Columns of the Markdown table (tests check them).
COLUMNS = ("path", "sampler", "steps", "views", "s/call", "views/s", "s/view", "first call s", "warm-up s",
           "peak GiB", "UNet TFLOP/s", "% of ceiling", "speed-up vs ref")


@dataclass
class Row:
    """One measured configuration."""

    path: str  # "reference" (fp32 eager) or "fast" (or an ablation variant name)
    sampler: str
    steps: int  # requested sampler steps
    unet_steps: int  # guided UNet evaluations actually run
    views: int
    dtype: str
    mode: str  # eager / cuda_graph / compile
    seconds: float = math.nan  # median seconds per call
    seconds_all: list[float] = field(default_factory=list)
    first_call_s: float = math.nan
    peak_gib: float = math.nan
    unet_tflops: float = math.nan  # achieved UNet TFLOP/s
    ceiling_fraction: float = math.nan
    speedup: float = math.nan  # reference s/view over this row's s/view
    speedup_basis: str = ""
    note: str = ""

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else math.nan

    @property
    def s_per_view(self) -> float:
        return self.seconds / self.views

    @property
    def warmup_s(self) -> float:
        """What the first call cost beyond a steady call: capture, compile, cuDNN search, allocator growth."""
        return max(0.0, self.first_call_s - self.seconds) if math.isfinite(self.first_call_s) else math.nan

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(views_per_s=self.views_per_s, s_per_view=self.s_per_view, warmup_s=self.warmup_s)
        return d


@dataclass
class BenchConfig:
    """What to measure. ``model`` None means random weights of ``preset_name``."""

    device: str = "cuda"
    model: str | None = None
    image_encoder: str | None = None
    preset_name: str | None = None  # default: zero123 on CUDA, tiny on CPU
    dtype: str = "fp16"  # fast-path precision (fp16 / bf16 / fp32)
    fast_mode: str | None = "cuda_graph"
    channels_last: bool = False
    fuse_qkv: bool = False
    inductor_tuning: bool = False
    compile_scope: str = "blocks"
    compile_codecs: tuple[str, ...] | None = None  # None: the fast path's default (all parts)
    views: tuple[int, ...] = (1, 4, 16, 64)
    steps: int = 50
    solver_steps: int = 20
    include_reference: bool = False
    reference_views: tuple[int, ...] | None = None  # default: the requested views <= 4 (fp32 is slow)
    repeats: int = 3
    reference_repeats: int = 2
    guidance_scale: float = 3.0
    quality: bool = True
    quality_views: int = 4
    variants: tuple[str, ...] = ()  # ablations at the smallest and largest view counts (see VARIANTS)
    time_budget_s: float = 480.0  # skip what would not fit; the whole run must stay under the device limit
    threads: int | None = None  # CPU threads (default 2 on CPU)
    seed: int = 0
    profile_views: tuple[int, ...] = ()  # where the time of one call goes (stages and kernel classes)


PLAIN = {"single_token_attention": False, "graph_codecs": False}
#: Ablations: name -> (fast_mode, FastConfig options, dtype, rough seconds one row needs (compile: per shape)).
VARIANTS: dict[str, tuple[str | None, dict[str, bool], str, float]] = {
    "eager-fp16": (None, {}, "fp16", 30.0),
    "graph": ("cuda_graph", {}, "fp16", 20.0),
    "graph+cl": ("cuda_graph", {"channels_last": True}, "fp16", 20.0),
    "graph+qkv": ("cuda_graph", {"fuse_qkv": True}, "fp16", 20.0),
    "graph+cl+qkv": ("cuda_graph", {"channels_last": True, "fuse_qkv": True}, "fp16", 20.0),
    "graph-bf16": ("cuda_graph", {}, "bf16", 20.0),
    "compile": ("compile", {}, "fp16", 150.0),
    "compile+cl": ("compile", {"channels_last": True}, "fp16", 150.0),
    "compile+cl+qkv": ("compile", {"channels_last": True, "fuse_qkv": True}, "fp16", 150.0),
    "compile+cl+tune": ("compile", {"channels_last": True, "inductor_tuning": True}, "fp16", 150.0),
    "compile+cl+unet": ("compile", {"channels_last": True, "compile_scope": "unet"}, "fp16", 150.0),
    "compile+cl+blocks-static": ("compile", {"channels_last": True, "compile_scope": "blocks-static"}, "fp16", 100.0),
    # without the one-token attention shortcut and the captured encoders/decoder (the earlier fast path)
    "graph+cl-plain": ("cuda_graph", {"channels_last": True, **PLAIN}, "fp16", 20.0),
    "compile+cl-plain": ("compile", {"channels_last": True, **PLAIN}, "fp16", 150.0),
}
DEFAULT_GPU_VARIANTS = ("graph+cl", "graph+cl-plain", "compile+cl", "compile+cl+unet")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        return _json_safe(self._dict())

    def _dict(self) -> dict:
        return {"env": self.env, "flops_per_view_step": self.flops_per_view_step,
                "ceiling_tflops": self.ceiling_tflops, "ceiling": self.ceiling_desc,
                "rows": [r.to_dict() for r in self.rows], "variants": [r.to_dict() for r in self.variants],
                "quality": self.quality, "fidelity": self.fidelity, "skipped": self.skipped,
                "profiles": self.profiles,
                "targets": target_report(self), "total_s": self.total_s}


def _json_safe(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------- building blocks
def build_random_pipeline(preset_name: str, device: str | torch.device, dtype: torch.dtype = torch.float32,
                          seed: int = 0) -> Zero123Pipeline:
    """Random weights of a preset, constructed directly on ``device``: the 860M UNet builds in seconds on a GPU
    instead of running its initialisers on the CPU and copying."""
    config = preset(preset_name)
    torch.manual_seed(seed)
    dev = torch.device(device)
    with dev:
        parts = (build_unet(config), build_vae(config), build_image_encoder(config), build_camera_projection(config))
    pipe = Zero123Pipeline(*parts, build_scheduler(), pose_encoding=config.pose_encoding)
    return pipe.to(dev, dtype)


def clone_pipeline(pipe: Zero123Pipeline, dtype: torch.dtype | None = None) -> Zero123Pipeline:
    """An independent copy of the modules (no captured graphs travel with it), optionally recast."""
    new = Zero123Pipeline(copy.deepcopy(pipe.unet), copy.deepcopy(pipe.vae), copy.deepcopy(pipe.image_encoder),
                          copy.deepcopy(pipe.camera_projection), copy.deepcopy(pipe.scheduler),
                          pipe.feature_extractor, pose_encoding=pipe.pose_encoding)
    return new.to(dtype=dtype) if dtype is not None else new


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """An object-like RGB input on white (an ellipse with a gradient), so no file or network is needed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = 0.28 + 0.05 * rng.random(), 0.22 + 0.05 * rng.random()
    inside = ((xx - 0.5) / a) ** 2 + ((yy - 0.5) / b) ** 2 <= 1.0
    img = np.full((size, size, 3), 255, np.uint8)
    color = np.stack([200 * xx + 30, 180 * yy + 40, 120 + 60 * rng.random() * np.ones_like(xx)], -1)
    img[inside] = color[inside].clip(0, 255).astype(np.uint8)
    return img


def orbit_poses(views: int) -> list[RelativePose]:
    """``views`` target cameras on a ring (one sample each): the batch is ``views`` denoised images."""
    return [RelativePose.from_degrees(-10.0 + 20.0 * (i % 2), 360.0 * i / views, 0.0) for i in range(views)]


def unet_steps(pipe: Zero123Pipeline, scheduler: str, steps: int) -> int:
    """Guided UNet evaluations a sampler run makes (DDIM's reference trajectory runs N-1 for N requested)."""
    sched = make_scheduler(scheduler, pipe.scheduler.config)
    if scheduler == "ddim":
        return len(reference_ddim_timesteps(sched, steps))
    sched.set_timesteps(steps)
    return len(sched.timesteps)


@torch.no_grad()
def count_unet_flops(pipe: Zero123Pipeline, guidance: bool = True) -> int:
    """FLOPs of one guided denoiser step for ONE view (UNet on the [uncond; cond] batch of 2), counted once.

    Counted in eager mode on the pipeline's device with random inputs; matmuls, convolutions and attention
    are what FlopCounterMode counts (elementwise work is not), which is the part the ceiling speaks to.
    """
    from torch.utils.flop_counter import FlopCounterMode

    size = pipe.unet.config.sample_size
    gen = torch.Generator().manual_seed(0)
    n = 2 if guidance else 1
    x = torch.randn(n, 4, size, size, generator=gen).to(pipe.device, pipe.dtype)
    concat = torch.randn(n, 4, size, size, generator=gen).to(pipe.device, pipe.dtype)
    ctx = torch.randn(n, 1, pipe.unet.config.cross_attention_dim, generator=gen).to(pipe.device, pipe.dtype)
    t = torch.full((n,), 500, device=pipe.device, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        pipe.unet_eps(x, t, concat, ctx)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: str | torch.device, n: int | None = None, repeats: int = 20) -> tuple[float, str]:
    """Measured matrix-product rate in TFLOP/s: bf16 8192^3 on CUDA (the denoiser's arithmetic), fp32 on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        n = n or 8192
        dtype = torch.bfloat16
    else:
        n = n or 1024
        dtype = torch.float32
    gen = torch.Generator(device=device).manual_seed(1)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    for _ in range(3):
        torch.mm(a, b)
    _sync(device)
    times = []
    for _ in range(repeats if device.type == "cuda" else 3):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.mm(a, b)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return 2 * n ** 3 / seconds / 1e12, f"{str(dtype).replace('torch.', '')} {n}^3 matmul (median of {len(times)})"


def time_calls(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, list[float], object]:
    """(first-call seconds, steady seconds per repeat, last result); host clock around synchronised calls
    (a call ends in a device->host copy of the images, so it is synchronous anyway)."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return first, times, out


def measure(pipe: Zero123Pipeline, *, path: str, views: int, scheduler: str, steps: int, repeats: int,
            flops_per_view_step: int, ceiling_tflops: float, guidance_scale: float = 3.0, seed: int = 0,
            image: np.ndarray | None = None) -> tuple[Row, np.ndarray]:
    """Time ``pipe(image, views poses, num_samples=1)``; returns the row and the last output array."""
    device = pipe.device
    image = synthetic_image(pipe.image_size, seed) if image is None else image
    poses = orbit_poses(views)
    n_unet = unet_steps(pipe, scheduler, steps)

    def call():
        return pipe(image, poses, num_samples=1, num_inference_steps=steps, scheduler=scheduler,
                    guidance_scale=guidance_scale, seed=seed, preprocess=False).array

    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    first, times, out = time_calls(call, repeats, device)
    row = Row(path=path, sampler=scheduler, steps=steps, unet_steps=n_unet, views=views,
              dtype=str(pipe.dtype).replace("torch.", ""), mode=fast_mode(pipe), first_call_s=first,
              seconds=statistics.median(times), seconds_all=times)
    if device.type == "cuda":
        row.peak_gib = torch.cuda.max_memory_allocated(device) / 2 ** 30
    fast = getattr(pipe, "_fast_denoiser", None)
    if fast is not None and fast.failures:  # a failed capture ran eager: say so rather than mislabel the row
        row.mode += " (capture failed: eager)"
        row.note = "; ".join(fast.failures)
    flops = flops_per_view_step * n_unet * views
    row.unet_tflops = flops / row.seconds / 1e12
    row.ceiling_fraction = row.unet_tflops / ceiling_tflops if ceiling_tflops > 0 else math.nan
    return row, out


#: Kernel classes of the profile, first match wins (names of cuDNN, cuBLAS, FlashAttention, inductor kernels).
KERNEL_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("convolution", ("fprop", "conv", "implicit")),
    ("matmul", ("gemm", "nvjet", "matmul", "cublas")),
    ("inductor fused", ("triton",)),
    ("normalisation", ("norm",)),
)


def kernel_class(name: str) -> str:
    lower = name.lower()
    return next((label for label, keys in KERNEL_CLASSES if any(k in lower for k in keys)), "other elementwise/copy")


@torch.no_grad()
def profile_call(pipe: Zero123Pipeline, views: int, *, scheduler: str = "ddim", steps: int = 50,
                 guidance_scale: float = 3.0, seed: int = 0, repeats: int = 3) -> dict:
    """Where one ``pipe(image, views poses)`` call spends its time: host-timed stages (input encoding,
    sampler, VAE decode + uint8, median of ``repeats``) and the time of one guided UNet step by kernel class
    (torch.profiler over the fast path's step body run outside its graph: the same kernels)."""
    from zero1to3 import fast as fast_module

    device = pipe.device
    image = pipe.image_to_tensor(synthetic_image(pipe.image_size, seed))
    vectors = pipe.pose_vectors(orbit_poses(views))
    stages: dict[str, list[float]] = {"encode input": [], "sampler": [], "decode + uint8": []}
    for _ in range(repeats + 1):  # the first round warms up (capture / compile) and is dropped
        t0 = time.perf_counter()
        cond = Conditioning(*fast_module.encode_condition(pipe, image)).repeat(views)
        _sync(device)
        t1 = time.perf_counter()
        lat = pipe.sample_latents(cond, vectors, num_inference_steps=steps, guidance_scale=guidance_scale,
                                  scheduler=scheduler, generator=torch.Generator().manual_seed(seed))
        _sync(device)
        t2 = time.perf_counter()
        to_uint8(fast_module.decode_latents(pipe, lat))
        t3 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
            stages[key].append(dt)
    out: dict = {"views": views, "sampler": f"{scheduler} {steps}", "mode": fast_mode(pipe),
                 "stages_s": {k: statistics.median(v[1:]) for k, v in stages.items()}}
    fast = getattr(pipe, "_fast_denoiser", None)
    entries = [e for e in (fast._entries.values() if fast is not None else []) if e.x.shape[0] == views]
    if not entries:  # eager path: nothing captured to profile
        return out
    from torch.profiler import ProfilerActivity, profile

    entry, runs = entries[0], 3
    guided = entry.concat.shape[0] == 2 * views
    on_gpu = device.type == "cuda"  # on CPU ("static" mode, tests) the classes are of aten ops' own time
    with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            fast._run_body(entry, guided)
        _sync(device)
    per_class: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for ev in prof.key_averages():
        us = (getattr(ev, "self_device_time_total", 0.0) if on_gpu else ev.self_cpu_time_total) or 0.0
        if us <= 0 or ev.key.startswith(("cudaGraph", "Memcpy", "Memset")):
            continue
        ms, label = us / runs / 1e3, kernel_class(ev.key)
        per_class[label] = per_class.get(label, 0.0) + ms
        kernels[ev.key] = kernels.get(ev.key, 0.0) + ms
    out["step_gpu_ms"] = sum(per_class.values())
    out["step_ms_by_class"] = dict(sorted(per_class.items(), key=lambda kv: -kv[1]))
    out["top_kernels_ms"] = dict(sorted(kernels.items(), key=lambda kv: -kv[1])[:8])
    return out


def _psnr_ssim(a: np.ndarray, b: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of uint8 [N,H,W,3] arrays, data range 1 (torchmetrics functional)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    ta = torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255.0
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).double() / 255.0
    psnr = [float(peak_signal_noise_ratio(ta[i:i + 1], tb[i:i + 1], data_range=1.0)) for i in range(len(ta))]
    ssim = [float(structural_similarity_index_measure(ta[i:i + 1], tb[i:i + 1], data_range=1.0))
            for i in range(len(ta))]
    return psnr, ssim


@torch.no_grad()
def solver_agreement(pipe: Zero123Pipeline, images: Sequence[np.ndarray | object], poses: Sequence[RelativePose],
                     *, fast_steps: int = 20, ref_steps: int = 50, guidance_scale: float = 3.0,
                     seed: int = 0) -> dict:
    """PSNR/SSIM of ``fast_steps`` DPM-Solver++ outputs against ``ref_steps`` DDIM outputs, same initial noise.

    Why: fewer steps are only a speed-up if the images stay the same; the initial latent x_T is shared so
    any difference is the solver's. (With random weights this measures numerics only; give real weights.)
    """
    size = pipe.unet.config.sample_size
    psnr, ssim = [], []
    for k, image in enumerate(images):
        gen = torch.Generator().manual_seed(seed + k)
        x_t = torch.randn(len(poses), 4, size, size, generator=gen)
        common = dict(num_samples=1, guidance_scale=guidance_scale, seed=seed + k, latents=x_t,
                      preprocess=not isinstance(image, np.ndarray))
        ref = pipe(image, list(poses), num_inference_steps=ref_steps, scheduler="ddim", **common).array[:, 0]
        fast = pipe(image, list(poses), num_inference_steps=fast_steps, scheduler="dpmsolver++", **common).array[:, 0]
        p, s = _psnr_ssim(fast, ref)
        psnr += p
        ssim += s
    return {"fast": f"dpmsolver++ {fast_steps}", "reference": f"ddim {ref_steps}", "images": len(images),
            "views_per_image": len(poses), "psnr_mean": float(np.mean(psnr)), "ssim_mean": float(np.mean(ssim)),
            "psnr_min": float(np.min(psnr)), "ssim_min": float(np.min(ssim)), "psnr": psnr, "ssim": ssim}


def _fidelity(fast: np.ndarray, ref: np.ndarray) -> dict:
    """How far the fast path's uint8 images are from the fp32 reference's (same seed, same views)."""
    fast, ref = fast.reshape(-1, *fast.shape[-3:]), ref.reshape(-1, *ref.shape[-3:])
    psnr, ssim = _psnr_ssim(fast, ref)
    diff = np.abs(fast.astype(np.int16) - ref.astype(np.int16))
    return {"images": len(fast), "psnr_mean": float(np.mean(psnr)), "ssim_mean": float(np.mean(ssim)),
            "max_abs_uint8": int(diff.max()), "mean_abs_uint8": float(diff.mean())}


def environment(device: torch.device) -> dict:
    import diffusers

    env = {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
           "device": str(device), "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env


# ---------------------------------------------------------------------- the benchmark
def _load_pipeline(cfg: BenchConfig, device: torch.device, dtype: torch.dtype) -> Zero123Pipeline:
    if cfg.model is not None:
        return Zero123Pipeline.from_pretrained(cfg.model, image_encoder=cfg.image_encoder, device=device, dtype=dtype)
    return build_random_pipeline(_preset_name(cfg, device), device, dtype, cfg.seed)


def _preset_name(cfg: BenchConfig, device: torch.device) -> str:
    return cfg.preset_name or ("zero123" if device.type == "cuda" else "tiny")


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> BenchResult:
    """Measure everything ``cfg`` asks for, reference first; skips (and lists) what the time budget cannot fit."""
    t_start = time.perf_counter()
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device} asked for, but no CUDA device is available")
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads or min(2, os.cpu_count() or 1))
    elif cfg.threads:
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
    if cfg.fast_mode:
        fast_pipe.enable_fast_path(cfg.fast_mode, **_main_options(cfg))
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
        fidelity = _fidelity(np.concatenate([outputs[("fast", v)] for v in shared]),
                             np.concatenate([outputs[("reference", v)] for v in shared]))
        fidelity["views"] = shared
        log(f"fast vs reference images (DDIM {cfg.steps}, same seed): {fidelity}")

    quality = None
    if cfg.quality and cfg.quality_views > 0 and fits("DPM-Solver++ vs DDIM quality", 20.0):
        quality = solver_agreement(fast_pipe, [synthetic_image(fast_pipe.image_size, cfg.seed)],
                                   orbit_poses(cfg.quality_views), fast_steps=cfg.solver_steps,
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
    if cfg.variants and device.type == "cuda":
        variants = _run_variants(cfg, fast_pipe, ref_pipe, common, ref_rows, fits, log)
    elif cfg.variants:
        skipped.append("ablation variants (CUDA only)")

    result = BenchResult(rows=rows, variants=variants, env=env, flops_per_view_step=flops, ceiling_tflops=ceiling,
                         ceiling_desc=ceiling_desc, quality=quality, fidelity=fidelity, skipped=skipped,
                         profiles=profiles)
    result.total_s = time.perf_counter() - t_start
    if cfg.fast_mode == "compile":  # where the compile time went (dynamo / inductor phases, aggregated)
        from torch._dynamo.utils import compile_times

        log("compile times (s):\n" + str(compile_times(repr="str", aggregate=True)))
    return result


def _run_variants(cfg: BenchConfig, fast_pipe: Zero123Pipeline, ref_pipe: Zero123Pipeline | None, common: dict,
                  ref_rows: dict, fits: Callable[[str, float], bool], log: Callable[[str], None]) -> list[Row]:
    """Each ablation at the smallest and largest view counts, DDIM, on a pipeline of the variant's precision."""
    rows = []
    views = sorted({min(cfg.views), max(cfg.views)})
    for name in cfg.variants:
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
    fast_pipe.enable_fast_path(cfg.fast_mode, **_main_options(cfg)) if cfg.fast_mode \
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


# ---------------------------------------------------------------------- reporting
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
    """Issue 4's targets against the fast rows (only meaningful for the official size on an H100)."""
    out = []
    fast = [r for r in result.rows if r.path == "fast"]
    for label, views, sampler, steps, limit in TARGETS:
        hit = [r for r in fast if r.views == views and r.sampler == sampler and r.steps == steps]
        if hit:
            out.append({"target": f"{label} <= {limit} s", "measured": hit[0].seconds, "met": hit[0].seconds <= limit})
    hit = [r for r in fast if r.views == 64 and r.sampler == "ddim" and r.steps == 50]
    if hit:
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
    where = env.get("gpu", f"CPU ({env.get('cpu_threads')} threads)")
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
