"""Command-line interface: ``zero1to3 <command> ...``.

Each command lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parser, which receives the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from zero1to3.cli.common import CLIError

#: Command modules, in the order ``zero1to3 --help`` lists them.
COMMAND_MODULES = ("nvs", "convert", "render", "train", "eval", "recon", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zero1to3",
                                     description="Novel views and 3D meshes from one image (Zero-1-to-3).")
    parser.add_argument("--version", action="version", version=f"zero1to3 {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"zero1to3.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from zero1to3 import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as exc:
        print(f"zero1to3 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"zero1to3 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
