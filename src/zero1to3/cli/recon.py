"""`zero1to3 recon` (being built)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("recon", help="(not yet available)")
