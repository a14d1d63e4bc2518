"""Cameras and the reference image of image-to-3D.

The input view sits at azimuth 0 and the given elevation, looking at the origin from ``radius`` with
+Z up (SPEC §4 conventions, via :mod:`zero1to3.camera`). Every other camera is described to the model
by its :class:`~zero1to3.camera.RelativePose` to that input camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from zero1to3.camera import RelativePose, camera_position, look_at


def pose_vector(elevation_deg: float, azimuth_deg: float, radius: float, ref_elevation_deg: float,
                ref_radius: float, stable: bool = False) -> np.ndarray:
    """Zero-1-to-3 conditioning vector of a target camera relative to the input camera (azimuth 0)."""
    pose = RelativePose.between_elevations(ref_elevation_deg, elevation_deg, azimuth_deg, radius - ref_radius)
    if stable:
        return pose.stable_vector(math.radians(90.0 - ref_elevation_deg))
    return pose.vector()


def jittered_camera(elevation_deg: float, radius: float, jitter: float, rng: np.random.Generator
                    ) -> np.ndarray:
    """The input camera with its position moved by N(0, jitter^2) per axis, still aimed at the origin."""
    return look_at(camera_position(elevation_deg, 0.0, radius) + rng.normal(0.0, jitter, size=3))


@dataclass
class Reference:
    """The input view: RGB [3, S, S] in [0, 1] on white, object mask [S, S] in [0, 1], and the PIL image."""

    rgb: torch.Tensor
    mask: torch.Tensor
    image: Image.Image
    mask_source: str


def load_image(image: Any) -> Image.Image:
    """PIL image from a path, PIL image, or HxWx{3,4} uint8 / float array."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.exists():
            raise FileNotFoundError(f"input image not found: {path}")
        return Image.open(path)
    if isinstance(image, Image.Image):
        return image
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 or HxWx4 image array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(arr)


def estimate_mask(rgb: np.ndarray, threshold: float = 0.06) -> np.ndarray:
    """Object mask of an image on white: pixels away from white, holes filled, specks removed.

    Holes are filled because white parts *inside* the object are still object.
    """
    away = (1.0 - rgb.min(axis=-1)) > threshold
    away = ndimage.binary_opening(away, iterations=1)
    return ndimage.binary_fill_holes(away)


def _square_on_white(img: Image.Image) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), (255, 255, 255, 0) if img.mode == "RGBA" else (255, 255, 255))
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def prepare_reference(image: Any, size: int, preprocess: Callable[[Any], Image.Image] | None = None,
                      device: torch.device | str = "cpu") -> Reference:
    """The input image as the model sees it (``size`` px, white background) and its object mask.

    With ``preprocess`` (the pipeline's object crop) the mask is estimated from the white background of
    its output; otherwise an alpha channel, if the image has a meaningful one, gives the mask exactly.
    """
    pil = load_image(image)
    if preprocess is not None:
        pil_rgb = preprocess(pil).convert("RGB").resize((size, size), Image.BICUBIC)
        rgb = np.asarray(pil_rgb, dtype=np.float32) / 255.0
        mask, source = estimate_mask(rgb).astype(np.float32), "estimated from white background"
    else:
        pil = _square_on_white(pil.convert("RGBA") if pil.mode in ("RGBA", "LA", "P") else pil.convert("RGB"))
        pil = pil.resize((size, size), Image.BICUBIC)
        arr = np.asarray(pil, dtype=np.float32) / 255.0
        if arr.shape[-1] == 4 and arr[..., 3].min() < 0.99:
            alpha = arr[..., 3:]
            rgb = arr[..., :3] * alpha + (1.0 - alpha)
            mask, source = alpha[..., 0], "alpha channel"
        else:
            rgb = arr[..., :3]
            mask, source = estimate_mask(rgb).astype(np.float32), "estimated from white background"
        pil_rgb = Image.fromarray((rgb * 255).round().astype(np.uint8))
    if mask.sum() < 4:
        raise ValueError("the input image shows no object: its mask is empty (expected an object on a "
                         "white or transparent background)")
    return Reference(rgb=torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().to(device),
                     mask=torch.from_numpy(np.ascontiguousarray(mask)).float().to(device),
                     image=pil_rgb, mask_source=source)
