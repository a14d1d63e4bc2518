"""`zero1to3 bench`: sampling speed, reference path vs fast path, as a Markdown table (and JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

from zero1to3.benchmarking.config import VARIANTS, BenchConfig
from zero1to3.cli.common import CLIError
from zero1to3.jsonable import json_safe
from zero1to3.settings import UNSET, SettingsError, add_config_file_option, add_options
from zero1to3.settings import config_from_args as settings_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--random-weights", action="store_true",
                        help="random weights of --preset (the default when no --model is given)")
    add_config_file_option(parser)
    add_options(parser.add_argument_group("what to measure (BenchConfig)"), BenchConfig)
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=None, help="also write the Markdown report here (default: stdout only)")
    out.add_argument("--json", default=None, help="write every number, and the settings, as JSON here (default: none)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="sampling speed: reference vs fast path (Markdown table)",
                            description=__doc__)
    add_arguments(parser)
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Validated BenchConfig from parsed arguments and ``--config`` (one-line CLIError on bad input)."""
    if args.random_weights and getattr(args, "model", UNSET) is not UNSET:
        raise CLIError("--random-weights and --model exclude each other")
    try:
        cfg = settings_config(BenchConfig, args)
    except SettingsError as exc:
        raise CLIError(str(exc)) from None
    import torch

    device = cfg.resolved_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {device} asked for, but no CUDA device is available")
    if any(v < 1 for v in cfg.views) or any(v < 1 for v in cfg.reference_views or ()):
        raise CLIError("--views and --reference-views must be positive")
    if cfg.steps < 2 or cfg.solver_steps < 1 or cfg.repeats < 1:
        raise CLIError("--steps must be >= 2, --solver-steps and --repeats >= 1")
    if cfg.model is not None and not Path(cfg.model).exists():
        raise CLIError(f"model path not found: {cfg.model}")
    unknown = [v for v in cfg.resolved_variants() if v not in VARIANTS]
    if unknown:
        raise CLIError(f"unknown variant(s) {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")
    return dataclasses.replace(cfg, device=device)


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
        Path(args.json).write_text(json.dumps({**result.to_dict(), "config": json_safe(dataclasses.asdict(cfg))},
                                              indent=2, default=str) + "\n")
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
