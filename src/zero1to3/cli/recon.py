"""`zero1to3 recon IMAGE -o out/`: one image -> textured mesh by score distillation (see docs/recon.md)."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from zero1to3.cli.common import CLIError, add_model_arguments, load_pipeline
from zero1to3.inputs import check_int, check_output_dir, check_range, check_seed

#: CLI flag -> ReconConfig weight field (one flag per loss term; 0 switches a term off).
WEIGHT_FLAGS = {
    "sds-weight": ("w_sds", "score distillation through the model"),
    "rgb-weight": ("w_rgb", "input-view RGB"),
    "mask-weight": ("w_mask", "input-view mask"),
    "near-weight": ("w_near", "near-view consistency"),
    "tv-weight": ("w_tv", "density total variation (smoothness)"),
    "sparsity-weight": ("w_sparsity", "novel-view opacity (sparsity)"),
    "opacity-weight": ("w_opacity", "opacity binary entropy"),
}


def register(sub: argparse._SubParsersAction) -> None:
    from zero1to3.recon.config import ReconConfig

    d = ReconConfig()
    p = sub.add_parser("recon", help="image -> 3D mesh (score distillation through Zero-1-to-3)",
                       description="Reconstruct a textured mesh from one object image; see docs/recon.md.")
    p.add_argument("image", help="object image (on white, or RGBA with transparency)")
    p.add_argument("-o", "--output", required=True, help="output folder (mesh, settings.json, turntable)")
    add_model_arguments(p)
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimisation steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"novel views per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--guidance", type=float, default=d.guidance_scale,
                   help=f"classifier-free guidance scale (default {d.guidance_scale:g})")
    p.add_argument("--seed", type=int, default=d.seed)
    elev = p.add_mutually_exclusive_group()
    elev.add_argument("--elevation", type=float, default=None,
                      help=f"elevation of the input view in degrees (default {d.elevation_deg:g})")
    elev.add_argument("--estimate-elevation", action="store_true",
                      help="estimate the input elevation with the model (reports its choice and why)")
    p.add_argument("--radius", type=float, default=d.radius, help=f"camera distance (default {d.radius:g})")
    p.add_argument("--fov", type=float, default=d.fov_deg, help=f"field of view, degrees (default {d.fov_deg:.1f})")
    p.add_argument("--format", choices=("glb", "obj", "ply"), default="glb", help="mesh format (default glb)")
    p.add_argument("--iso", type=float, default=None, help="marching-cubes level (default: automatic)")
    p.add_argument("--preview", action="store_true", help="write intermediate renders to OUTPUT/preview/")
    p.add_argument("--preview-every", type=int, default=None, help="steps between previews (default steps/10)")
    p.add_argument("--no-turntable", action="store_true", help="skip the turntable animation")
    p.add_argument("--turntable-format", choices=("gif", "mp4"), default="gif",
                   help="turntable format (mp4 needs imageio-ffmpeg)")
    p.add_argument("--no-preprocess", action="store_true",
                   help="use the image as it is (already centred on white), no crop/rescale")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    w = p.add_argument_group("loss weights (0 switches a term off)")
    for flag, (name, what) in WEIGHT_FLAGS.items():
        w.add_argument(f"--{flag}", type=float, default=getattr(d, name),
                       help=f"{what} (default {getattr(d, name):g})")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The ReconConfig the arguments describe (errors as one-line CLIError)."""
    from zero1to3.recon.config import ReconConfig

    values = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
              "guidance_scale": args.guidance, "seed": args.seed, "radius": args.radius, "fov_deg": args.fov,
              "estimate_elevation": bool(args.estimate_elevation), "iso_level": args.iso,
              "preprocess": not args.no_preprocess}
    if args.elevation is not None:
        values["elevation_deg"] = args.elevation
    for flag, (name, _) in WEIGHT_FLAGS.items():
        values[name] = getattr(args, flag.replace("-", "_"))
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise CLIError(f"{key} must be a finite number, got {value}")
    if not 0.0 < args.fov < 180.0:
        raise CLIError(f"--fov must be in (0, 180) degrees, got {args.fov}")
    check_int("--steps", args.steps, 1, 1_000_000)
    check_int("--batch-size", args.batch_size, 1, 256)
    check_range("--lr", args.lr, 0.0, 10.0, low_open=True)
    check_range("--guidance", args.guidance, 0.0, 100.0)
    check_seed("--seed", args.seed)
    check_range("--radius", args.radius, 0.0, 100.0, low_open=True)
    if args.elevation is not None:
        check_range("--elevation", args.elevation, -89.0, 89.0)
    if args.preview_every is not None:
        check_int("--preview-every", args.preview_every, 1)
    for flag in WEIGHT_FLAGS:
        check_range(f"--{flag}", getattr(args, flag.replace("-", "_")), 0.0, 1e6)
    try:
        return ReconConfig(**values)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from zero1to3.recon.mesh import EmptyMeshError
    from zero1to3.recon.reconstruct import reconstruct

    from zero1to3.cli.nvs import check_image_argument

    image = Path(args.image)
    if not image.is_file():
        raise CLIError(f"input image not found: {image}")
    check_image_argument(args.image)
    config = build_config(args)
    out = check_output_dir(args.output)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pipe = load_pipeline(args)
    try:
        result = reconstruct(pipe, image, config, preview_dir=out / "preview" if args.preview else None,
                             preview_every=args.preview_every, progress=not args.no_progress)
    except EmptyMeshError as exc:
        raise CLIError(f"no mesh: {exc}") from None
    paths = result.save(out, mesh_format=args.format, turntable=not args.no_turntable,
                        video_format=args.turntable_format)
    if result.elevation is not None:
        print(f"elevation: {result.elevation.reason}")
    print(f"mesh: {paths['mesh']} ({len(result.mesh.vertices)} vertices, {len(result.mesh.faces)} faces, "
          f"{result.iso.describe()})")
    print("timings: " + json.dumps({k: round(v, 2) for k, v in result.timings.items()}))
    for name, path in paths.items():
        if name != "mesh":
            print(f"{name}: {path}")
    return 0
