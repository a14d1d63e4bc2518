"""`zero1to3 demo` (being built)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("demo", help="(not yet available)")
