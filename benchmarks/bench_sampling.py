"""Sampling speed: reference path (fp32, eager, DDIM 50) vs the fast path, one Markdown table.

Same arguments as `zero1to3 bench`. On the H100 (under 9 minutes, every number docs/benchmarks.md needs):

    python benchmarks/bench_sampling.py --random-weights --preset zero123 --views 1 4 16 64 \
        --include-reference --json $OUT/bench.json
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import zero1to3  # noqa: F401
except ImportError:  # a bare checkout: use its src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from zero1to3.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
