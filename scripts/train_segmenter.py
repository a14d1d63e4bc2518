"""Train the foreground segmenter end to end, export it, and score it on unseen backgrounds.

    # GPU (one H200, <= 4 min wall, a few GB of GPU memory), data as shards or renders folders:
    python scripts/train_segmenter.py --data SHARDS_OR_RENDERS --eval-data TEST_RENDERS_OR_SHARDS \
        --backgrounds BG_PACK/train --heldout-backgrounds BG_PACK/heldout --out OUT/segmenter \
        --summary OUT/segmenter_eval.json --device cuda --time-limit 200
    # CPU (the interim shipped weights): fewer, smaller steps
    nice -n 10 python scripts/train_segmenter.py ... --device cpu --steps 900 --batch-size 16 --image-size 128

    # score weights (several at once) and inference variants on one fixed composite set, on the CPU
    python scripts/train_segmenter.py eval --weights src/zero1to3/weights/segmenter OTHER/segmenter \
        --eval-data /work/corpus/renders/test256 --heldout-backgrounds .data/bg/heldout --eval-views 4 \
        --eval-count 600 --inference single flip scales scales+flip --threads 1 --summary OUT/eval.json

    # CPU time per photo of the shipped segmenter (and of the whole preprocessing on that path)
    python scripts/train_segmenter.py bench --images PHOTOS... --threads 2

    # the README's photo orbit: the photo as the segmenter cuts it out (left) and the default model's orbit
    python scripts/train_segmenter.py photo-orbit /usr/share/backgrounds/free_by_Peter_Nerlich.jpg \
        -o docs/images/orbit_photo_bird.gif --views 16 --threads 1

    # a compact copy of background images (JPEG crops; carry it to a machine without the packages)
    python scripts/train_segmenter.py pack --roots /usr/share/backgrounds/mate ... --out BG_PACK/train
    # (both packs, train and held-out, from their Debian sources: scripts/segmenter_backgrounds.sh)

The summary JSON holds the training settings, time, and mask IoU of the exported weights (the shipped
inference path, run on the CPU) on test-split objects over held-out backgrounds and over fresh
procedural patterns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from zero1to3.atomic import write_json_atomic  # noqa: E402
from zero1to3.segmentation import DEFAULT_SEGMENTER_DIR, SegmenterConfig, load_segmenter  # noqa: E402
from zero1to3.segmentation_train import (SegmenterTrainConfig, composite_eval_set, evaluate_segmenter,  # noqa: E402
                                         list_images, load_background_bank, load_object_bank, train_segmenter)


def pack(args: argparse.Namespace) -> int:
    """Random crops (JPEG, ``--size`` px) of every image under ``--roots`` into ``--out``."""
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = [f for f in list_images(args.roots) if f.name not in set(args.exclude)]
    if args.max_images and len(files) > args.max_images:
        files = [files[i] for i in sorted(rng.choice(len(files), args.max_images, replace=False))]
    written = 0
    for file in files:
        try:
            with Image.open(file) as image:
                image.draft("RGB", (args.size * 2, args.size * 2))
                rgb = image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if min(rgb.size) < args.min_side or np.asarray(rgb).std() < 2.0:  # icons, glyphs, blank images
            continue
        if max(rgb.size) > 3 * args.size:
            rgb.thumbnail((3 * args.size, 3 * args.size))
        elif min(rgb.size) < args.size:  # small tiles: keep whole (training tiles them)
            pass
        for k in range(args.crops_per_image):
            w, h = rgb.size
            side = min(w, h) if min(w, h) <= args.size else int(min(w, h) * rng.uniform(0.5, 1.0))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = rgb.crop((x0, y0, x0 + side, y0 + side))
            if side > args.size:
                crop = crop.resize((args.size, args.size), Image.Resampling.BILINEAR)
            name = f"{args.prefix}{written:05d}.jpg"
            tmp = out / f".{name}.tmp"
            crop.save(tmp, format="JPEG", quality=90)
            os.replace(tmp, out / name)
            written += 1
    with (out / "SOURCES.txt").open("a") as f:
        f.write(f"{args.prefix or '-'}: {written} crops of {len(files)} images under {' '.join(map(str, args.roots))}\n")
    print(f"packed {written} crops from {len(files)} images -> {out}")
    return 0


def train(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    for path in [args.data, args.eval_data, *args.backgrounds, *args.heldout_backgrounds]:
        if path and not Path(path).exists():
            print(f"train_segmenter: error: not found: {path}", file=sys.stderr)
            return 2
    if args.device == "cpu":
        torch.set_num_threads(args.threads or torch.get_num_threads())
    config = SegmenterTrainConfig(steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                                  learning_rate=args.lr, time_limit_s=args.time_limit,
                                  views_per_object=args.views_per_object, max_objects=args.max_objects,
                                  seed=args.seed)
    objects = load_object_bank(args.data, args.image_size, args.views_per_object, args.max_objects)
    backgrounds = load_background_bank(args.backgrounds, args.image_size, crops_per_image=args.crops_per_image,
                                       max_images=args.max_background_images, seed=args.seed)
    print(f"loaded {len(objects)} object views, {len(backgrounds)} background crops in "
          f"{time.perf_counter() - start:.0f}s", flush=True)
    init = load_segmenter(args.init) if args.init else None
    if init is not None and int(init.config.input_size) != args.image_size:
        print(f"train_segmenter: error: --init weights were trained at {init.config.input_size} px, "
              f"not --image-size {args.image_size}", file=sys.stderr)
        return 2
    model, summary = train_segmenter(objects, backgrounds, config, device=args.device, init=init)
    out = Path(args.out)
    model.save_weights(out)
    exported = load_segmenter(out)  # score exactly what was written (fp16 round trip included)
    result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0),
              "host_cpu": platform.processor() or platform.machine(), "train": summary,
              "config": asdict(config), "data": str(args.data),
              "backgrounds": [str(b) for b in args.backgrounds],
              "weights_bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file())}
    if args.eval_data:
        eval_size = args.eval_size
        test_objects = load_object_bank(args.eval_data, eval_size, views_per_object=args.eval_views,
                                        max_objects=args.eval_objects)
        torch.set_num_threads(args.eval_threads)
        evaluation = {}
        sets, heldout_crops = composite_sets(test_objects, args.heldout_backgrounds, eval_size, args.eval_count)
        for name, (images, masks) in sets.items():
            evaluation[name] = evaluate_segmenter(exported, images, masks, SegmenterConfig())
            print(f"eval {name}: {evaluation[name]}", flush=True)
        result["eval"] = {"data": str(args.eval_data), "objects_views": len(test_objects), "size": eval_size,
                          "heldout_backgrounds": [str(b) for b in args.heldout_backgrounds],
                          "heldout_background_crops": heldout_crops, "eval_threads": args.eval_threads,
                          **evaluation}
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    if args.summary:
        write_json_atomic(args.summary, result)
    print(json.dumps({k: result[k] for k in ("train", "weights_bytes", "wall_seconds")}), flush=True)
    return 0


def composite_sets(objects, heldout_backgrounds: list[str], size: int, count: int, procedural: bool = True,
                   seed: int = 1234, background_seed: int = 99) -> tuple[dict, int]:
    """({set name: (images, masks)}, held-out crops): the objects composited over the held-out background
    images (when there are any) and over fresh procedural patterns. Fixed seeds: every scoring (the end of a
    training run, ``eval``) sees the same composites."""
    sets = {}
    bank = load_background_bank(heldout_backgrounds, size, crops_per_image=4, seed=background_seed) \
        if heldout_backgrounds else torch.zeros((0, 3, size, size), dtype=torch.uint8)
    if len(bank):
        sets["heldout_backgrounds"] = composite_eval_set(objects, bank, count, seed=seed)
    if procedural:
        empty = torch.zeros((0, 3, size, size), dtype=torch.uint8)
        sets["procedural_fresh_seed"] = composite_eval_set(objects, empty, count, seed=seed)
    return sets, int(len(bank))


#: Inference variants of ``eval``: the one-pass path of the first GPU-trained weights, and its additions.
INFERENCE_VARIANTS = {
    "single": {"scales": (1.0,), "flip": False},
    "flip": {"scales": (1.0,), "flip": True},
    "scales": {"flip": False},
    "scales+flip": {},  # the shipped default (SegmenterConfig())
}


def evaluate(args: argparse.Namespace) -> int:
    """Mask IoU of weights x inference variants on fixed composites (the training run's protocol)."""
    for path in [args.eval_data, *args.heldout_backgrounds, *args.weights]:
        if not Path(path).exists():
            print(f"train_segmenter eval: error: not found: {path}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    size = args.eval_size
    objects = load_object_bank(args.eval_data, size, views_per_object=args.eval_views, max_objects=args.eval_objects)
    sets, _ = composite_sets(objects, args.heldout_backgrounds if "heldout" in args.sets else [], size,
                             args.eval_count, procedural="procedural" in args.sets, seed=args.seed,
                             background_seed=args.background_seed)
    result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
              "threads": args.threads, "data": str(args.eval_data), "objects_views": len(objects), "size": size,
              "seed": args.seed, "background_seed": args.background_seed, "results": []}
    for weights in args.weights:
        model = load_segmenter(weights)
        for variant in args.inference:
            config = SegmenterConfig(**INFERENCE_VARIANTS[variant])
            for name, (images, masks) in sets.items():
                scores = evaluate_segmenter(model, images, masks, config)
                result["results"].append({"weights": str(weights), "inference": variant, "set": name, **scores})
                print(f"{weights} | {variant} | {name} | mean {scores['mean_iou']:.3f} | median "
                      f"{scores['median_iou']:.3f} | >=0.85 {scores['share_iou_at_least_0.85']:.0%} | low-confidence "
                      f"{scores['share_low_confidence']:.0%} | {scores['seconds_per_image']:.3f} s", flush=True)
                if args.summary:  # after every result: a run cut short keeps what it measured
                    write_json_atomic(args.summary, result)
    return 0


def photo_orbit(args: argparse.Namespace) -> int:
    """GIF: the preprocessed photo (the shipped segmenter's cut-out) beside the default model's orbit views."""
    from zero1to3.camera import orbit
    from zero1to3.media import save_animation
    from zero1to3.pipeline import Zero123Pipeline
    from zero1to3.preprocess import PreprocessConfig, preprocess_image

    torch.set_num_threads(args.threads)
    with Image.open(args.photo) as image:
        photo = image.convert("RGB")
    left = np.asarray(preprocess_image(photo, PreprocessConfig(size=args.size)))  # what the model is given
    pipe = Zero123Pipeline.from_pretrained()
    out = pipe(photo, orbit(args.views), num_samples=1, num_inference_steps=args.steps,
               seed=args.seed)
    gap = np.full((args.size, args.gap, 3), 255, np.uint8)
    frames = [np.concatenate([left, gap, np.asarray(Image.fromarray(np.asarray(view)).resize(
        (args.size, args.size), Image.Resampling.BICUBIC))], axis=1) for view in out.array[:, 0]]
    save_animation(args.output, frames, args.fps)
    print(f"wrote {len(frames)} frames to {args.output}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Median seconds of ``segment`` and of the whole ``preprocess_image`` on busy-background photos."""
    from zero1to3.preprocess import PreprocessConfig, preprocess_image
    from zero1to3.segmentation import segment

    torch.set_num_threads(args.threads)
    model = load_segmenter(args.weights)
    rng = np.random.default_rng(0)
    files = list_images(args.images) if args.images else []
    for width, height in args.sizes:
        photos = []
        for i in range(args.repeats):
            if files:
                with Image.open(files[i % len(files)]) as im:
                    photos.append(np.asarray(im.convert("RGB").resize((width, height))))
            else:
                photos.append(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        segment(photos[0], SegmenterConfig(weights=args.weights), model=model)  # warm-up
        seg_times, pre_times = [], []
        for photo in photos:
            start = time.perf_counter()
            segment(photo, SegmenterConfig(weights=args.weights), model=model)
            seg_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            preprocess_image(photo, PreprocessConfig(segmenter=SegmenterConfig(weights=args.weights)))
            pre_times.append(time.perf_counter() - start)
        print(f"{width}x{height}: segment {np.median(seg_times):.3f} s, preprocess_image (segmenter path) "
              f"{np.median(pre_times):.3f} s per image (median of {len(photos)}, {args.threads} threads)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        p = argparse.ArgumentParser(prog="train_segmenter.py bench")
        p.add_argument("--weights", default=None, help="segmenter folder (default: the shipped one)")
        p.add_argument("--images", nargs="*", default=[], help="photos to time (default: random noise)")
        p.add_argument("--sizes", nargs="+", type=lambda s: tuple(int(v) for v in s.split("x")),
                       default=[(640, 480), (1024, 768)])
        p.add_argument("--repeats", type=int, default=10)
        p.add_argument("--threads", type=int, default=2)
        return bench(p.parse_args(argv[1:]))
    if argv and argv[0] == "eval":
        p = argparse.ArgumentParser(prog="train_segmenter.py eval")
        p.add_argument("--weights", nargs="+", default=[str(DEFAULT_SEGMENTER_DIR)], help="segmenter folders")
        p.add_argument("--eval-data", required=True, help="renders folder or shards of objects to composite")
        p.add_argument("--heldout-backgrounds", nargs="*", default=[], help="background folders (unseen in training)")
        p.add_argument("--sets", nargs="+", choices=["heldout", "procedural"], default=["heldout", "procedural"])
        p.add_argument("--inference", nargs="+", choices=list(INFERENCE_VARIANTS), default=["scales+flip"])
        p.add_argument("--eval-size", type=int, default=256)
        p.add_argument("--eval-views", type=int, default=4)
        p.add_argument("--eval-objects", type=int, default=None)
        p.add_argument("--eval-count", type=int, default=600)
        p.add_argument("--seed", type=int, default=1234, help="composites' seed (objects, placement, backgrounds)")
        p.add_argument("--background-seed", type=int, default=99, help="seed of the background crops")
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--summary", help="JSON summary path")
        return evaluate(p.parse_args(argv[1:]))
    if argv and argv[0] == "photo-orbit":
        p = argparse.ArgumentParser(prog="train_segmenter.py photo-orbit")
        p.add_argument("photo")
        p.add_argument("-o", "--output", required=True, help=".gif path")
        p.add_argument("--views", type=int, default=16)
        p.add_argument("--steps", type=int, default=50)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--size", type=int, default=128, help="panel side in px")
        p.add_argument("--gap", type=int, default=8)
        p.add_argument("--fps", type=float, default=6.67)
        p.add_argument("--threads", type=int, default=1)
        return photo_orbit(p.parse_args(argv[1:]))
    if argv and argv[0] == "pack":
        p = argparse.ArgumentParser(prog="train_segmenter.py pack")
        p.add_argument("--roots", nargs="+", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--size", type=int, default=256)
        p.add_argument("--crops-per-image", type=int, default=1)
        p.add_argument("--max-images", type=int, default=1500)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--min-side", type=int, default=48)
        p.add_argument("--prefix", default="", help="file name prefix (pack several sources into one folder)")
        p.add_argument("--exclude", nargs="*", default=[], help="file names to leave out")
        return pack(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(prog="train_segmenter.py", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="train-split renders folder or shards")
    p.add_argument("--eval-data", help="test-split renders folder or shards (scored at the end)")
    p.add_argument("--backgrounds", nargs="*", default=[], help="folders of background images for training")
    p.add_argument("--heldout-backgrounds", nargs="*", default=[], help="background folders for evaluation only")
    p.add_argument("--out", required=True, help="folder for the exported segmenter")
    p.add_argument("--summary", help="JSON summary path")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--init", help="segmenter folder to continue training from (default: from scratch)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--time-limit", type=float, default=None, help="seconds of training (schedule fits in it)")
    p.add_argument("--batch-size", type=int, default=48)
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--views-per-object", type=int, default=4)
    p.add_argument("--max-objects", type=int, default=None)
    p.add_argument("--crops-per-image", type=int, default=2)
    p.add_argument("--max-background-images", type=int, default=3000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--eval-views", type=int, default=2)
    p.add_argument("--eval-objects", type=int, default=None)
    p.add_argument("--eval-count", type=int, default=300)
    p.add_argument("--eval-threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return train(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
