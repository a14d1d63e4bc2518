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

#: Command -> (module, one-line help), in the order ``zero1to3 --help`` lists them. Only the module of the
#: command being run is imported (lazy registration), so ``--help`` does not pay for torch or diffusers.
COMMANDS: dict[str, tuple[str, str]] = {
    "nvs": ("nvs", "novel views of the object in IMAGE at a relative camera change"),
    "orbit": ("nvs", "a turntable of generated views around the object (GIF or MP4)"),
    "convert": ("convert", "convert an original Zero-1-to-3 .ckpt to the diffusers layout"),
    "render": ("render", "render objects into a training dataset (NNN.png + NNN.npy per object)"),
    "data": ("data", "build a corpus of real 3D objects from installed packages; pack/unpack shards"),
    "train": ("train", "train or fine-tune (use `accelerate launch` for several GPUs)"),
    "eval": ("eval", "evaluate novel views (PSNR/SSIM/LPIPS/FID) or 3D meshes (Chamfer/IoU/F-score)"),
    "recon": ("recon", "image -> 3D mesh (score distillation through Zero-1-to-3)"),
    "bench": ("bench", "sampling speed: reference vs fast path (Markdown table)"),
    "demo": ("demo", "web demo in the browser (Gradio): views, orbit GIF and 3D mesh"),
}
#: Kept for code that iterates over the command modules.
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def _requested_command(argv: Sequence[str] | None) -> str | None:
    """The command named on the command line (its first positional word), if any."""
    for arg in sys.argv[1:] if argv is None else argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


class HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help, unless the help already states it or there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings and action.nargs is None) or "default" in text.lower() \
                or any(default is v for v in (None, False, argparse.SUPPRESS)) or isinstance(action, argparse._HelpAction):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".replace("%", "%%").replace("%%(", "%(") if text else f"(default: {shown})"


class _Parser(argparse.ArgumentParser):
    """Every command's parser shows defaults (HelpFormatter) unless it asks for another formatter."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; only the module of the command named in ``argv`` registers its options (None: all)."""
    parser = _Parser(prog="zero1to3", description="Novel views and 3D meshes from one image (Zero-1-to-3).")
    parser.add_argument("--version", action="version", version=f"zero1to3 {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    full = argv is None
    wanted = _requested_command(argv or ())
    registered: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if name in registered:
            continue
        if full or name == wanted or (wanted is not None and COMMANDS[wanted][0] == module):
            before = set(sub.choices)
            importlib.import_module(f"zero1to3.cli.{module}").register(sub)
            registered |= set(sub.choices) - before
        else:
            sub.add_parser(name, help=help_text)
            registered.add(name)
    return parser


def _version() -> str:
    from zero1to3 import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
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
