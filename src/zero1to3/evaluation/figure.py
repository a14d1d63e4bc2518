"""Comparison figure: one row per object, columns input | ground truth | prediction(s).

Drawn with PIL only (no plotting dependency); labels use PIL's built-in font.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

_HEADER = 18
_PAD = 4


def comparison_grid(rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str],
                    row_labels: Sequence[str] | None = None, cell: int = 128) -> Image.Image:
    """Tile uint8 RGB images (``rows[i][j]`` for object i, column j) into one labelled image."""
    ncols = len(columns)
    label_w = 0 if not row_labels else 96
    width = label_w + ncols * (cell + _PAD) + _PAD
    height = _HEADER + len(rows) * (cell + _PAD) + _PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(columns):
        draw.text((label_w + _PAD + j * (cell + _PAD) + 2, 3), name, fill=(0, 0, 0))
    for i, row in enumerate(rows):
        y = _HEADER + _PAD + i * (cell + _PAD)
        if row_labels:
            draw.text((4, y + cell // 2 - 6), row_labels[i][:15], fill=(0, 0, 0))
        for j, img in enumerate(row[:ncols]):
            tile = Image.fromarray(np.asarray(img, np.uint8)).resize((cell, cell), Image.Resampling.LANCZOS)
            x = label_w + _PAD + j * (cell + _PAD)
            canvas.paste(tile, (x, y))
            draw.rectangle((x - 1, y - 1, x + cell, y + cell), outline=(200, 200, 200))  # white-on-white edges
    return canvas


def save_grid(path: str | Path, rows: Sequence[Sequence[np.ndarray]], columns: Sequence[str],
              row_labels: Sequence[str] | None = None, cell: int = 128) -> Path:
    """:func:`comparison_grid` written as a PNG."""
    path = Path(path)
    comparison_grid(rows, columns, row_labels, cell).save(path)
    return path
