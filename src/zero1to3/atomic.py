"""Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed over the target.

A kill at any moment leaves either the old file or the new one, never a truncated mix (``os.replace`` is
atomic on one file system, and the temporary file lives next to the target for that reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temporary path to write to; renamed to ``path`` when the block ends without an exception."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the files written here are ordinary outputs
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # again: a writer that replaced the file (e.g. safetensors) made it 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], value: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(value, indent=indent) + "\n")
