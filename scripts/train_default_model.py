"""Build the embedded default model end to end: training views (real-object corpus shards and/or procedural
objects rendered here), the small VAE, the view-conditioned UNet (resumable across calls), fp16 export,
held-out quality.

Every phase is skipped when its output exists, so the same command resumes in a later call:

    python scripts/train_default_model.py --work /root/z123 --out "$OUT" --minutes 7 \
        --data .data/train64 --val-data .data/val64 --objects 2000 --init-from src/zero1to3/weights/tiny
    accelerate launch --num_processes 2 scripts/train_default_model.py ...   # DDP on 2 GPUs (global --batch)

``--data`` takes shard folders (``zero1to3 data pack``) or render folders; ``--objects N`` mixes in N
procedural objects rendered on this machine. Held-out views (``--val-data``, else procedural objects of
another seed family) are never seen in training.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

MAIN = True  # set in main(): only the main process writes logs, renders and evaluates


def log(out: Path, message: str) -> None:
    if not MAIN:
        return
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with (out / "job.log").open("a") as f:
        f.write(line + "\n")


def render_phase(args, work: Path, out: Path) -> None:
    jobs = [("train", args.objects, 12, 0, False)] if args.objects else []
    if not args.val_data:
        jobs.append(("heldout", args.heldout, 13, 987654, True))
    if jobs:  # the renderer needs trimesh and moderngl, which a shards-only machine may lack
        from zero1to3.data.writer import render_dataset
    for name, count, views, seed, mesh in jobs:
        folder = work / name
        if (folder / "meta.json").is_file() and len(list(folder.glob("proc_*"))) >= count:
            continue
        t = time.perf_counter()
        summary = render_dataset(folder, count, num_views=views, resolution=args.resolution, seed=seed,
                                 workers=args.workers, save_mesh=mesh, progress=False)
        log(out, f"rendered {name}: {len(summary.rendered)} objects x {views} views in "
                 f"{time.perf_counter() - t:.1f} s ({len(summary.failed)} failed)")


def heldout_arrays(args, work: Path, size: int):
    from zero1to3.training import load_training_arrays

    return load_training_arrays(args.val_data or str(work / "heldout"), size)


def training_arrays(args, work: Path, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Every training source concatenated (same view count and size), with the object count of each."""
    from zero1to3.training import load_training_arrays

    sources = list(args.data) + ([str(work / "train")] if args.objects else [])
    if not sources:
        raise SystemExit("no training data: pass --data and/or --objects")
    images, poses, counts = [], [], {}
    for source in sources:
        i, p, names = load_training_arrays(source, size)
        images.append(i)
        poses.append(p)
        counts[source] = len(names)
    views = {i.shape[1] for i in images}
    if len(views) > 1:  # keep the common prefix of views: pairs are drawn within one object
        v = min(views)
        images, poses = [i[:, :v] for i in images], [p[:, :v] for p in poses]
    return np.concatenate(images), np.concatenate(poses), counts


def evaluate(pipe, images: np.ndarray, poses: np.ndarray, steps: int, limit: int, chunk: int = 16,
             guidance_scale: float = 3.0) -> dict:
    """PSNR/SSIM over the target views of each held-out object (input = view 0), model vs two baselines.

    Objects are sampled together (``chunk`` at a time) so a small model is not launch-bound.
    """
    from zero1to3.camera import relative_pose
    from zero1to3.evaluation.metrics import psnr, ssim
    from zero1to3.evaluation.stats import summarize
    from zero1to3.pipeline import to_uint8

    n = min(limit, images.shape[0])
    views = images.shape[1] - 1
    scores: dict[str, list[tuple[float, float]]] = {"model": [], "input_copy": [], "zero_pose": [], "blank_white": []}
    for start in range(0, n, chunk):
        idx = range(start, min(n, start + chunk))
        cond_img = torch.from_numpy(images[list(idx), 0]).permute(0, 3, 1, 2).float().to(pipe.device) / 127.5 - 1
        cond = pipe.encode_condition(cond_img.to(pipe.dtype)).repeat(views)
        vec = torch.tensor(np.stack([[relative_pose(poses[i, v], poses[i, 0]).vector() for v in range(1, views + 1)]
                                     for i in idx]).reshape(-1, 4), device=pipe.device, dtype=pipe.dtype)
        preds = {}
        for name, pose in (("model", vec), ("zero_pose", torch.zeros_like(vec))):
            lat = pipe.sample_latents(cond, pose, num_inference_steps=steps, guidance_scale=guidance_scale,
                                      generator=torch.Generator().manual_seed(start))
            preds[name] = to_uint8(pipe.decode_latents(lat).float()).reshape(len(idx), views, *images.shape[2:])
        preds["input_copy"] = np.repeat(images[list(idx), :1], views, axis=1)
        preds["blank_white"] = np.full_like(preds["input_copy"], 255)
        for k, i in enumerate(idx):
            gt = torch.from_numpy(images[i, 1:]).permute(0, 3, 1, 2).float() / 255.0
            for name, pred in preds.items():
                p = torch.from_numpy(pred[k]).permute(0, 3, 1, 2).float() / 255.0
                scores[name].append((psnr(p, gt).mean().item(), ssim(p, gt).mean().item()))
    def entry(rows: np.ndarray) -> dict:
        """Mean over objects and 95% t-interval of the (psnr, ssim) columns."""
        out: dict = {"objects": len(rows)}
        for column, metric in enumerate(("psnr", "ssim")):
            summary = summarize(rows[:, column])
            out[metric] = summary.mean
            out[f"{metric}_ci95"] = [summary.low, summary.high]
        return out

    table = {name: entry(np.array(rows)) for name, rows in scores.items()}
    for baseline in ("input_copy", "zero_pose"):  # paired per object: the same objects, views and targets
        table[f"model_minus_{baseline}"] = entry(np.array(scores["model"]) - np.array(scores[baseline]))
    return table


def write_orbit(pipe, images: np.ndarray, poses: np.ndarray, out: Path, steps: int) -> None:
    from zero1to3.camera import orbit, spherical_of_camera
    from zero1to3.media import save_animation

    polar = spherical_of_camera(poses[0, 0])[0]
    elevation = 90.0 - np.degrees(polar)
    views = orbit(24, elevation_deg=elevation, input_elevation_deg=elevation)
    frames = pipe(images[0, 0], views, num_samples=1, num_inference_steps=steps, preprocess=False, seed=0).array[:, 0]
    big = [np.kron(f, np.ones((2, 2, 1), dtype=np.uint8)) for f in frames]
    inp = np.kron(images[0, 0], np.ones((2, 2, 1), dtype=np.uint8))
    save_animation(out / "orbit_heldout.gif", [np.concatenate([inp, f], 1) for f in big], fps=8)


def guidance_tables(pipe, images: np.ndarray, poses: np.ndarray, args) -> dict:
    """The held-out table at the first --eval-guidance, plus one ``guidance_G`` table per further scale."""
    table = evaluate(pipe, images, poses, args.eval_steps, args.eval_limit, guidance_scale=args.eval_guidance[0])
    for scale in args.eval_guidance[1:]:
        table[f"guidance_{scale:g}"] = evaluate(pipe, images, poses, args.eval_steps, args.eval_limit,
                                                guidance_scale=scale)
    return table


def evaluate_only(args) -> int:
    """Score an existing model (--init-from) on the held-out data: e.g. to choose the shipped guidance on val."""
    from zero1to3.pipeline import Zero123Pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.init_from:
        raise SystemExit("--eval-only needs --init-from MODEL")
    pipe = Zero123Pipeline.from_pretrained(args.init_from, device="cuda" if torch.cuda.is_available() else "cpu",
                                           dtype=torch.float32)
    images, poses, _ = heldout_arrays(args, Path(args.work), pipe.image_size)
    t = time.perf_counter()
    table = guidance_tables(pipe, images, poses, args)
    table["_meta"] = {"model": args.init_from, "guidance": args.eval_guidance[0], "eval_steps": args.eval_steps,
                      "heldout_objects": int(images.shape[0]), "eval_seconds": time.perf_counter() - t}
    (out / "heldout_eval.json").write_text(json.dumps(table, indent=1))
    log(out, f"held-out eval: {json.dumps(table)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/root/z123")
    parser.add_argument("--out", default=os.environ.get("OUT", "out"))
    parser.add_argument("--data", nargs="*", default=[], help="training shard or render folders")
    parser.add_argument("--val-data", default=None, help="held-out shard or render folder (fixed-pair loss, eval)")
    parser.add_argument("--objects", type=int, default=0, help="procedural objects to mix in (rendered here)")
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="cosine decays to --min-lr-ratio over this call's --minutes (or --steps)")
    parser.add_argument("--min-lr-ratio", type=float, default=0.1)
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--eval-limit", type=int, default=64)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--eval-guidance", type=float, nargs="+", default=[3.0],
                        help="guidance scales to evaluate (the first is the headline number)")
    parser.add_argument("--foreground-ratio", type=float, default=0.6,
                        help="object size in these renders (reference cameras): stored in the export")
    parser.add_argument("--init-from", default=None, help="continue from an exported model (fresh optimizer)")
    parser.add_argument("--preset", default="tiny", help="model size (zero1to3.model.PRESETS)")
    parser.add_argument("--unet-from-scratch", action="store_true",
                        help="keep --init-from's VAE, image encoder and camera projection; new --preset UNet")
    parser.add_argument("--grow-unet", action="store_true",
                        help="keep every --init-from weight, deepen its UNet to --preset (zero1to3.model.grow_unet)")
    parser.add_argument("--unet-weight-bits", type=int, choices=(8, 16), default=16,
                        help="storage of the exported UNet: 8 = per-channel int8 (the shipped form), 16 = fp16")
    parser.add_argument("--augment", default="none", choices=("none", "mirror", "mirror+rgb"),
                        help="TrainConfig.augment: mirrored pairs (and RGB orders) as more training pairs")
    parser.add_argument("--channels-last", action="store_true", help="TrainConfig.channels_last (GPU speed)")
    parser.add_argument("--compile-unet", action="store_true",
                        help="TrainConfig.compile_unet: only where benchmarks/train_throughput.py passed")
    parser.add_argument("--eval-only", action="store_true",
                        help="no training: the held-out evaluation of --init-from at each --eval-guidance")
    args = parser.parse_args()
    if args.eval_only:
        return evaluate_only(args)
    from accelerate import PartialState

    global MAIN
    state = PartialState(cpu=not torch.cuda.is_available())  # one process, or one per GPU (accelerate launch)
    MAIN = state.is_main_process
    logging.basicConfig(level=logging.INFO if MAIN else logging.WARNING)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(out, f"torch {torch.__version__} cuda {torch.cuda.is_available()} "
             f"{torch.cuda.get_device_name() if torch.cuda.is_available() else ''} processes {state.num_processes}")
    if MAIN:
        render_phase(args, work, out)
    state.wait_for_everyone()
    from zero1to3.training import TrainConfig, Trainer, VAETrainConfig, train_vae

    images, poses, counts = training_arrays(args, work, args.resolution)
    log(out, f"loaded {images.shape} training views from {counts}")
    vae_dir = Path(args.init_from) / "vae" if args.init_from else work / "vae" / "vae"
    if not (vae_dir / "config.json").is_file():
        if state.num_processes > 1:
            raise SystemExit("train the VAE in a one-process run (or pass --init-from) before launching several")
        t = time.perf_counter()
        train_vae(VAETrainConfig(output_dir=str(work / "vae"), batch_size=128, max_steps=args.vae_steps,
                                 mixed_precision="bf16"), images=images)
        log(out, f"trained VAE in {time.perf_counter() - t:.1f} s")
    if (work / "vae" / "metrics.jsonl").is_file():
        shutil.copy(work / "vae" / "metrics.jsonl", out / "vae_metrics.jsonl")
    config = TrainConfig(data=",".join(counts), output_dir=str(work / "run"), preset=args.preset,
                         init_from=args.init_from, unet_from_scratch=args.unet_from_scratch, grow_unet=args.grow_unet,
                         override=True,
                         vae_path=str(vae_dir), batch_size=args.batch, learning_rate=args.lr,
                         max_steps=args.steps, max_minutes=args.minutes, ema_decay=0.999,
                         lr_schedule=args.lr_schedule, min_lr_ratio=args.min_lr_ratio,
                         foreground_ratio=args.foreground_ratio,
                         augment=args.augment, channels_last=args.channels_last, compile_unet=args.compile_unet,
                         mixed_precision="bf16", train_image_encoder=True, checkpoint_every=2000,
                         sample_every=2000, log_every=100)
    trainer = Trainer(config, arrays=(images, poses))
    log(out, f"diffusion training from step {trainer.step}")
    from zero1to3.training import PairBatcher

    h_images, h_poses, _ = heldout_arrays(args, work, args.resolution)
    heldout = PairBatcher(h_images, h_poses, trainer.accelerator.device)
    losses = {"train_before": trainer.evaluation_loss(), "heldout_before": trainer.evaluation_loss(heldout)}
    result = trainer.fit()
    losses.update(train_after=trainer.evaluation_loss(), heldout_after=trainer.evaluation_loss(heldout))
    log(out, f"trained to step {result['step']} in {result['seconds']:.1f} s; fixed-pair EMA losses {losses}")
    # does it use the camera? (a model that ignores the azimuth's sign fails the orbit side check)
    pose_use = trainer.pose_use(heldout)
    log(out, f"held-out pose use (loss increase when the poses are altered): {pose_use}")
    if not MAIN:
        trainer.accelerator.wait_for_everyone()  # the export barrier; evaluation is the main process's
        return 0
    if (work / "run" / "metrics.jsonl").is_file():  # absent when a run is shorter than one log interval
        shutil.copy(work / "run" / "metrics.jsonl", out / "train_metrics.jsonl")
    samples = sorted((work / "run" / "samples").glob("*.png"))
    if samples:
        shutil.copy(samples[-1], out / "samples_latest.png")
    export = work / "export"
    if export.exists():
        shutil.rmtree(export)
    # main only here; the other ranks wait at the same barrier above
    trainer.export(export, unet_weight_bits=8 if args.unet_weight_bits == 8 else None)
    # $OUT takes files of at most 16 MiB: ship the export as a tar in 15 MiB parts (cat model.tgz.* | tar xz).
    subprocess.run(f"tar cz -C {work} export | split -b 15m - {out}/model.tgz.", shell=True, check=True)
    del trainer
    torch.cuda.empty_cache()
    if not args.skip_eval:
        from zero1to3.pipeline import Zero123Pipeline

        pipe = Zero123Pipeline.from_pretrained(export, device="cuda" if torch.cuda.is_available() else "cpu",
                                               dtype=torch.float32)
        t = time.perf_counter()
        table = guidance_tables(pipe, h_images, h_poses, args)
        table["_meta"] = {"guidance": args.eval_guidance[0], "step": result["step"],
                          "eval_seconds": time.perf_counter() - t, "heldout_objects": int(h_images.shape[0]),
                          "eval_steps": args.eval_steps, "fixed_pair_losses": losses, "pose_use": pose_use,
                          "processes": state.num_processes, "global_batch": args.batch}
        (out / "heldout_eval.json").write_text(json.dumps(table, indent=1))
        log(out, f"held-out eval: {json.dumps(table)}")
        write_orbit(pipe, h_images, h_poses, out, args.eval_steps)
    log(out, f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
