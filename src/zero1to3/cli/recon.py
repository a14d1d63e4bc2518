"""`zero1to3 recon IMAGE -o out/`: one image -> textured mesh by score distillation (see docs/recon.md)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from zero1to3.cli.common import CLIError, add_model_arguments, load_pipeline
from zero1to3.inputs import check_int, check_output_dir
from zero1to3.recon.config import ReconConfig
from zero1to3.settings import add_config_file_option, add_options, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recon", help="image -> 3D mesh (score distillation through Zero-1-to-3)",
                       description="Reconstruct a textured mesh from one object image; see docs/recon.md. "
                                   "The reconstruction options are ReconConfig's fields (zero1to3.recon.config).")
    p.add_argument("image", help="object image (on white, or RGBA with transparency)")
    p.add_argument("-o", "--output", required=True, help="output folder (mesh, settings.json, turntable)")
    add_model_arguments(p)
    add_config_file_option(p)
    add_options(p.add_argument_group("reconstruction (ReconConfig)"), ReconConfig)
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=("glb", "obj", "ply"), default="glb", help="mesh format (default: glb)")
    out.add_argument("--preview", action="store_true", help="write intermediate renders to OUTPUT/preview/")
    out.add_argument("--preview-every", type=int, default=None, help="steps between previews (default: steps/10)")
    out.add_argument("--no-turntable", action="store_true", help="skip the turntable animation")
    out.add_argument("--turntable-format", choices=("gif", "mp4"), default="gif",
                     help="turntable format (mp4 needs imageio-ffmpeg; default: gif)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> ReconConfig:
    """The ReconConfig the arguments (and ``--config``) describe (errors as one-line CLIError).

    The ranges are checked by ReconConfig itself (one place for the library and the CLI)."""
    if args.preview_every is not None:
        check_int("--preview-every", args.preview_every, 1)
    try:
        return config_from_args(ReconConfig, args)
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
