"""`zero1to3 eval` (being built)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("eval", help="(not yet available)")
