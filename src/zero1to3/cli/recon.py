"""`zero1to3 recon IMAGE -o out/`: one image -> textured mesh by score distillation (see docs/recon.md)."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from zero1to3.cli.common import CLIError, add_model_arguments, load_pipeline

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
    from zero1to3.recon.config import RECON_PRESETS, ReconConfig

    d = ReconConfig()
    p = sub.add_parser("recon", help="image -> 3D mesh (score distillation through Zero-1-to-3)",
                       description="Reconstruct a textured mesh from one object image; see docs/recon.md.")
    p.add_argument("image", help="object image (on white, or RGBA with transparency)")
    p.add_argument("-o", "--output", required=True, help="output folder (mesh, settings.json, turntable)")
    add_model_arguments(p)
    p.add_argument("--preset", choices=tuple(RECON_PRESETS), default=None,
                   help="fast: CPU preview in minutes (60 steps, 32-48 voxel grids, 2 views a step, 128 px "
                        "turntable); full: the recipe (600 steps, 64-128 grids; hours on a CPU). "
                        "Default: fast on a CPU, full on a GPU; --steps/--batch-size override it")
    p.add_argument("--steps", type=int, default=None, help=f"optimisation steps (default: the preset's; full: {d.steps})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"novel views per step (default: the preset's; full: {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--guidance", type=float, default=d.guidance_scale,
                   help=f"classifier-free guidance scale (default {d.guidance_scale:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the cameras, timesteps and noise")
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


def build_config(args: argparse.Namespace, device: str = "cpu"):
    """The ReconConfig the arguments describe, on top of the preset (errors as one-line CLIError)."""
    from zero1to3.recon.config import RECON_PRESETS, ReconConfig, default_preset

    preset = args.preset or default_preset(device)
    values = dict(RECON_PRESETS[preset])
    for flag, field_name in (("steps", "steps"), ("batch_size", "batch_size")):
        if getattr(args, flag) is not None:
            values[field_name] = getattr(args, flag)
    values |= {"lr": args.lr,
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
    try:
        return ReconConfig(**values)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from zero1to3.recon.mesh import EmptyMeshError
    from zero1to3.recon.reconstruct import reconstruct

    image = Path(args.image)
    if not image.is_file():
        raise CLIError(f"input image not found: {image}")
    import torch

    from zero1to3.media import MediaError, check_animation_path
    from zero1to3.recon.config import PRESET_TURNTABLE, default_preset

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    preset = args.preset or default_preset(device)
    config = build_config(args, device)
    out = Path(args.output)
    if not args.no_turntable:
        try:  # before hours of optimisation: a missing MP4 encoder fails now
            check_animation_path(out / f"turntable.{args.turntable_format}")
        except MediaError as exc:
            raise CLIError(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"preset {preset}{'' if args.preset else f' (default on {device})'}: {config.steps} steps, "
          f"{config.batch_size} views a step, grids {'/'.join(map(str, config.grid_resolutions))}", flush=True)
    pipe = load_pipeline(args)
    try:
        result = reconstruct(pipe, image, config, preview_dir=out / "preview" if args.preview else None,
                             preview_every=args.preview_every, progress=not args.no_progress)
    except EmptyMeshError as exc:
        raise CLIError(f"no mesh: {exc}") from None
    frames, size = PRESET_TURNTABLE[preset]
    paths = result.save(out, mesh_format=args.format, turntable=not args.no_turntable,
                        video_format=args.turntable_format, turntable_frames=frames, turntable_resolution=size,
                        progress=not args.no_progress)
    if result.elevation is not None:
        print(f"elevation: {result.elevation.reason}")
    print(f"mesh: {paths['mesh']} ({len(result.mesh.vertices)} vertices, {len(result.mesh.faces)} faces, "
          f"{result.iso.describe()})")
    print("timings: " + json.dumps({k: round(v, 2) for k, v in result.timings.items()}))
    for name, path in paths.items():
        if name != "mesh":
            print(f"{name}: {path}")
    return 0
