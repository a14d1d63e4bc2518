"""Arguments and helpers shared by the commands that load a model."""

from __future__ import annotations

import argparse
import math

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
FAST_MODES = ("auto", "cuda_graph", "compile", "eager")


class CLIError(Exception):
    """An error the CLI reports in one line (bad input, missing file), without a traceback."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="diffusers-layout folder or original .ckpt (default: the embedded small model)")
    group.add_argument("--image-encoder", default=None,
                       help="local CLIPVisionModelWithProjection folder (needed with a .ckpt)")
    group.add_argument("--original-config", default=None, help="the authors' .yaml for a non-standard .ckpt")
    group.add_argument("--no-ema", action="store_true", help="with a .ckpt: use the main UNet weights, not EMA")
    group.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    group.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                       help="weights precision (default: fp16 on GPU, fp32 on CPU)")
    group.add_argument("--fast-mode", choices=FAST_MODES, default="auto",
                       help="GPU sampling: auto/cuda_graph (graph replay, ~4 s warm-up), compile (regional "
                            "torch.compile + channels-last + graph replay: about 2x faster per call, but the first "
                            "call compiles for 70-80 s, ~16 s once inductor's disk cache is warm; for servers and "
                            "batch jobs), eager; CPU always runs eager")
    group.add_argument("--threads", type=int, default=None,
                       help="CPU threads (default: $OMP_NUM_THREADS if set, else the fastest for the model's size: "
                            "1 for small models such as the embedded one, PyTorch's default for large ones)")


def add_sampling_arguments(parser: argparse.ArgumentParser, steps: int = 50) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--steps", type=int, default=steps, help=f"sampler steps (default {steps})")
    group.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    group.add_argument("--scheduler", choices=("ddim", "dpmsolver++"), default="ddim",
                       help="sampler: DDIM as the paper, or DPM-Solver++ (good results in ~20 steps)")
    group.add_argument("--eta", type=float, default=0.0,
                       help="DDIM eta (0: deterministic given the seed; 1: as the original demo)")
    group.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (same seed, same views)")
    group.add_argument("--no-preprocess", action="store_true",
                       help="use the image as it is (already an object render on white), no crop/rescale")
    group.add_argument("--foreground-ratio", type=float, default=None,
                       help="object size as a share of the frame after cropping (default: the model's framing; "
                            "200/256 for the official weights as in the reference demo)")


def finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise CLIError(f"--{name} must be a finite number, got {value}")
    return value


def load_pipeline(args: argparse.Namespace):
    """The pipeline named by the model arguments, on the chosen device and precision."""
    import torch

    from zero1to3.pipeline import ModelLoadError, Zero123Pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device} asked for, but no CUDA device is available")
    dtype_name = args.dtype or ("fp16" if device.startswith("cuda") else "fp32")
    dtype = getattr(torch, DTYPES[dtype_name])
    try:
        pipe = Zero123Pipeline.from_pretrained(args.model, image_encoder=args.image_encoder,
                                               use_ema=not args.no_ema, original_config=args.original_config,
                                               device=device, dtype=dtype)
    except (ModelLoadError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    pipe.cpu_threads = threads
    chosen = pipe.sampling_threads()
    if chosen is not None:  # the whole command (recon, eval) runs with it, not only the sampler calls
        torch.set_num_threads(chosen)
    mode = getattr(args, "fast_mode", "auto")
    if mode == "compile":  # the fastest measured setting (docs/benchmarks.md)
        pipe.enable_fast_path("compile", channels_last=True)
    elif mode != "auto":
        pipe.enable_fast_path(None if mode == "eager" else mode)
    return pipe
