"""``zero1to3 train``: train or fine-tune on a render-layout dataset (one GPU, or many via accelerate launch).

Options mirror :class:`zero1to3.training.TrainConfig` field by field, so the config and the CLI cannot drift.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from zero1to3.cli.common import CLIError

HELP = {
    "data": "dataset folder in the render layout (one folder per object, NNN.png + NNN.npy)",
    "output_dir": "run folder: checkpoints/, samples/, metrics.jsonl, config.json",
    "preset": "model size when training from scratch: tiny or zero123",
    "init_from": "Zero-1-to-3 folder/.ckpt to fine-tune, or a 4-channel SD image-variations folder",
    "vae_path": "trained VAE folder for the small preset (from --stage vae)",
    "max_minutes": "stop (with a checkpoint) after this many minutes; resume by running again",
    "mixed_precision": "no, fp16 or bf16",
    "train_image_encoder": "also train CLIP (the small preset has no pretrained one)",
    "resume": "continue from the latest checkpoint in output_dir if there is one",
    "lr_schedule": "constant (the paper's) or cosine (to --min-lr-ratio over --max-steps or --max-minutes)",
    "cache_latents": "encode every view once with the frozen VAE instead of two images per pair per step",
    "foreground_ratio": "object size / image size in the training renders, stored in the export "
                        "(default: the --init-from model's, else 200/256); our renders: about 0.6",
    "on_nonfinite": "stop (exit code 3, newest finite checkpoint kept) or skip (drop such updates) when the loss "
                    "or a gradient is NaN/inf",
    "nonfinite_check_every": "GPU steps between host checks of the non-finite flag (CPU: every step)",
    "max_skipped_in_a_row": "with --on-nonfinite skip: stop (exit code 3) after this many non-finite updates in a row",
    "cache_dir": "folder for the in-memory view cache (default OUTPUT_DIR/cache; never the dataset folder)",
    "override": "on resume, continue with changed training settings (e.g. --learning-rate) instead of refusing",
}

#: Exit codes of ``zero1to3 train`` beyond 0 (done) and 2 (bad input): docs/robustness.md.
EXIT_NONFINITE = 3
#: A stop by signal exits 128 + the signal number (130 SIGINT, 143 SIGTERM) after saving a checkpoint.
SIGNAL_EXIT_BASE = 128


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if "bool" in kind:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=HELP.get(f.name))
        elif "int" in kind and "float" not in kind:
            parser.add_argument(flag, type=int, default=default, help=HELP.get(f.name))
        elif "float" in kind:
            parser.add_argument(flag, type=float, default=default, help=HELP.get(f.name))
        else:
            parser.add_argument(flag, default=default, help=HELP.get(f.name))


def register(sub: argparse._SubParsersAction) -> None:
    from zero1to3.training import TrainConfig

    p = sub.add_parser("train", help="train or fine-tune (use `accelerate launch` for several GPUs)",
                       description="Train the view-conditioned model. Stage 'vae' trains the small preset's "
                                   "autoencoder first. For DDP/FSDP: accelerate launch -m zero1to3 train ...")
    p.add_argument("--stage", choices=("diffusion", "vae"), default="diffusion")
    p.add_argument("--export", default=None, help="after training, save the EMA pipeline here (fp16)")
    _add_dataclass_options(p, TrainConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import sys

    from zero1to3.inputs import check_output_dir
    from zero1to3.training import NonFiniteError, TrainConfig, Trainer, VAETrainConfig, train_vae

    if not args.data or not Path(args.data).is_dir():
        raise CLIError(f"--data must be a dataset folder, got {args.data!r} (render one with `zero1to3 render`)")
    check_output_dir(args.output_dir, "--output-dir")
    if args.export:
        check_output_dir(args.export, "--export")
    if args.stage == "vae":
        config = VAETrainConfig(data=args.data, output_dir=args.output_dir, preset=args.preset,
                                max_steps=args.max_steps, mixed_precision=args.mixed_precision, seed=args.seed,
                                cache_dir=args.cache_dir)
        print(f"wrote {train_vae(config)}")
        return 0
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    trainer = Trainer(TrainConfig(**values))  # ValueError (bad setting, changed settings on resume): exit 2
    try:
        result = trainer.fit()
    except NonFiniteError as exc:
        print(f"zero1to3 train: error: {exc}", file=sys.stderr)
        return EXIT_NONFINITE
    if result["signal"] is not None:  # stopped by a signal: checkpoint saved, no export, non-zero exit
        print(f"step {result['step']}: stopped by signal {result['signal']}, checkpoint saved; resume by running "
              f"again; run folder {args.output_dir}")
        return SIGNAL_EXIT_BASE + int(result["signal"])
    if args.export:
        trainer.export(args.export)
        print(f"exported the EMA model to {args.export}")
    state = "stopped early (resume by running again)" if result["stopped"] else "done"
    skipped = f", {result['skipped_steps']} non-finite update(s) skipped" if result["skipped_steps"] else ""
    print(f"step {result['step']}: {state}{skipped}; run folder {args.output_dir}")
    return 0
