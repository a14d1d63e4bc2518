"""How many CPU threads sampling uses: the count that is fastest for the model's size.

A small model (the embedded one: ~10 M parameters, 64 px) runs kernels too short to split: PyTorch's
default of one thread per core spends its time in OpenMP barriers, and on a loaded machine spinning
threads fight over the cores. One thread was 8-10x faster on 2 cores and gave the same pixels
(docs/benchmarks.md, CPU table). Large models (the official 256 px UNet) keep PyTorch's default.
An explicit choice wins: ``--threads N`` / ``pipe.cpu_threads = N``, else ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

#: Below this many parameters (UNet + VAE + image encoder) one thread is fastest.
SMALL_MODEL_PARAMETERS = 100_000_000


def threads_from_environment() -> int | None:
    """``OMP_NUM_THREADS`` as a positive int, or None when unset or not a number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n >= 1 else None


def choose_cpu_threads(num_parameters: int, explicit: int | None = None) -> int | None:
    """Threads to use: ``explicit``, else OMP_NUM_THREADS, else 1 for a small model; None = PyTorch's default."""
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"threads must be >= 1, got {explicit}")
        return int(explicit)
    from_env = threads_from_environment()
    if from_env is not None:
        return from_env
    return 1 if num_parameters < SMALL_MODEL_PARAMETERS else None


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (None: unchanged), then restore the previous count."""
    import torch

    if n is None or n == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
