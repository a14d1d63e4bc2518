"""Diffusion-trainer throughput by UNet layout and compilation, each with a gradient check against fp32.

Why: a 7-21 M UNet on 16x16 latents leaves an H200 mostly waiting on memory (~8,800 pairs/s for `tiny`),
so a faster step multiplies every device minute; but Inductor has produced silently wrong gradients for
this UNet on a CPU (docs/training.md), so a compiled step is only usable where its gradients match. Every
variant starts from the same weights and scores the same fixed batch (pairs, noise, timesteps); its
gradient is compared with an fp32 eager one (TF32 off): the eager bf16 row is the rounding floor, and a
variant "passes" within 2x that floor. Prints one Markdown table; ``--json`` keeps the numbers.

    python benchmarks/train_throughput.py --data .data/val64 --init-from src/zero1to3/weights/tiny \
        --variants eager channels_last compile compile+channels_last
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

from zero1to3.training import TrainConfig, Trainer, load_training_arrays

#: name -> TrainConfig overrides
VARIANTS: dict[str, dict[str, bool]] = {
    "eager": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile_unet": True},
    "compile+channels_last": {"compile_unet": True, "channels_last": True},
}


def unet_gradient(trainer: Trainer, seed: int) -> torch.Tensor:
    """The flattened fp32 UNet gradient of one fixed batch (the training batch size, so nothing recompiles)."""
    trainer.module.train()
    batch = trainer.batcher.batch(10**8, trainer.config.batch_size, seed=seed)
    generator = torch.Generator(device=trainer.accelerator.device).manual_seed(seed)
    with trainer.accelerator.autocast():
        loss = trainer.loss(batch, generator)
    trainer.accelerator.backward(loss)
    unet = trainer.accelerator.unwrap_model(trainer.module).unet
    flat = torch.cat([p.grad.float().flatten() for p in unet.parameters() if p.grad is not None])
    trainer.optimizer.zero_grad(set_to_none=True)
    return flat


def new_trainer(config: TrainConfig, arrays) -> Trainer:
    """A Trainer whose precision may differ from the previous one's (accelerate keeps one global state)."""
    AcceleratorState._reset_state()
    return Trainer(config, arrays=arrays)


def run_variant(name: str, base: dict, arrays, warmup: int, steps: int, seed: int,
                reference: torch.Tensor | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(**base, **VARIANTS.get(name, {}), output_dir=tmp, max_steps=warmup)
        trainer = new_trainer(config, arrays)
        t0 = time.perf_counter()
        grad = unet_gradient(trainer, seed)
        first_step_s = time.perf_counter() - t0  # includes compilation
        row = {"variant": name, "first_gradient_s": first_step_s}
        if reference is not None:
            row["gradient_error"] = float((grad - reference).norm() / reference.norm())
            a, b = grad.double(), reference.double()
            row["gradient_cosine"] = float(a.dot(b) / (a.norm() * b.norm()))
        trainer.fit()  # warm-up steps
        config.max_steps = warmup + steps
        trainer.fit()
        record = json.loads((Path(tmp) / "metrics.jsonl").read_text().splitlines()[-1])
        row["pairs_per_s"] = record["images_per_s"]
        row["max_memory_gb"] = record.get("max_memory_gb")
        del trainer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="shard or render folder (its views feed the steps)")
    parser.add_argument("--init-from", required=True, help="model folder: every variant starts from it")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (compilation)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant")
    parser.add_argument("--variants", nargs="+", default=["eager", "channels_last"], choices=sorted(VARIANTS))
    parser.add_argument("--precision", choices=("bf16", "fp16", "no"), default=None,
                        help="autocast of the timed variants (default: bf16 on a GPU, none on a CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    images, poses, _ = load_training_arrays(args.data, 64)
    arrays = (images, poses)
    cuda = torch.cuda.is_available()
    base = dict(init_from=args.init_from, batch_size=args.batch, train_image_encoder=True, ema_decay=0.999,
                sample_every=0, checkpoint_every=10**9, log_every=10**9, resume=False, warmup_steps=1)
    # the fp32 reference: eager, no TF32 anywhere
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory() as tmp:
        reference = unet_gradient(new_trainer(TrainConfig(**base, output_dir=tmp, mixed_precision="no", max_steps=0),
                                              arrays), args.seed)
    torch.backends.cudnn.allow_tf32 = tf32
    precision = args.precision or ("bf16" if cuda else "no")
    rows = []
    names = ["eager"] + [v for v in args.variants if v != "eager"]
    for name in names:
        rows.append(run_variant(name, dict(base, mixed_precision=precision), arrays, args.warmup, args.steps,
                                args.seed, reference))
        print(json.dumps(rows[-1]), flush=True)
    floor = rows[0]["gradient_error"]
    device = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"\n{device}, torch {torch.__version__}, {precision}, batch {args.batch}, {images.shape[0]} objects, "
          f"init {args.init_from}; gradient error = |g - g_fp32| / |g_fp32| on one fixed batch\n")
    print("| variant | pairs/s | vs eager | gradient error | cosine | passes | first step (s) | max memory (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        row["speedup"] = row["pairs_per_s"] / rows[0]["pairs_per_s"]
        row["passes"] = row["gradient_error"] <= max(2 * floor, 1e-4)
        memory = f"{row['max_memory_gb']:.1f}" if row.get("max_memory_gb") is not None else "-"
        print(f"| {row['variant']} | {row['pairs_per_s']:,.0f} | {row['speedup']:.2f}x | {row['gradient_error']:.2e} | "
              f"{row['gradient_cosine']:.6f} | {'yes' if row['passes'] else 'NO'} | {row['first_gradient_s']:.1f} | "
              f"{memory} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
