"""Held-out fixed-pair diffusion loss by timestep band, with true and altered camera poses, for several models.

    PYTHONPATH=src python benchmarks/loss_by_timestep.py --data .data/val64v2 \
        --model shipped=src/zero1to3/weights/tiny --model ab=.data/init_ab2 --pairs 256 --out loss_by_timestep.json

Where ``Trainer.evaluation_loss`` gives one number (uniform timesteps, one per pair), this splits the
1000 training timesteps into ``--bands`` equal bands and scores every pair once in every band, so each band
mean uses all pairs. Everything random is drawn here, independent of the model, so every model and every
pose variant sees the same pairs, latent samples, noise and timesteps (paired differences):

* pairs: ``PairBatcher.batch(10**9 + k, chunk, seed=config.seed + 7)`` for chunk k, as evaluation_loss draws
  them (on this device's generator);
* poses: true, and ``PoseAlteredBatcher``'s mirror / shuffle (within a chunk) / zero of the same pairs;
* per pair: one target latent sample (posterior mean + std * eps), one noise tensor, one timestep uniform in
  each band;
* classifier-free-guidance dropout off (every pair keeps its CLIP and concat conditioning), unlike
  evaluation_loss, which draws TrainConfig.uncond_probability dropout as in training.

The loss of one pair is the epsilon MSE of ``Trainer.loss`` (same VAE moments, scaling, noising, module
call); ``--check`` first proves the per-pair computation reproduces ``Trainer.loss`` on one batch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from zero1to3.model import clip_image_embedding
from zero1to3.training import (PairBatcher, PoseAlteredBatcher, TrainConfig, Trainer, cfg_dropout_masks,
                               draw_timesteps, load_training_arrays)
from zero1to3.seeding import mix_seed

VARIANTS = ("true",) + PoseAlteredBatcher.ALTERATIONS


def build_trainer(model: str, batcher: PairBatcher, workdir: str) -> Trainer:
    """A Trainer as scripts/train_default_model.py builds it (init_from = the weight folder, its VAE), in fp32
    on this machine, without a latent cache; no checkpoint is read (resume off)."""
    config = TrainConfig(data="", output_dir=workdir, init_from=model, vae_path=str(Path(model) / "vae"),
                         mixed_precision="no", train_image_encoder=True, cache_latents=False, resume=False,
                         ema_decay=0.999, override=True)
    return Trainer(config, batcher=batcher)


def per_pair_loss(trainer: Trainer, t_mean: torch.Tensor, t_std: torch.Tensor, concat: torch.Tensor,
                  clip: torch.Tensor, pose: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                  keep_clip: torch.Tensor | None = None, keep_concat: torch.Tensor | None = None) -> torch.Tensor:
    """Epsilon MSE of each pair, the computation of Trainer.loss (fp32, no autocast)."""
    latents = (t_mean + t_std * eps) * trainer.scaling_factor
    if keep_concat is not None:
        concat = concat * keep_concat[:, None, None, None]
    keep = torch.ones(len(t)) if keep_clip is None else keep_clip
    a = trainer.alphas[t][:, None, None, None]
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    pred = trainer.module(noisy, t, concat, clip, None, pose, keep)
    return (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))


@torch.no_grad()
def check_against_trainer(trainer: Trainer, batcher: PairBatcher, size: int = 32) -> tuple[float, float]:
    """(Trainer.loss, the same from per_pair_loss) on one batch with the same generator draws."""
    batch = batcher.batch(10**9, size, seed=trainer.config.seed + 7)
    trainer.module.eval()
    reference = trainer.loss(batch, torch.Generator().manual_seed(123), use_cache=False, timestep_power=1.0).item()
    g = torch.Generator().manual_seed(123)  # the draws of Trainer.loss, in its order
    t_mean, t_std, concat = trainer._moments(batch, use_cache=False)
    eps = torch.randn(t_mean.shape, generator=g)
    keep_clip, keep_concat = cfg_dropout_masks(size, trainer.config.uncond_probability, g)
    noise = torch.randn(t_mean.shape, generator=g)
    t = draw_timesteps(size, 1000, 1.0, g)
    clip = clip_image_embedding(trainer.module.image_encoder, batch["cond"])
    mine = per_pair_loss(trainer, t_mean, t_std, concat, clip, batch["pose"], eps, noise, t, keep_clip,
                         keep_concat).mean().item()
    return reference, mine


@torch.no_grad()
def band_losses(trainer: Trainer, batcher: PairBatcher, chunks: int, chunk: int, bands: int,
                seed: int) -> dict[str, np.ndarray]:
    """{variant: [pairs, bands] per-pair loss}."""
    trainer.module.eval()
    steps = trainer.noise_scheduler.config.num_train_timesteps
    width = steps // bands
    out: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    pair_seed = trainer.config.seed + 7
    for k in range(chunks):
        step = 10**9 + k
        batch = batcher.batch(step, chunk, seed=pair_seed)
        poses = {"true": batch["pose"]}
        for how in PoseAlteredBatcher.ALTERATIONS:
            poses[how] = PoseAlteredBatcher(batcher, how).batch(step, chunk, seed=pair_seed)["pose"]
        g = torch.Generator().manual_seed(mix_seed(seed, k, 3))
        t_mean, t_std, concat = trainer._moments(batch, use_cache=False)
        eps = torch.randn(t_mean.shape, generator=g)
        noise = torch.randn(t_mean.shape, generator=g)
        t_all = torch.arange(bands)[None, :] * width + torch.randint(0, width, (chunk, bands), generator=g)
        clip = clip_image_embedding(trainer.module.image_encoder, batch["cond"])
        rows = {v: np.zeros((chunk, bands)) for v in VARIANTS}
        n = len(VARIANTS)
        for b in range(bands):  # the four pose variants in one forward
            loss = per_pair_loss(trainer, t_mean.repeat(n, 1, 1, 1), t_std.repeat(n, 1, 1, 1),
                                 concat.repeat(n, 1, 1, 1), clip.repeat(n, 1, 1),
                                 torch.cat([poses[v] for v in VARIANTS]), eps.repeat(n, 1, 1, 1),
                                 noise.repeat(n, 1, 1, 1), t_all[:, b].repeat(n))
            for i, v in enumerate(VARIANTS):
                rows[v][:, b] = loss[i * chunk:(i + 1) * chunk].numpy()
        for v in VARIANTS:
            out[v].append(rows[v])
    return {v: np.concatenate(rows) for v, rows in out.items()}


def mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="held-out shard or render folder")
    parser.add_argument("--model", action="append", required=True, help="NAME=FOLDER (exported model); repeat")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=64, help="pairs per draw (the shuffle permutes within one)")
    parser.add_argument("--bands", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="of the latent samples, noise and timesteps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", action="store_true", help="first compare per-pair losses with Trainer.loss")
    parser.add_argument("--out", default=None, help="JSON of the per-band summary (and per-pair arrays: .npz)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chunks = max(1, args.pairs // args.chunk)
    pairs = chunks * args.chunk
    images, poses, names = load_training_arrays(args.data, 64)
    batcher = PairBatcher(images, poses, "cpu")
    losses: dict[str, dict[str, np.ndarray]] = {}
    meta: dict = {"data": args.data, "objects": len(names), "pairs": pairs, "chunk": args.chunk,
                  "bands": args.bands, "seed": args.seed, "threads": args.threads, "seconds": {}}
    for spec in args.model:
        name, folder = spec.split("=", 1)
        with tempfile.TemporaryDirectory() as work:
            trainer = build_trainer(folder, batcher, work)
            if args.check:
                ref, mine = check_against_trainer(trainer, batcher)
                print(f"{name}: Trainer.loss {ref:.6f}, per-pair recomputation {mine:.6f}", flush=True)
                meta.setdefault("check", {})[name] = [ref, mine]
            meta["train_timesteps"] = trainer.noise_scheduler.config.num_train_timesteps
            start = time.perf_counter()
            losses[name] = band_losses(trainer, batcher, chunks, args.chunk, args.bands, args.seed)
            meta["seconds"][name] = time.perf_counter() - start
            print(f"{name}: {pairs} pairs x {args.bands} bands x {len(VARIANTS)} poses in "
                  f"{meta['seconds'][name]:.0f} s", flush=True)
            del trainer
    width = meta["train_timesteps"] // args.bands  # the bands of band_losses
    names_ = list(losses)
    rows = []
    for b in range(args.bands):
        row: dict = {"band": [b * width, (b + 1) * width - 1]}
        for name in names_:
            true = losses[name]["true"][:, b]
            row[name] = mean_se(true)
            for how in PoseAlteredBatcher.ALTERATIONS:
                row[f"{name}_{how}_increase"] = mean_se(losses[name][how][:, b] - true)
        if len(names_) == 2:
            row["difference"] = mean_se(losses[names_[1]]["true"][:, b] - losses[names_[0]]["true"][:, b])
        rows.append(row)
    overall: dict = {}
    for name in names_:
        overall[name] = mean_se(losses[name]["true"].mean(1))
        for how in PoseAlteredBatcher.ALTERATIONS:
            overall[f"{name}_{how}_increase"] = mean_se((losses[name][how] - losses[name]["true"]).mean(1))
    if len(names_) == 2:
        overall["difference"] = mean_se((losses[names_[1]]["true"] - losses[names_[0]]["true"]).mean(1))
    summary = {"meta": meta, "bands": rows, "all_bands": overall}
    header = ["band"] + names_ + (["diff"] if len(names_) == 2 else []) + \
        [f"{n}:{h}" for n in names_ for h in PoseAlteredBatcher.ALTERATIONS]
    print(" | ".join(header))
    for row in rows + [dict(overall, band="all")]:
        cells = [str(row["band"])] + [f"{row[n][0]:.5f}" for n in names_]
        if len(names_) == 2:
            cells.append(f"{row['difference'][0]:+.5f}±{row['difference'][1]:.5f}")
        cells += [f"{row[f'{n}_{h}_increase'][0]:+.5f}" for n in names_ for h in PoseAlteredBatcher.ALTERATIONS]
        print(" | ".join(cells))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
        np.savez_compressed(Path(args.out).with_suffix(".npz"),
                            **{f"{n}_{v}": a for n, d in losses.items() for v, a in d.items()})


if __name__ == "__main__":
    main()
