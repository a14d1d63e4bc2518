"""Timing harness: one whole ``pipe(...)`` call (encoders, sampler, VAE decode, uint8) timed on the host clock
around synchronised calls, first call (capture / compile) reported apart from steady calls."""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import diffusers
import numpy as np
import torch

from zero1to3.camera import orbit
from zero1to3.fast import fast_mode
from zero1to3.pipeline import Zero123Pipeline, denoiser_steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

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

def time_calls(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, list[float], object]:
    """(first-call seconds, steady seconds per repeat, last result); host clock around synchronised calls
    (a call ends in a device->host copy of the images, so it is synchronous anyway)."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return first, times, out

def measure(pipe: Zero123Pipeline, *, path: str, views: int, scheduler: str, steps: int, repeats: int,
            flops_per_view_step: int, ceiling_tflops: float, guidance_scale: float = 3.0, seed: int = 0,
            image: np.ndarray | None = None) -> tuple[Row, np.ndarray]:
    """Time ``pipe(image, views poses, num_samples=1)``; returns the row and the last output array."""
    device = pipe.device
    image = synthetic_image(pipe.image_size, seed) if image is None else image
    poses = orbit(views)
    n_unet = denoiser_steps(steps, scheduler)

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

def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
           "device": str(device), "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env
