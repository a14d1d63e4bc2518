"""Input preprocessing like the reference demo: object crop, rescale, composite on white.

The model was trained on renders of a centred object on white, so a photo must be brought to that form:
RGBA images use their alpha; an RGB photo on a plain background gets a foreground estimate (pixels
that differ from the border colour); an RGB photo on any other background is cut out by the package's
own segmenter (``zero1to3.segmentation``), with a warning when it is unsure; then the object is
cropped, scaled so its longest side is ``foreground_ratio`` of the frame (reference: 200 of 256 px) and
pasted on white.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image
from scipy import ndimage

from zero1to3.inputs import ImageInputError, check_image_array, check_pixel_count, normalise_mode, open_image

if TYPE_CHECKING:
    from zero1to3.segmentation import SegmenterConfig

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

#: The reference demo scales the object's longest side to 200 px of a 256 px frame.
DEFAULT_FOREGROUND_RATIO = 200.0 / 256.0
#: The one filter that brings a framed render or image to the model's size, for training data, inference
#: inputs and evaluation alike: bicubic with PIL's antialiasing (the shipped model's renders were resized
#: with it), so the model is scored on images resized exactly as the ones it learned from.
RESAMPLE = Image.Resampling.BICUBIC


@dataclass
class PreprocessConfig:
    size: int = 256
    foreground_ratio: float = DEFAULT_FOREGROUND_RATIO
    #: An RGB pixel is foreground when it differs from the border colour by more than this (0-255 scale).
    background_threshold: float = 24.0
    #: Alpha below this (0-255) is treated as background when cropping.
    alpha_threshold: int = 16
    #: The background is plain when at least this share of border pixels is within
    #: ``background_threshold`` of the border's median colour; otherwise the segmenter cuts the object out.
    plain_border_share: float = 0.9
    #: False: use the border-colour estimate on every RGB image (the behaviour before the segmenter).
    segment_busy_backgrounds: bool = True
    #: Segmenter settings (weights folder, threshold, confidence floor); None = its defaults.
    segmenter: "SegmenterConfig | None" = None


class SegmentationWarning(UserWarning):
    """The segmenter's cut-out of a photo may be wrong: look at the preprocessed input."""


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


def _border_distance(rgb: np.ndarray) -> np.ndarray:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float32)
    return np.abs(border - np.median(border, axis=0)).max(axis=-1)


def has_transparency(image: Image.Image) -> bool:
    return image.mode == "RGBA" and int(np.asarray(image)[..., 3].min()) < 255


def is_plain_background(image: Image.Image, config: PreprocessConfig = PreprocessConfig()) -> bool:
    """True when nearly all of the border has one colour (a studio or paper background)."""
    distance = _border_distance(np.asarray(image.convert("RGB")))
    return float((distance <= config.background_threshold).mean()) >= config.plain_border_share


def segment_object(image: Image.Image, config: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Object alpha float32 [H, W] in [0, 1] from the segmenter; warns (one line) when it is unsure.

    When it finds no object at all, the whole image is used (the behaviour without a segmenter).
    """
    from zero1to3.segmentation import SegmenterConfig, segment

    seg_config = config.segmenter or SegmenterConfig()
    result = segment(np.asarray(image.convert("RGB")), seg_config)
    if result.mask.sum() < 4:
        warnings.warn("zero1to3 preprocess: the foreground segmenter found no object on this busy background; "
                      "using the whole image (give an RGBA image with a transparent background for a clean cut-out)",
                      SegmentationWarning, stacklevel=3)
        return np.ones(result.mask.shape, np.float32)
    area = float(result.mask.mean())
    if result.confidence < seg_config.min_confidence or area < seg_config.min_area_fraction:
        warnings.warn(f"zero1to3 preprocess: the foreground segmenter is unsure of the object (confidence "
                      f"{result.confidence:.2f}, min {seg_config.min_confidence:.2f}; object area {area:.0%} of the "
                      f"image, min {seg_config.min_area_fraction:.0%}); check the preprocessed input, or give an "
                      "RGBA image with a transparent background", SegmentationWarning, stacklevel=3)
    return result.alpha


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
    alpha = None
    if (config.segment_busy_backgrounds and not has_transparency(img)
            and not is_plain_background(img, config)):
        alpha = segment_object(img, config)
        mask = alpha >= 0.5
    else:
        mask = foreground_mask(img, config)
    if mask.sum() < 4:
        raise ImageInputError("no object found in the image (it looks like plain background); "
                              "give an RGBA image with a transparent background or a photo on a plain light background")
    rgba = np.asarray(img.convert("RGBA")).copy()
    if alpha is not None:
        rgba[..., 3] = np.round(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
    elif img.mode != "RGBA" or np.asarray(img)[..., 3].min() == 255:
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


def composite_on_white(image: Image.Image, size: int | None = None,
                       resample: Image.Resampling = RESAMPLE) -> Image.Image:
    """RGB over a white background (the training renders' background), then resized to ``size`` square if given.

    Compositing comes first so transparent pixels' colours never bleed into the resized edges.
    """
    if image.mode != "RGBA":
        rgb = image.convert("RGB")
    else:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, image).convert("RGB")
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), resample, reducing_gap=None)
    return rgb


def to_model_input(image: ImageInput, size: int) -> Image.Image:
    """An already-framed image (e.g. a render) -> RGB ``size`` square on white, without cropping."""
    return composite_on_white(load_image(image), size)
