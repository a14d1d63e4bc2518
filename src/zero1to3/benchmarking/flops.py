"""What the hardware could do and where the time goes: UNet FLOPs per guided step, a matmul ceiling measured in the
same run, and a per-call profile (host-timed stages; one guided step's device time by kernel class)."""

from __future__ import annotations

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from zero1to3 import fast as fast_module
from zero1to3.benchmarking.timing import synchronize, synthetic_image
from zero1to3.camera import orbit
from zero1to3.fast import fast_mode
from zero1to3.pipeline import Conditioning, Zero123Pipeline, to_uint8


@torch.no_grad()
def count_unet_flops(pipe: Zero123Pipeline, guidance: bool = True) -> int:
    """FLOPs of one guided denoiser step for ONE view (UNet on the [uncond; cond] batch of 2), counted once.

    Counted in eager mode on the pipeline's device with random inputs; matmuls, convolutions and attention
    are what FlopCounterMode counts (elementwise work is not), which is the part the ceiling speaks to.
    """
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
    synchronize(device)
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
    device = pipe.device
    image = pipe.image_to_tensor(synthetic_image(pipe.image_size, seed))
    vectors = pipe.pose_vectors(orbit(views))
    stages: dict[str, list[float]] = {"encode input": [], "sampler": [], "decode + uint8": []}
    for _ in range(repeats + 1):  # the first round warms up (capture / compile) and is dropped
        t0 = time.perf_counter()
        cond = Conditioning(*fast_module.encode_condition(pipe, image)).repeat(views)
        synchronize(device)
        t1 = time.perf_counter()
        lat = pipe.sample_latents(cond, vectors, num_inference_steps=steps, guidance_scale=guidance_scale,
                                  scheduler=scheduler, generator=torch.Generator().manual_seed(seed))
        synchronize(device)
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
    entry, runs = entries[0], 3
    guided = entry.concat.shape[0] == 2 * views
    on_gpu = device.type == "cuda"  # on CPU ("static" mode, tests) the classes are of aten ops' own time
    with profile(activities=[ProfilerActivity.CUDA if on_gpu else ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            fast._run_body(entry, guided)
        synchronize(device)
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
