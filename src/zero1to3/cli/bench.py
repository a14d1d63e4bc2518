"""`zero1to3 bench` (being built)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("bench", help="(not yet available)")
