"""`zero1to3 bench`: sampling speed, reference path vs fast path, as a Markdown table (and JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from zero1to3.cli.common import CLIError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    src = model.add_mutually_exclusive_group()
    src.add_argument("--model", default=None, help="diffusers-layout folder or original .ckpt to time")
    src.add_argument("--random-weights", action="store_true",
                     help="random weights of --preset (the default when no --model is given)")
    model.add_argument("--preset", choices=("zero123", "tiny"), default=None,
                       help="random-weights size (default: zero123 on CUDA, tiny on CPU)")
    model.add_argument("--image-encoder", default=None, help="local CLIP vision folder (needed with a .ckpt)")
    model.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    model.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16",
                       help="fast-path precision on CUDA (default fp16; CPU always runs fp32)")
    what = parser.add_argument_group("what to measure")
    what.add_argument("--views", type=int, nargs="+", default=[1, 4, 16, 64], help="views per call (default 1 4 16 64)")
    what.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    what.add_argument("--solver-steps", type=int, default=20, help="DPM-Solver++ steps (default 20)")
    what.add_argument("--include-reference", action="store_true",
                      help="also time the reference-like path (fp32, eager, DDIM) for speed-up ratios")
    what.add_argument("--reference-views", type=int, nargs="+", default=None,
                      help="views at which the slow reference runs (default: those of --views <= 4)")
    what.add_argument("--repeats", type=int, default=3, help="timed calls per row after the first (median)")
    what.add_argument("--fast-mode", choices=("cuda_graph", "compile", "eager"), default="cuda_graph",
                      help="fast path of the main table (default cuda_graph)")
    what.add_argument("--channels-last", action="store_true", help="channels_last UNet/VAE in the main table")
    what.add_argument("--fuse-qkv", action="store_true", help="fused QKV projections in the main table")
    what.add_argument("--inductor-tuning", action="store_true",
                      help="with --fast-mode compile: 1x1 convs as matmuls + coordinate-descent kernel tuning")
    what.add_argument("--compile-scope", choices=("blocks", "blocks-static", "unet"), default="blocks",
                      help="with --fast-mode compile: each block, one compile for all batch sizes (default); "
                           "each block per batch size; or the whole UNet (longest warm-up)")
    what.add_argument("--compile-codecs", nargs="*", default=None, choices=("vae.decoder", "vae.encoder", "image_encoder"),
                      help="with --fast-mode compile: encoder/decoder parts compiled too (default: all three; "
                           "none: eager, captured)")
    what.add_argument("--profile-views", type=int, nargs="*", default=[],
                      help="also break one call down (stages, kernel classes of a UNet step) at these views")
    what.add_argument("--variants", nargs="*", default=None,
                      help="ablations at the smallest and largest --views (default on CUDA: graph+cl graph+cl-plain "
                           "compile+cl compile+cl+unet; pass none to skip)")
    what.add_argument("--no-quality", action="store_true", help="skip the DPM-Solver++ vs DDIM PSNR/SSIM check")
    what.add_argument("--quality-views", type=int, default=4)
    what.add_argument("--time-budget", type=float, default=480.0,
                      help="seconds; parts that would not fit are skipped and listed (default 480)")
    what.add_argument("--threads", type=int, default=None, help="CPU threads (default 2 on CPU)")
    what.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=None, help="also write the Markdown report here")
    out.add_argument("--json", default=None, help="write every number as JSON here")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="sampling speed: reference vs fast path (Markdown table)",
                            description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """Validated BenchConfig from parsed arguments (one-line CLIError on bad input)."""
    import torch

    from zero1to3.benchmarking.sampling import DEFAULT_GPU_VARIANTS, VARIANTS, BenchConfig

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device} asked for, but no CUDA device is available")
    if any(v < 1 for v in args.views) or any(v < 1 for v in args.reference_views or []):
        raise CLIError("--views and --reference-views must be positive")
    if args.steps < 2 or args.solver_steps < 1 or args.repeats < 1:
        raise CLIError("--steps must be >= 2, --solver-steps and --repeats >= 1")
    if args.model is not None and not Path(args.model).exists():
        raise CLIError(f"model path not found: {args.model}")
    variants = tuple(args.variants) if args.variants is not None else (
        DEFAULT_GPU_VARIANTS if device.startswith("cuda") else ())
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise CLIError(f"unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")
    return BenchConfig(device=device, model=args.model, image_encoder=args.image_encoder, preset_name=args.preset,
                       dtype=args.dtype, fast_mode=None if args.fast_mode == "eager" else args.fast_mode,
                       channels_last=args.channels_last, fuse_qkv=args.fuse_qkv,
                       inductor_tuning=args.inductor_tuning, compile_scope=args.compile_scope,
                       compile_codecs=tuple(args.compile_codecs) if args.compile_codecs is not None else None,
                       profile_views=tuple(args.profile_views), views=tuple(args.views),
                       steps=args.steps, solver_steps=args.solver_steps, include_reference=args.include_reference,
                       reference_views=tuple(args.reference_views) if args.reference_views else None,
                       repeats=args.repeats, quality=not args.no_quality, quality_views=args.quality_views,
                       variants=variants, time_budget_s=args.time_budget, threads=args.threads, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    from zero1to3.benchmarking.report import to_markdown
    from zero1to3.benchmarking.sampling import run_benchmark
    from zero1to3.pipeline import ModelLoadError

    cfg = config_from_args(args)
    try:
        result = run_benchmark(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    except ModelLoadError as exc:
        raise CLIError(str(exc)) from None
    report = to_markdown(result)
    print(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (benchmarks/bench_sampling.py): same arguments as `zero1to3 bench`."""
    parser = argparse.ArgumentParser(prog="bench_sampling", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command = "bench"
    try:
        return run(args)
    except (CLIError, FileNotFoundError, ValueError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
