"""`zero1to3 eval nvs|3d`: benchmark novel views against ground-truth renders, or meshes against meshes.

Heavy imports (torch, the pipeline) happen inside :func:`run`, so ``zero1to3 --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zero1to3.cli.common import CLIError, add_model_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate novel views (PSNR/SSIM/LPIPS/FID, mask IoU) or 3D meshes "
                                    "(Chamfer/IoU/F-score)",
                       description="Evaluate novel-view synthesis or 3D reconstruction; see docs/evaluation.md.")
    what = p.add_subparsers(dest="eval_kind", metavar="{nvs,3d}")

    nvs = what.add_parser("nvs", help="novel views vs. ground-truth renders, with input-copy and blank-white "
                                      "baselines")
    add_model_arguments(nvs)  # --model (also 'preset:NAME': random weights), --image-encoder, --device, --dtype ...
    nvs.add_argument("--data", required=True, help="render folder: one subfolder per object with NNN.png + NNN.npy")
    nvs.add_argument("--protocol", choices=("random", "orbit16"), default="random",
                     help="random: other rendered views (paper); orbit16: 16 views at elevation 30 deg")
    nvs.add_argument("--input-view", help="input view name/index (default: random per object / first orbit view)")
    nvs.add_argument("--targets", type=int, help="target views per object (default: all the protocol gives)")
    nvs.add_argument("--baseline", help="a second model evaluated in the same run (same forms as --model)")
    nvs.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    nvs.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    nvs.add_argument("--samples", type=int, default=1, help="samples per target view, scores averaged (default 1)")
    nvs.add_argument("--scheduler", choices=("ddim", "dpmsolver++"), default="ddim",
                     help="sampler (default ddim, as the paper)")
    nvs.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    nvs.add_argument("--size", type=int,
                     help="compare images at SIZE px (default: the model's image size; renders are resized)")
    nvs.add_argument("--white-threshold", type=float, default=None,
                     help="a predicted pixel is foreground when max over channels of (1 - value) exceeds this "
                          "(default 0.1; for mask IoU and masked PSNR)")
    nvs.add_argument("--orbit-sides", choices=("auto", "on", "off"), default="auto",
                     help="orbit side check (+-90 deg views at elevation 30); auto: when the data has the views")
    nvs.add_argument("--lpips-weights", help="LPIPS backbone weights file (or $ZERO1TO3_LPIPS_WEIGHTS)")
    nvs.add_argument("--fid-weights", help="FID Inception weights file (or $ZERO1TO3_FID_WEIGHTS)")
    _common(nvs)

    d3 = what.add_parser("3d", help="predicted meshes vs. ground-truth meshes")
    d3.add_argument("--pred", required=True, help="folder of predicted meshes (NAME.obj/ply/glb or NAME/*.obj)")
    d3.add_argument("--gt", required=True, help="folder of ground-truth meshes, same naming")
    d3.add_argument("--threshold", type=float, default=0.05, help="F-score distance threshold (unit box; 0.05)")
    d3.add_argument("--num-points", type=int, default=30_000, help="surface samples per mesh (default 30000)")
    d3.add_argument("--iou-resolution", type=int, default=128, help="voxel grid for IoU (default 128)")
    d3.add_argument("--no-normalize", action="store_true", help="do not rescale both meshes to the unit box")
    _common(d3)
    p.set_defaults(func=run, _eval_parser=p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, help="evaluate only the first L objects (by name)")
    p.add_argument("--seed", type=int, default=0, help="seed of view choices, sampling and bootstrap (default 0)")
    p.add_argument("--ci", choices=("t", "bootstrap"), default="t", help="95%% interval method (default t)")
    p.add_argument("-o", "--out", default="eval_out", help="output folder; rerunning it resumes (default eval_out)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier results in the output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_model(args: argparse.Namespace, spec: str | None) -> Any:
    """The pipeline named by ``spec`` with the other model arguments of ``args`` (lazy: pulls in diffusers)."""
    if spec is not None and spec.startswith("preset:"):
        from zero1to3.pipeline import Zero123Pipeline

        try:
            pipe = Zero123Pipeline.from_preset(spec.split(":", 1)[1], seed=0)  # fixed weights; --seed is for sampling
        except (KeyError, ValueError) as exc:
            raise CLIError(f"unknown preset in {spec!r}: {exc}") from None
        import torch

        return pipe.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from zero1to3.cli.common import load_pipeline

    if spec is not None and not Path(spec).exists():
        raise CLIError(f"model not found: {spec}")
    return load_pipeline(argparse.Namespace(**{**vars(args), "model": spec}))


def _label(spec: str | None) -> str:
    if spec is None:
        return "default"
    return spec.split(":", 1)[1] if spec.startswith("preset:") else Path(spec).name or spec


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise CLIError(f"{name} must be at least 1, got {value}")


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "eval_kind", None):
        args._eval_parser.print_help()
        return 2
    from zero1to3.evaluation.results import ResumeMismatch
    from zero1to3.evaluation.views import ProtocolError

    _check_positive("--limit", args.limit)
    try:
        if args.eval_kind == "nvs":
            result = _run_nvs(args)
        else:
            result = _run_3d(args)
    except (ResumeMismatch, ProtocolError) as exc:
        raise CLIError(str(exc)) from None
    from zero1to3.evaluation.report import console_table

    print(console_table(result), end="")
    print(f"full table: {result.files.get('markdown')}; results: "
          f"{', '.join(str(p) for k, p in result.files.items() if p and k != 'markdown')}")
    return 0


def _run_nvs(args: argparse.Namespace) -> Any:
    from zero1to3.evaluation.metrics import ImageMetrics
    from zero1to3.evaluation.nvs import CONSTANT_METHODS, evaluate_nvs

    for name in ("--targets", "--steps", "--samples", "--size"):
        _check_positive(name, getattr(args, name[2:]))
    if args.size is not None and args.size < 8:
        raise CLIError(f"--size must be at least 8, got {args.size}")
    if args.white_threshold is not None and not 0.0 <= args.white_threshold < 1.0:
        raise CLIError(f"--white-threshold must be in [0, 1), got {args.white_threshold}")
    if not Path(args.data).is_dir():
        raise CLIError(f"data folder not found: {args.data}")
    for spec in (args.model, args.baseline):  # fail before any slow loading
        if spec is not None and not spec.startswith("preset:") and not Path(spec).exists():
            raise CLIError(f"model not found: {spec}")
    white = {} if args.white_threshold is None else {"white_threshold": args.white_threshold}
    metrics = ImageMetrics(lpips_weights=args.lpips_weights, fid_weights=args.fid_weights, **white)
    for note in metrics.notices:
        print(f"note: {note}", file=sys.stderr)  # early, before a long run; the table repeats them
    pipe = _load_model(args, args.model)
    baseline = _load_model(args, args.baseline) if args.baseline else None
    model_name, baseline_name = _label(args.model), _label(args.baseline) if args.baseline else "baseline"
    if baseline_name == model_name or baseline_name in CONSTANT_METHODS:
        baseline_name = f"{baseline_name} (baseline)"
    if model_name in CONSTANT_METHODS:
        model_name = f"{model_name} (model)"
    return evaluate_nvs(pipe, args.data, args.protocol, input_view=args.input_view, num_targets=args.targets,
                        limit=args.limit, seed=args.seed, baseline=baseline, baseline_name=baseline_name,
                        model_name=model_name, num_samples=args.samples, guidance_scale=args.guidance,
                        num_inference_steps=args.steps, out_dir=args.out, metrics=metrics, ci=args.ci,
                        overwrite=args.overwrite, progress=not args.no_progress,
                        sampler_kwargs={"scheduler": args.scheduler, "eta": args.eta}, image_size=args.size,
                        orbit_sides={"auto": None, "on": True, "off": False}[args.orbit_sides],
                        config_extra={"model": args.model, "baseline": args.baseline, "no_ema": args.no_ema,
                                      "dtype": args.dtype})


def _run_3d(args: argparse.Namespace) -> Any:
    from zero1to3.evaluation.three_d import default_mesh_metrics, evaluate_3d

    _check_positive("--num-points", args.num_points)
    _check_positive("--iou-resolution", args.iou_resolution)
    if not args.threshold > 0:
        raise CLIError(f"--threshold must be positive, got {args.threshold}")
    settings = {"threshold": args.threshold, "num_points": args.num_points, "iou_resolution": args.iou_resolution,
                "normalize": not args.no_normalize, "seed": args.seed}
    try:
        metric_fn = default_mesh_metrics(**settings)
    except ImportError as exc:
        raise CLIError(f"3D metrics unavailable: {exc}") from None
    return evaluate_3d(args.pred, args.gt, limit=args.limit, out_dir=args.out, ci=args.ci, seed=args.seed,
                       overwrite=args.overwrite, progress=not args.no_progress, metric_fn=metric_fn,
                       config_extra=settings)
