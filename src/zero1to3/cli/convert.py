"""``zero1to3 convert in.ckpt out_dir``: the authors' checkpoint -> diffusers layout (offline)."""

from __future__ import annotations

import argparse

from zero1to3.cli.common import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an original Zero-1-to-3 .ckpt to the diffusers layout")
    p.add_argument("checkpoint", help="original Lightning .ckpt (105000.ckpt, zero123-xl.ckpt, ...)")
    p.add_argument("output", help="folder to write (unet/, vae/, image_encoder/, scheduler/, cc_projection/ ...)")
    p.add_argument("--image-encoder", default=None, help="local CLIPVisionModelWithProjection folder")
    p.add_argument("--original-config", default=None, help="the authors' .yaml (default: the official config)")
    p.add_argument("--no-ema", action="store_true", help="take the main UNet weights instead of the EMA copy")
    p.add_argument("--half", action="store_true", help="store fp16 weights")
    p.add_argument("--unet-int8", action="store_true",
                   help="store the UNet as per-channel int8 (half of fp16's bytes; read by this package only)")
    p.add_argument("--pose-encoding", choices=("zero123", "stable-zero123"), default="zero123",
                   help="4th pose entry: radius change (Zero-1-to-3) or the input's absolute polar (Stable Zero123)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from zero1to3.checkpoint import CheckpointError
    from zero1to3.inputs import check_output_dir
    from zero1to3.pipeline import ModelLoadError, Zero123Pipeline

    check_output_dir(args.output, "output")
    try:
        pipe = Zero123Pipeline.from_pretrained(args.checkpoint, image_encoder=args.image_encoder,
                                               use_ema=not args.no_ema, original_config=args.original_config,
                                               pose_encoding=args.pose_encoding)
    except (CheckpointError, ModelLoadError) as exc:
        raise CLIError(str(exc)) from None
    pipe.save_pretrained(args.output, dtype=torch.float16 if args.half else None,
                         unet_weight_bits=8 if args.unet_int8 else None)
    copy = "main" if args.no_ema else "EMA"
    print(f"wrote {args.output} (UNet: {copy} weights; image size {pipe.image_size})")
    return 0
