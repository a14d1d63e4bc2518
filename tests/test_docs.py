"""Every code block of README.md and docs/*.md declares whether it runs, and those that run, run as written.

Each fenced ``bash``/``python`` block is preceded by ``<!-- doc-test: run -->`` (executed here on the
embedded model, CPU), ``<!-- doc-test: gpu -->`` (executed only where CUDA is available) or
``<!-- doc-test: skip (why) -->``. A block without a marker fails, so a new example must say which it is.
Blocks run in a scratch folder holding ``photo.png`` (an example image) and ``src/`` (the package sources),
with ``zero1to3`` on PATH bound to this interpreter and these sources.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
MARKER = re.compile(r"<!-- doc-test: (run|gpu|skip)\b(.*?)-->")
FENCE = re.compile(r"^```(\w+)\s*$")


@dataclass
class Block:
    path: Path
    line: int
    language: str
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def doc_blocks() -> list[Block]:
    blocks = []
    for path in DOCS:
        lines = path.read_text().split("\n")
        i = 0
        while i < len(lines):
            fence = FENCE.match(lines[i])
            if not fence:
                i += 1
                continue
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
            marker = MARKER.match(lines[start - 1].strip()) if start > 0 else None
            blocks.append(Block(path, start + 1, fence.group(1), "\n".join(body) + "\n",
                                marker.group(1) if marker else None))
    return blocks


BLOCKS = doc_blocks()


def test_every_code_block_declares_whether_it_runs():
    missing = [b.id for b in BLOCKS if b.language in ("bash", "sh", "python") and b.marker is None]
    assert not missing, f"code blocks without <!-- doc-test: run|gpu|skip (why) -->: {missing}"
    assert sum(b.marker == "run" for b in BLOCKS) >= 3  # the README's quick start at least


def test_block_parser_sees_markers(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n<!-- doc-test: skip (why) -->\n```bash\necho hi\n```\n\n```python\nprint(1)\n```\n")
    global DOCS
    saved, DOCS = DOCS, [doc]
    try:
        found = doc_blocks()
    finally:
        DOCS = saved
    assert [(b.line, b.language, b.marker, b.code) for b in found] == [
        (4, "bash", "skip", "echo hi\n"), (8, "python", None, "print(1)\n")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("doc_examples")
    (work / "src").symlink_to(ROOT / "src")
    shutil.copy(ROOT / "src/zero1to3/assets/examples/bear.png", work / "photo.png")
    bin_dir = work / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "zero1to3"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m zero1to3 "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("MPLBACKEND", "Agg")
    return work, env


def _run(block: Block, workdir: tuple[Path, dict[str, str]]) -> None:
    work, env = workdir
    if block.language == "python":
        cmd = [sys.executable, "-c", block.code]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"{block.id} failed (exit {proc.returncode}):\n{tail}"


def _params(kind: str, *marks):
    chosen = [b for b in BLOCKS if b.marker == kind]
    return [pytest.param(b, id=b.id, marks=marks) for b in chosen]


@pytest.mark.slow
@pytest.mark.parametrize("block", _params("run"))
def test_documented_example_runs(block, workdir):
    _run(block, workdir)


@pytest.mark.gpu
@pytest.mark.parametrize("block", _params("gpu"))
def test_documented_gpu_example_runs(block, workdir):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _run(block, workdir)
