"""`zero1to3 recon IMAGE -o out/`: one image -> textured mesh by score distillation (see docs/recon.md)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from zero1to3.cli.common import CLIError, add_model_arguments, load_pipeline
from zero1to3.inputs import check_int, check_output_dir
from zero1to3.recon.config import RECON_PRESETS, ReconConfig, default_preset
from zero1to3.settings import add_config_file_option, add_options, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recon", help="image -> 3D mesh (score distillation through Zero-1-to-3)",
                       description="Reconstruct a textured mesh from one object image; see docs/recon.md. "
                                   "The reconstruction options are ReconConfig's fields (zero1to3.recon.config).")
    p.add_argument("image", help="object image (on white, or RGBA with transparency)")
    p.add_argument("-o", "--output", required=True, help="output folder (mesh, settings.json, turntable)")
    add_model_arguments(p)
    p.add_argument("--preset", choices=tuple(RECON_PRESETS), default=None,
                   help="starting point of the settings: fast = CPU preview in minutes (60 steps, 32-48 voxel "
                        "grids, 2 views a step, 128 px turntable); full = the recipe (600 steps, 64-128 grids; "
                        "hours on a CPU). Default: fast on a CPU, full on a GPU; --config and the flags below "
                        "override it")
    add_config_file_option(p)
    add_options(p.add_argument_group("reconstruction (ReconConfig; defaults shown are the full recipe's)"),
                ReconConfig)
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=("glb", "obj", "ply"), default="glb", help="mesh format (default: glb)")
    out.add_argument("--preview", action="store_true", help="write intermediate renders to OUTPUT/preview/")
    out.add_argument("--preview-every", type=int, default=None, help="steps between previews (default: steps/10)")
    out.add_argument("--no-turntable", action="store_true", help="skip the turntable animation")
    out.add_argument("--turntable-format", choices=("gif", "mp4"), default="gif",
                     help="turntable format (mp4 needs imageio-ffmpeg; default: gif)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace, device: str = "cpu") -> ReconConfig:
    """The ReconConfig the arguments describe: the preset (``--preset``, else the device's default), then
    ``--config``, then the flags given (errors as one-line CLIError). The ranges are checked by ReconConfig
    itself (one place for the library and the CLI)."""
    if getattr(args, "preview_every", None) is not None:
        check_int("--preview-every", args.preview_every, 1)
    preset = getattr(args, "preset", None) or default_preset(device)
    try:
        return config_from_args(ReconConfig, args, base=RECON_PRESETS[preset])
    except ValueError as exc:  # SettingsError or ReconConfig's own checks
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from zero1to3.recon.mesh import EmptyMeshError
    from zero1to3.recon.reconstruct import reconstruct

    from zero1to3.cli.nvs import check_image_argument

    image = Path(args.image)
    if not image.is_file():
        raise CLIError(f"input image not found: {image}")
    check_image_argument(args.image)
    import torch

    from zero1to3.media import MediaError, check_animation_path
    from zero1to3.recon.config import PRESET_TURNTABLE

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    preset = args.preset or default_preset(device)
    config = build_config(args, device)
    out = check_output_dir(args.output)
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
