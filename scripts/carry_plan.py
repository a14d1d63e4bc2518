"""Which ignored folders travel in which device call: each call carries the working tree plus at most
8 paths within 64 MiB in all (docs/training.md, "More data than one device call carries"). Doing the
packing by hand cost restaging calls; this prints one `carry` list per call, the pinned paths (e.g. the
wheels) in the first.

    python scripts/carry_plan.py --first .whl .data/train64s .data/train64b1 ... .data/val64v2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CALL_LIMIT = 64 * 2**20  # bytes a call may move, tree included
MAX_PATHS = 8
MARGIN = 2**20  # room for the transfer's own overhead (the largest call that passed left ~0.4 MiB)


def folder_bytes(path: Path) -> int:
    """Apparent size: what the transfer moves (file contents), not disk blocks."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def tree_bytes(repo: Path) -> int:
    """Tracked files plus untracked ones git does not ignore: the copy every call makes."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, check=True,
                            capture_output=True).stdout.split(b"\0")
    return sum((repo / os.fsdecode(name)).stat().st_size for name in listed
               if name and (repo / os.fsdecode(name)).is_file())


def plan_calls(sizes: dict[str, int], budget: int, first: tuple[str, ...] = (),
               max_paths: int = MAX_PATHS) -> list[list[str]]:
    """First-fit decreasing into calls of at most ``budget`` bytes and ``max_paths`` paths; ``first`` paths
    open the first call. Raises when one path alone is over the budget (it cannot travel by carry)."""
    too_big = [name for name, size in sizes.items() if size > budget]
    if too_big:
        raise ValueError(f"over one call's budget of {budget / 2**20:.1f} MiB on its own: {', '.join(too_big)}")
    missing = [name for name in first if name not in sizes]
    if missing:
        raise ValueError(f"--first names paths not in the list: {', '.join(missing)}")
    calls: list[list[str]] = []
    loads: list[int] = []
    if first:
        if sum(sizes[n] for n in first) > budget or len(first) > max_paths:
            raise ValueError("the --first paths do not fit one call together")
        calls.append(list(first))
        loads.append(sum(sizes[n] for n in first))
    for name in sorted((n for n in sizes if n not in first), key=lambda n: (-sizes[n], n)):
        for i, load in enumerate(loads):
            if load + sizes[name] <= budget and len(calls[i]) < max_paths:
                calls[i].append(name)
                loads[i] += sizes[name]
                break
        else:
            calls.append([name])
            loads.append(sizes[name])
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="ignored folders or files to carry, relative to the repo root")
    parser.add_argument("--first", action="append", default=[],
                        help="a path the first call must carry (e.g. .whl); repeat for more")
    parser.add_argument("--repo", default=".", help="repository root (its tree travels in every call)")
    args = parser.parse_args(argv)
    repo = Path(args.repo)
    paths = list(dict.fromkeys(args.first + args.paths))
    absent = [p for p in paths if not (repo / p).exists()]
    if absent:
        parser.error(f"not found under {repo}: {', '.join(absent)}")
    tree = tree_bytes(repo)
    budget = CALL_LIMIT - tree - MARGIN
    sizes = {p: folder_bytes(repo / p) for p in paths}
    try:
        calls = plan_calls(sizes, budget, tuple(args.first))
    except ValueError as exc:
        parser.error(str(exc))
    print(f"tree {tree / 2**20:.1f} MiB; {budget / 2**20:.1f} MiB left for carry per call; {len(calls)} calls")
    for i, call in enumerate(calls, 1):
        print(f"call {i} ({sum(sizes[n] for n in call) / 2**20:.1f} MiB): {json.dumps(call)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
