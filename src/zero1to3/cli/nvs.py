"""``zero1to3 nvs`` (views at given cameras) and ``zero1to3 orbit`` (a turntable GIF/MP4)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from zero1to3.cli.common import CLIError, add_model_arguments, add_sampling_arguments, load_pipeline

#: Views per sampler call: large view counts run in chunks, so memory does not grow with --views.
DEFAULT_CHUNK = 16
#: A contact sheet is written only up to this many images (beyond it, the PNGs are the output).
MAX_GRID_IMAGES = 256


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nvs", help="novel views of the object in IMAGE at a relative camera change",
                       description="Generate N samples of the view after moving the camera by (polar, azimuth, "
                                   "radius). Positive polar moves the camera down; azimuth turns it around the "
                                   "object (degrees); radius moves it away (world units).")
    p.add_argument("image", help="photo of one object (PNG/JPEG; RGBA cut-outs keep their transparency)")
    p.add_argument("--polar", type=float, nargs="+", default=[0.0], help="polar change(s) in degrees (+ = down)")
    p.add_argument("--azimuth", type=float, nargs="+", default=[90.0], help="azimuth change(s) in degrees")
    p.add_argument("--radius", type=float, nargs="+", default=[0.0], help="distance change(s), world units")
    p.add_argument("-n", "--num-samples", type=int, default=4, help="samples per camera (each its own noise)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                   help=f"views sampled at once (memory; default {DEFAULT_CHUNK}); the same seed and chunk size "
                        "give the same views")
    p.add_argument("-o", "--output", default="nvs_out", help="output folder (PNGs + grid.png)")
    add_sampling_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=run_nvs)

    o = sub.add_parser("orbit", help="a turntable of generated views around the object (GIF or MP4)")
    o.add_argument("image", help="photo of one object (PNG/JPEG; RGBA cut-outs keep their transparency)")
    o.add_argument("--views", type=int, default=12, help="frames: cameras evenly spaced over a full turn")
    o.add_argument("--elevation", type=float, default=0.0, help="orbit elevation in degrees")
    o.add_argument("--input-elevation", type=float, default=0.0, help="elevation of the input photo (degrees)")
    o.add_argument("--spiral", action="store_true", help="swing the elevation +-20 deg along the orbit")
    o.add_argument("--fps", type=float, default=6.0, help="frames per second of the animation")
    o.add_argument("-o", "--output", default="orbit.gif",
                   help=".gif or .mp4 (mp4 needs imageio-ffmpeg: pip install 'zero1to3[video]')")
    o.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK,
                   help=f"views sampled at once (sampler memory stays flat in --views; default {DEFAULT_CHUNK})")
    add_sampling_arguments(o)
    add_model_arguments(o)
    o.set_defaults(func=run_orbit)


def _poses(args: argparse.Namespace):
    from zero1to3.camera import RelativePose
    from zero1to3.inputs import MAX_RADIUS_CHANGE, check_range, wrap_degrees

    counts = {len(args.polar), len(args.azimuth), len(args.radius)} - {1}
    if len(counts) > 1:
        raise CLIError("--polar, --azimuth and --radius take one value or the same number of values")
    n = max(len(args.polar), len(args.azimuth), len(args.radius))
    pick = lambda values, i: values[i] if len(values) > 1 else values[0]  # noqa: E731
    poses = []
    for i in range(n):
        polar = check_range("--polar", pick(args.polar, i), -180.0, 180.0)
        azimuth = wrap_degrees(check_range("--azimuth", pick(args.azimuth, i), -1e6, 1e6))
        radius = check_range("--radius", pick(args.radius, i), -MAX_RADIUS_CHANGE, MAX_RADIUS_CHANGE,
                             why=" (the model was trained on cameras 1.5-2.2 from the object)")
        poses.append(RelativePose.from_degrees(polar, azimuth, radius))
    return poses


def check_image_argument(path: str) -> None:
    """The input image exists and its header is within the pixel cap (the pixels are decoded later)."""
    from PIL import Image

    from zero1to3.inputs import check_pixel_count

    if not Path(path).is_file():
        raise CLIError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            check_pixel_count(img.width, img.height, f"image {Path(path).name}")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ValueError) and not isinstance(exc, Image.DecompressionBombError):
            raise CLIError(str(exc)) from None
        from zero1to3.inputs import open_image

        open_image(path)  # the same one-line reason as decoding would give
        raise CLIError(f"cannot read image {Path(path).name}") from None


def check_sampling_arguments(args: argparse.Namespace) -> None:
    """Every sampling option in range, before the model is loaded."""
    from zero1to3.inputs import check_int, check_range, check_seed

    check_int("--steps", args.steps, 1, 1000)
    check_range("--guidance", args.guidance, 0.0, 100.0)
    check_range("--eta", args.eta, 0.0, 1.0)
    check_seed("--seed", args.seed)
    if args.foreground_ratio is not None:
        check_range("--foreground-ratio", args.foreground_ratio, 0.05, 1.0)
    if hasattr(args, "chunk_size"):
        check_int("--chunk-size", args.chunk_size, 1, 4096)


def _sampling_kwargs(args: argparse.Namespace) -> dict:
    check_sampling_arguments(args)
    return dict(num_inference_steps=args.steps, guidance_scale=args.guidance,
                scheduler=args.scheduler, eta=args.eta, preprocess=not args.no_preprocess,
                foreground_ratio=args.foreground_ratio, progress=True)


def _pose_chunks(poses: list, chunk: int):
    for start in range(0, len(poses), chunk):
        yield start, poses[start:start + chunk]


def run_nvs(args: argparse.Namespace) -> int:
    import torch

    from zero1to3.inputs import check_int, check_output_dir

    check_image_argument(args.image)
    poses = _poses(args)
    check_int("--num-samples", args.num_samples, 1, 256)
    kwargs = _sampling_kwargs(args)
    folder = check_output_dir(args.output)
    pipe = load_pipeline(args)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)  # one stream across chunks: reproducible per chunk size
    per_call = max(1, args.chunk_size // args.num_samples)
    grid_rows, input_image = [], None
    for first, part in _pose_chunks(poses, per_call):
        try:
            out = pipe(args.image, part, num_samples=args.num_samples, generator=generator, **kwargs)
        except ValueError as exc:  # ImageInputError and the pipeline's own checks
            raise CLIError(str(exc)) from None
        if input_image is None:
            folder.mkdir(parents=True, exist_ok=True)
            input_image = out.input_image
            input_image.save(folder / "input.png")
        for p, (pose, row) in enumerate(zip(part, out.images_per_pose), start=first):
            polar, azimuth, radius = pose.degrees()
            for s, img in enumerate(row):
                img.save(folder / f"view{p:02d}_polar{polar:+.0f}_az{azimuth:.0f}_r{radius:+.2f}_s{s}.png")
        if len(poses) * args.num_samples <= MAX_GRID_IMAGES:
            grid_rows.append(out.array)
    if grid_rows:
        from zero1to3.pipeline import NovelViewOutput

        NovelViewOutput(np.concatenate(grid_rows), poses, input_image).grid().save(folder / "grid.png")
    print(f"wrote {len(poses) * args.num_samples} views{' and grid.png' if grid_rows else ''} to {folder} "
          f"({time.perf_counter() - start:.1f} s on {pipe.device})")
    return 0


def run_orbit(args: argparse.Namespace) -> int:
    import torch

    from zero1to3.camera import orbit, spiral
    from zero1to3.inputs import check_int, check_output_file, check_range
    from zero1to3.media import MediaError, check_animation_path, gif_delay_ms, save_animation

    check_image_argument(args.image)
    check_int("--views", args.views, 1, 100_000)
    check_range("--fps", args.fps, 0.0, 240.0, low_open=True)
    input_elevation = check_range("--input-elevation", args.input_elevation, -89.0, 89.0)
    if args.spiral:
        poses = spiral(args.views, input_elevation_deg=input_elevation)
    else:
        poses = orbit(args.views, check_range("--elevation", args.elevation, -89.0, 89.0), input_elevation)
    output = check_output_file(args.output, suffixes=(".gif", ".mp4"))
    kwargs = _sampling_kwargs(args)
    try:
        check_animation_path(output)  # before any sampling: a missing MP4 encoder fails now
        gif_delay_ms(args.fps)
    except MediaError as exc:
        raise CLIError(str(exc)) from None
    pipe = load_pipeline(args)
    generator = torch.Generator().manual_seed(args.seed)
    frames: list[np.ndarray] = []
    # the sampler runs chunk by chunk (its memory is flat in --views); only the uint8 frames are kept, and the
    # file is written atomically by save_animation (correct GIF delays, temp file + rename)
    for _, part in _pose_chunks(poses, args.chunk_size):
        try:
            out = pipe(args.image, part, num_samples=1, generator=generator, **kwargs)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        frames.extend(np.asarray(frame) for frame in out.array[:, 0])
    save_animation(output, frames, args.fps)
    print(f"wrote {len(frames)} frames to {output} ({args.fps:g} fps)")
    return 0
