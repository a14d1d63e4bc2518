"""Input preprocessing like the reference demo: object crop, rescale, composite on white.

The model was trained on renders of a centred object on white, so a photo must be brought to that form:
RGBA images use their alpha; an RGB photo on a plain light background gets a foreground estimate
(pixels that differ from the border colour); then the object is cropped, scaled so its longest side is
``foreground_ratio`` of the frame (reference: 200 of 256 px) and pasted on white.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image
from scipy import ndimage

from zero1to3.inputs import ImageInputError, check_image_array, check_pixel_count, normalise_mode, open_image

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

#: The reference demo scales the object's longest side to 200 px of a 256 px frame.
DEFAULT_FOREGROUND_RATIO = 200.0 / 256.0


@dataclass
class PreprocessConfig:
    size: int = 256
    foreground_ratio: float = DEFAULT_FOREGROUND_RATIO
    #: An RGB pixel is foreground when it differs from the border colour by more than this (0-255 scale).
    background_threshold: float = 24.0
    #: Alpha below this (0-255) is treated as background when cropping.
    alpha_threshold: int = 16


def load_image(image: ImageInput) -> Image.Image:
    """Any supported input -> PIL image in RGB or RGBA mode, with a clear error for bad input."""
    if isinstance(image, (str, os.PathLike)):
        image = open_image(Path(image))  # pixel cap before decoding; 16-bit, CMYK, palette, EXIF handled
    if isinstance(image, np.ndarray):
        check_image_array(image)
        array = image
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and array.max() <= 1.0:
                array = (array * 255.0).round()
            array = np.clip(array, 0, 255).astype(np.uint8)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        if array.ndim != 3 or array.shape[-1] not in (3, 4):
            raise ImageInputError(f"image array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        image = Image.fromarray(array)
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"unsupported image input of type {type(image).__name__}")
    check_pixel_count(image.width, image.height)
    if image.width < 8 or image.height < 8:
        raise ImageInputError(f"image is too small ({image.width}x{image.height})")
    return normalise_mode(image)


def foreground_mask(image: Image.Image, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Boolean object mask: the alpha channel if it has any transparency, else a border-colour estimate."""
    array = np.asarray(image)
    if image.mode == "RGBA" and array[..., 3].min() < 255:
        return array[..., 3] >= config.alpha_threshold
    rgb = array[..., :3].astype(np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    distance = np.abs(rgb - background).max(axis=-1)
    mask = distance > config.background_threshold
    mask = ndimage.binary_opening(mask, structure=np.ones((3, 3), bool))  # drops specks, keeps corners
    mask = ndimage.binary_fill_holes(mask)
    return mask


def preprocess_image(image: ImageInput, config: PreprocessConfig = PreprocessConfig()) -> Image.Image:
    """Photo -> ``config.size`` square RGB image of the cropped, rescaled object on white."""
    if not 0.05 <= config.foreground_ratio <= 1.0:
        raise ImageInputError(f"foreground_ratio must be in [0.05, 1], got {config.foreground_ratio}")
    img = load_image(image)
    mask = foreground_mask(img, config)
    if mask.sum() < 4:
        raise ImageInputError("no object found in the image (it looks like plain background); "
                              "give an RGBA image with a transparent background or a photo on a plain light background")
    rgba = np.asarray(img.convert("RGBA")).copy()
    if img.mode != "RGBA" or np.asarray(img)[..., 3].min() == 255:
        rgba[..., 3] = np.where(mask, 255, 0).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = Image.fromarray(rgba[y0:y1, x0:x1])
    longest = max(y1 - y0, x1 - x0)
    scale = config.foreground_ratio * config.size / longest
    new_w = max(1, round((x1 - x0) * scale))
    new_h = max(1, round((y1 - y0) * scale))
    crop = crop.resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (config.size, config.size), (255, 255, 255, 0))
    canvas.paste(crop, ((config.size - new_w) // 2, (config.size - new_h) // 2))
    return composite_on_white(canvas)


def composite_on_white(image: Image.Image) -> Image.Image:
    """RGBA -> RGB over a white background (the training data's background)."""
    if image.mode != "RGBA":
        return image.convert("RGB")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("RGB")


def to_model_input(image: ImageInput, size: int) -> Image.Image:
    """An already-framed image (e.g. a render) -> RGB ``size`` square on white, without cropping."""
    img = composite_on_white(load_image(image))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img
