"""`zero1to3 render`: render procedural objects or mesh files into the released dataset layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from zero1to3.cli.common import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "render", help="render objects into a training dataset (NNN.png + NNN.npy per object)",
        description="Render procedural objects (--procedural N) or mesh files (--meshes) with the reference "
                    "camera distribution into OUT/<object>/{000..}.png|npy (see docs/data.md).")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--procedural", type=int, metavar="N", help="render N seeded procedural objects")
    source.add_argument("--meshes", nargs="+", type=Path, metavar="PATH",
                        help="mesh files or folders (obj, glb, gltf, ply, stl, off)")
    source.add_argument("--manifest", type=Path, metavar="PATH",
                        help="a corpus manifest.json from `zero1to3 data build` (with --split)")
    parser.add_argument("--split", choices=("train", "val", "test", "train_extra", "val_extra", "test_extra"),
                        help="which corpus split to render")
    parser.add_argument("--seed", type=int, default=0, help="seed of objects, cameras and lights (default 0)")
    parser.add_argument("--views", type=int, default=12, help="views per object (default 12)")
    parser.add_argument("--resolution", type=int, default=256, help="image size in pixels (default 256)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, one GL context each (default 1)")
    parser.add_argument("--supersample", type=int, default=1,
                        help="render k times larger and downsample, for softer edges (default 1)")
    parser.add_argument("--no-msaa", action="store_true",
                        help="turn 4x MSAA off (on CPU, --supersample 2 --no-msaa is faster at small sizes)")
    parser.add_argument("--save-mesh", action="store_true", help="also write the normalised mesh.ply per object")
    parser.add_argument("--overwrite", action="store_true", help="re-render objects whose folders are complete")
    parser.add_argument("--cache-size", type=int, default=None, metavar="PX",
                        help="afterwards write views_PX.npz (all views on white in memory) for fast training")
    parser.add_argument("--orbit", type=int, default=0, metavar="N",
                        help="also render N views evenly spaced in azimuth (for `eval nvs --protocol orbit16`)")
    parser.add_argument("--orbit-elevation", type=float, default=30.0, help="elevation of --orbit views (deg)")
    parser.add_argument("--orbit-radius", type=float, default=2.0, help="camera distance of --orbit views")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for flag in ("views", "resolution", "workers", "supersample"):
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag} must be >= 1")
    if args.procedural is not None and args.procedural < 1:
        raise CLIError("--procedural must be >= 1")
    if args.meshes is not None:
        missing = [str(p) for p in args.meshes if not p.exists()]
        if missing:
            raise CLIError(f"mesh path not found: {', '.join(missing)}")
    import importlib.util

    if importlib.util.find_spec("moderngl") is None:
        raise CLIError("rendering needs moderngl: pip install 'zero1to3[render]'")
    from zero1to3.data.writer import render_dataset

    if args.manifest is not None:
        if args.split is None:
            raise CLIError("--manifest needs --split train|val|test")
        from zero1to3.data.corpus import split_files

        objects = [(name, str(path)) for name, path in split_files(args.manifest, args.split)]
    elif args.split is not None:
        raise CLIError("--split goes with --manifest")
    else:
        objects = args.procedural if args.procedural is not None else [str(p) for p in args.meshes]
    summary = render_dataset(args.out, objects, num_views=args.views, resolution=args.resolution, seed=args.seed,
                             workers=args.workers, save_mesh=args.save_mesh, overwrite=args.overwrite,
                             supersample=args.supersample, msaa=not args.no_msaa,
                             progress=not args.quiet, cache_size=args.cache_size, orbit_views=args.orbit,
                             orbit_elevation_deg=args.orbit_elevation, orbit_radius=args.orbit_radius)
    if not summary.rendered and not summary.existing:
        raise CLIError(f"nothing rendered ({len(summary.failed)} object(s) failed; first: "
                       f"{next(iter(summary.failed.items()), ('', ''))[1]})" if summary.failed else "no objects found")
    images = len(summary.rendered) * (args.views + args.orbit)
    rate = images / summary.seconds if summary.seconds > 0 else 0.0
    print(f"rendered {len(summary.rendered)} object(s) ({images} images, {rate:.1f} images/s), "
          f"kept {len(summary.existing)} existing, {len(summary.failed)} failed -> {args.out}")
    return 1 if summary.failed else 0
