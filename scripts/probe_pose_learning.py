"""Does a training departure make the model learn the direction of rotation? One variant per process.

Fine-tunes a model (default: the shipped one) for a few short segments and, after each, logs the held-out
pose use (``Trainer.pose_use``: the loss increase when the azimuth change is mirrored, shuffled or zeroed,
measured on the paper's uniform pairs and timesteps whatever the variant trains on). Run several variants
side by side on one GPU and compare their ``mirror_increase`` curves:

    for v in "control" "t2 --timestep-power 2" "near3 --near-view-candidates 3"; do
      set -- $v; python scripts/probe_pose_learning.py --name "$@" --data D/train64 --val-data D/val64 \\
          --work W --out OUT --minutes 7 --segments 4 &
    done; wait

``--toy-shift PX`` replaces the task by one where the sign is all that matters (target = input shifted PX
pixels left or right by the sign of sin(d_azimuth)): can the conditioning path carry the sign at all?
(CPU: ``--toy-shift 12 --batch 24 --segments 1 --steps 300 --eval-batches 2``, a few minutes.)

Each variant writes OUT/NAME.jsonl (one line per segment) and keeps its checkpoints in W/NAME/run, so a
later call continues it (``--export`` writes W/NAME/export, int8 UNet, when it ends).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zero1to3.training import PairBatcher


class ShiftBatcher(PairBatcher):
    """Pairs whose target is the input rolled ``shift`` px to the right (sin d_azimuth > 0) or left (< 0)."""

    def __init__(self, images, poses, device="cpu", shift: int = 12) -> None:
        super().__init__(images, poses, device)
        self.shift = shift

    def batch(self, step: int, batch_size: int, seed: int = 0, rank: int = 0, with_target_pixels: bool = True,
              near_view_candidates: int = 1) -> dict[str, torch.Tensor]:
        batch = super().batch(step, batch_size, seed, rank, True)
        g = torch.Generator(device=self.device).manual_seed(step * 7919 + seed * 31 + rank)
        sign = torch.randint(0, 2, (batch_size,), generator=g, device=self.device) * 2 - 1
        turn = torch.rand(batch_size, generator=g, device=self.device) * 2.5 + 0.3
        zero = torch.zeros(batch_size, device=self.device)
        batch["pose"] = torch.stack([zero, sign * turn.sin(), turn.cos(), zero], 1)
        cond = batch["cond"]
        batch["target"] = torch.where(sign[:, None, None, None] > 0, cond.roll(self.shift, dims=-1),
                                      cond.roll(-self.shift, dims=-1))
        return batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", required=True, help="training shard folder (zero1to3 data pack)")
    parser.add_argument("--val-data", required=True, help="held-out shard folder")
    parser.add_argument("--init-from", default="src/zero1to3/weights/tiny")
    parser.add_argument("--work", default="/root/z123/probe")
    parser.add_argument("--out", default="out")
    parser.add_argument("--minutes", type=float, default=7.0, help="training time of this call, all segments")
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--timestep-power", type=float, default=1.0)
    parser.add_argument("--near-view-candidates", type=int, default=1)
    parser.add_argument("--eval-batches", type=int, default=8,
                        help="held-out batches of 256 pairs per pose-use score")
    parser.add_argument("--steps", type=int, default=10**7,
                        help="the run's total step limit (it stops at this or --minutes, whichever comes first)")
    parser.add_argument("--toy-shift", type=int, default=0, help="pixels of the toy task's shift (0: the real task)")
    parser.add_argument("--export", action="store_true")
    args = parser.parse_args()

    from zero1to3.training import TrainConfig, Trainer, load_training_arrays

    work, out = Path(args.work) / args.name, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images, poses, _ = load_training_arrays(args.data, 64)
    h_images, h_poses, _ = load_training_arrays(args.val_data, 64)
    segment = args.minutes / args.segments
    toy = args.toy_shift != 0
    # the default-model recipe's settings (scripts/train_default_model.py), two departures switchable
    config = TrainConfig(data=args.data, output_dir=str(work / "run"), init_from=args.init_from, override=True,
                         batch_size=args.batch, learning_rate=args.lr, max_steps=args.steps, max_minutes=segment,
                         ema_decay=0.999, mixed_precision="bf16" if torch.cuda.is_available() else "no",
                         train_image_encoder=True, checkpoint_every=10**6, sample_every=0, log_every=100,
                         timestep_power=args.timestep_power, near_view_candidates=args.near_view_candidates,
                         cache_latents=not toy)  # the toy's targets are not stored views
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if toy:
        trainer = Trainer(config, batcher=ShiftBatcher(images, poses, device, args.toy_shift))
        heldout = ShiftBatcher(h_images, h_poses, device, args.toy_shift)
    else:
        trainer = Trainer(config, arrays=(images, poses))
        heldout = PairBatcher(h_images, h_poses, device)
    log = out / f"{args.name}.jsonl"

    def record(seconds: float) -> None:
        entry = {"name": args.name, "step": trainer.step, "train_seconds": seconds,
                 "settings": {"toy_shift": args.toy_shift, "timestep_power": args.timestep_power,
                              "near_view_candidates": args.near_view_candidates, "batch": args.batch, "lr": args.lr},
                 "ema": trainer.pose_use(heldout, batches=args.eval_batches),
                 "raw": trainer.pose_use(heldout, use_ema=False, batches=args.eval_batches),
                 "sin_column_norm": trainer.module.camera_projection.projection.weight[:, -3].norm().item()}
        with log.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        print(json.dumps(entry), flush=True)

    record(0.0)
    seconds = 0.0
    for _ in range(args.segments):
        result = trainer.fit()
        seconds += result["seconds"]
        record(seconds)
    if args.export:
        t = time.perf_counter()
        trainer.export(work / "export", unet_weight_bits=8)
        print(f"exported {work / 'export'} in {time.perf_counter() - t:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
