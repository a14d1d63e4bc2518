"""Input preprocessing: alpha use, light-background foreground estimate, crop/rescale, white composite."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zero1to3.preprocess import ImageInputError, PreprocessConfig, foreground_mask, load_image, preprocess_image


def _object_bbox(img: Image.Image, threshold: int = 240) -> tuple[int, int, int, int]:
    a = np.asarray(img).min(axis=-1) < threshold
    ys, xs = np.nonzero(a)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


def test_rgba_uses_alpha_and_scales_longest_side():
    rgba = np.zeros((300, 200, 4), np.uint8)
    rgba[50:150, 40:90] = (10, 200, 10, 255)  # 100 tall, 50 wide
    out = preprocess_image(Image.fromarray(rgba), PreprocessConfig(size=256))
    assert out.size == (256, 256) and out.mode == "RGB"
    y0, y1, x0, x1 = _object_bbox(out)
    assert abs((y1 - y0) - 200) <= 2 and abs((x1 - x0) - 100) <= 2  # longest side 200 of 256
    assert abs((y0 + y1) / 2 - 128) <= 1.5 and abs((x0 + x1) / 2 - 128) <= 1.5  # centred
    assert tuple(np.asarray(out)[5, 5]) == (255, 255, 255)  # white background


def test_rgb_photo_on_light_background():
    img = np.full((120, 160, 3), 228, np.uint8)
    img[20:60, 30:130] = (150, 20, 20)
    mask = foreground_mask(Image.fromarray(img))
    assert mask[40, 80] and not mask[5, 5] and mask.sum() == 40 * 100
    out = preprocess_image(Image.fromarray(img), PreprocessConfig(size=128, foreground_ratio=0.5))
    y0, y1, x0, x1 = _object_bbox(out)
    assert abs((x1 - x0) - 64) <= 2 and abs((y1 - y0) - 26) <= 2


def test_errors_are_clear(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "x.jpg").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ImageInputError, match="cannot read image"):
        load_image(tmp_path / "x.jpg")
    with pytest.raises(ImageInputError, match="shape"):
        load_image(np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(ImageInputError, match="no object"):
        preprocess_image(np.full((64, 64, 3), 240, np.uint8))
    with pytest.raises(ImageInputError, match="foreground_ratio"):
        preprocess_image(np.zeros((64, 64, 3), np.uint8), PreprocessConfig(foreground_ratio=2.0))
