"""``zero1to3 nvs`` (views at given cameras) and ``zero1to3 orbit`` (a turntable GIF/MP4)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from zero1to3.cli.common import CLIError, add_model_arguments, add_sampling_arguments, finite, load_pipeline


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
    add_sampling_arguments(o)
    add_model_arguments(o)
    o.set_defaults(func=run_orbit)


def _poses(args: argparse.Namespace):
    from zero1to3.camera import RelativePose

    counts = {len(args.polar), len(args.azimuth), len(args.radius)} - {1}
    if len(counts) > 1:
        raise CLIError("--polar, --azimuth and --radius take one value or the same number of values")
    n = max(len(args.polar), len(args.azimuth), len(args.radius))
    pick = lambda values, i: values[i] if len(values) > 1 else values[0]  # noqa: E731
    return [RelativePose.from_degrees(finite("polar", pick(args.polar, i)), finite("azimuth", pick(args.azimuth, i)),
                                      finite("radius", pick(args.radius, i))) for i in range(n)]


def _check_image(path: str) -> None:
    if not Path(path).is_file():
        raise CLIError(f"image file not found: {path}")


def _sampling_kwargs(args: argparse.Namespace) -> dict:
    if args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    return dict(num_inference_steps=args.steps, guidance_scale=finite("guidance", args.guidance),
                scheduler=args.scheduler, eta=args.eta, seed=args.seed, preprocess=not args.no_preprocess,
                foreground_ratio=args.foreground_ratio, progress=True)


def run_nvs(args: argparse.Namespace) -> int:
    from zero1to3.preprocess import ImageInputError

    _check_image(args.image)
    poses = _poses(args)
    pipe = load_pipeline(args)
    start = time.perf_counter()
    try:
        out = pipe(args.image, poses, num_samples=args.num_samples, **_sampling_kwargs(args))
    except ImageInputError as exc:
        raise CLIError(str(exc)) from None
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    out.input_image.save(folder / "input.png")
    for p, (pose, row) in enumerate(zip(poses, out.images_per_pose)):
        polar, azimuth, radius = pose.degrees()
        for s, img in enumerate(row):
            img.save(folder / f"view{p:02d}_polar{polar:+.0f}_az{azimuth:.0f}_r{radius:+.2f}_s{s}.png")
    out.grid().save(folder / "grid.png")
    print(f"wrote {len(poses) * args.num_samples} views and grid.png to {folder} "
          f"({time.perf_counter() - start:.1f} s on {pipe.device})")
    return 0


def run_orbit(args: argparse.Namespace) -> int:
    from zero1to3.camera import orbit, spiral
    from zero1to3.media import MediaError, check_animation_path, gif_delay_ms, save_animation
    from zero1to3.preprocess import ImageInputError

    _check_image(args.image)
    if args.views < 1:
        raise CLIError(f"--views must be >= 1, got {args.views}")
    if args.spiral:
        poses = spiral(args.views, input_elevation_deg=finite("input-elevation", args.input_elevation))
    else:
        poses = orbit(args.views, finite("elevation", args.elevation), finite("input-elevation", args.input_elevation))
    try:
        output = check_animation_path(args.output)  # before any sampling: a missing MP4 encoder fails now
        gif_delay_ms(args.fps)
    except MediaError as exc:
        raise CLIError(str(exc)) from None
    pipe = load_pipeline(args)
    try:
        out = pipe(args.image, poses, num_samples=1, **_sampling_kwargs(args))
    except ImageInputError as exc:
        raise CLIError(str(exc)) from None
    save_animation(output, list(out.array[:, 0]), args.fps)
    print(f"wrote {len(out.array)} frames to {output} ({args.fps:g} fps)")
    return 0
