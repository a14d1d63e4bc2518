"""Animations (GIF/MP4) and meshes written so standard viewers show them as intended.

* GIF frame delays are stored in milliseconds; imageio's ``duration=1/fps`` (seconds) became a 0 delay,
  which browsers play at an arbitrary rate. Here the delay comes from ``fps`` (GIF has 10 ms resolution).
* MP4 needs imageio-ffmpeg; :func:`check_animation_path` says so *before* any sampling.
* glTF is +Y up with linear-light vertex colours; our meshes are +Z up (the cameras' world) with sRGB
  colours (fitted to the photo's pixels). :func:`mesh_for_gltf` converts both; OBJ and PLY keep +Z up and
  sRGB colours, as those formats carry no convention and most tools read their colours as sRGB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from zero1to3.atomic import atomic_path

ANIMATION_FORMATS = (".gif", ".mp4")


class MediaError(ValueError):
    """An output file that cannot be written as asked (one-line message)."""


def gif_delay_ms(fps: float) -> int:
    """Per-frame delay of a GIF at ``fps``, rounded to the format's 10 ms ticks (at least one tick)."""
    if not (fps > 0 and np.isfinite(fps)):
        raise MediaError(f"fps must be a positive number, got {fps}")
    return max(10, int(round(100.0 / fps)) * 10)


def check_animation_path(path: str | os.PathLike) -> Path:
    """Fail fast (one line) on a format we cannot write: unknown suffix, or MP4 without imageio-ffmpeg."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_FORMATS:
        raise MediaError(f"animation output must end in .gif or .mp4, got {path.name!r}")
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg

            imageio_ffmpeg.get_ffmpeg_exe()
        except (ImportError, RuntimeError, OSError):
            raise MediaError(f"cannot write {path.name}: MP4 needs imageio-ffmpeg "
                             "(pip install 'zero1to3[video]'), or use a .gif output") from None
    return path


def save_animation(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write uint8 RGB frames as a looping GIF or an MP4 at ``fps``, atomically (temp file + rename)."""
    from PIL import Image

    path = check_animation_path(path)
    if not frames:
        raise MediaError("an animation needs at least one frame")
    arrays = [np.ascontiguousarray(np.asarray(f, dtype=np.uint8)[..., :3]) for f in frames]
    with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells imageio the format
        if path.suffix.lower() == ".gif":
            images = [Image.fromarray(a) for a in arrays]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                           duration=gif_delay_ms(fps), disposal=1, optimize=False)
        else:
            import imageio.v2 as imageio

            if not (fps > 0 and np.isfinite(fps)):
                raise MediaError(f"fps must be a positive number, got {fps}")
            # yuv420p wants even sizes; macro_block_size=2 pads at most one pixel instead of resizing to 16
            imageio.mimsave(tmp, arrays, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=2)
    return path


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB-encoded values (inverse of :func:`srgb_to_linear`)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1.0 / 2.4) - 0.055)


#: +Z up (our world) -> +Y up (glTF): a -90 deg turn about X, (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def mesh_for_gltf(mesh):
    """A copy of a +Z-up trimesh with sRGB vertex colours, turned +Y up with linear vertex colours (glTF)."""
    out = mesh.copy()
    out.apply_transform(Z_UP_TO_Y_UP)
    if out.visual.kind == "vertex":
        rgba = np.asarray(out.visual.vertex_colors, np.float64) / 255.0
        rgba[:, :3] = srgb_to_linear(rgba[:, :3])
        out.visual.vertex_colors = np.round(rgba * 255.0).astype(np.uint8)
    return out
