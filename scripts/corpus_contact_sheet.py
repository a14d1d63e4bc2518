"""Contact sheet of N random rendered objects of one split (view 000 of each, composited on white).

Usage: python scripts/corpus_contact_sheet.py RENDERS_DIR OUT.png [--count 64] [--size 64] [--seed 0]
       [--manifest /work/corpus/manifest.json --split train]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def contact_sheet(renders: Path, count: int, size: int, seed: int, columns: int = 8,
                  only: set[str] | None = None) -> Image.Image:
    folders = sorted(p for p in renders.iterdir() if (p / "000.png").is_file() and (only is None or p.name in only))
    if not folders:
        raise SystemExit(f"no rendered objects in {renders}")
    rng = np.random.default_rng(seed)
    chosen = [folders[i] for i in sorted(rng.choice(len(folders), min(count, len(folders)), replace=False))]
    rows = (len(chosen) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * size, rows * size), "white")
    for i, folder in enumerate(chosen):
        view = Image.open(folder / "000.png").convert("RGBA").resize((size, size), Image.LANCZOS)
        tile = Image.new("RGBA", view.size, "white")
        tile.alpha_composite(view)
        sheet.paste(tile.convert("RGB"), ((i % columns) * size, (i // columns) * size))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("renders", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--manifest", type=Path, help="corpus manifest.json: only objects of --split")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    only = None
    if args.manifest is not None:
        import json

        only = {o["id"] for o in json.loads(args.manifest.read_text())["objects"] if o["split"] == args.split}
    sheet = contact_sheet(args.renders, args.count, args.size, args.seed, only=only)
    sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
