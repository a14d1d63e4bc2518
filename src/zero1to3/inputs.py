"""Checks on everything a user hands in, done before any compute: images, numbers and output paths.

One module so the CLI, the demo and the library apply the same limits (docs/robustness.md lists them).
Every failure is a :class:`ValueError` subclass with a one-line message that names the input.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: The largest input image accepted, in pixels (40 MP: a 8000x5000 photo). Checked from the file header,
#: before the pixels are decoded, so a small file that claims huge dimensions costs nothing.
MAX_INPUT_PIXELS = int(os.environ.get("ZERO1TO3_MAX_PIXELS", 40_000_000))

#: Relative distance changes the model was trained on: cameras at radius 1.5-2.2 (SPEC §4).
MAX_RADIUS_CHANGE = 0.7

#: Largest seed accepted (torch generators take 64-bit seeds; Python ints beyond that overflow).
MAX_SEED = 2**63 - 1


class ImageInputError(ValueError):
    """An input image that cannot be used (unreadable, too large, wrong shape, no object found)."""


class InputRangeError(ValueError):
    """A numeric setting outside its range, or not a finite number."""


class OutputPathError(ValueError):
    """An output path that cannot be written or is of the wrong kind."""


# ------------------------------------------------------------------------------------------------ images
def check_pixel_count(width: int, height: int, source: str = "image", max_pixels: int | None = None) -> None:
    limit = MAX_INPUT_PIXELS if max_pixels is None else max_pixels
    if width * height > limit:
        raise ImageInputError(f"{source} is {width}x{height} = {width * height / 1e6:.1f} MP, more than the "
                              f"{limit / 1e6:.0f} MP limit; downscale it first")


def open_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Decode an image file to RGB or RGBA, refusing oversize ones before decoding.

    Handles what cameras and editors write: 16-bit and 32-bit grayscale (scaled, not clipped), CMYK,
    palette images with transparency, grayscale+alpha, and EXIF orientation (the image is turned upright).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                check_pixel_count(img.width, img.height, f"image {path.name}", max_pixels)
                img.load()
                upright = ImageOps.exif_transpose(img)
                return normalise_mode(upright if upright is not None else img)
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f"image {path.name} is too large to decode safely (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"cannot read image {path.name}: not an image file PIL can decode") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ImageInputError(f"cannot read image {path.name}: damaged or truncated ({first})") from None


def normalise_mode(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB, or RGBA when the image carries transparency; high bit depths are rescaled."""
    mode = img.mode
    if mode in ("RGB", "RGBA"):
        return img.copy() if img.readonly else img
    if mode.startswith("I") or mode == "F":
        array = np.asarray(img).astype(np.float64)
        finite = array[np.isfinite(array)]
        top = float(finite.max()) if finite.size else 0.0
        if mode == "F" and top <= 1.0:
            array = array * 255.0
        elif mode.startswith("I;16") or 255.0 < top <= 65535.0:
            array = array / 257.0  # 16-bit: 65535 -> 255, the full range kept
        elif top > 65535.0:
            array = array * (255.0 / top)
        gray = np.clip(np.nan_to_num(array), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in img.info) \
            or (mode in ("L", "RGB") and "transparency" in img.info):
        return img.convert("RGBA")
    return img.convert("RGB")


def check_image_array(array: np.ndarray, source: str = "image array") -> None:
    if array.ndim >= 2:
        check_pixel_count(int(array.shape[1]), int(array.shape[0]), source)


# ------------------------------------------------------------------------------------------------ numbers
def check_finite(name: str, value: float) -> float:
    if value is None or not math.isfinite(float(value)):
        raise InputRangeError(f"{name} must be a finite number, got {value}")
    return float(value)


def check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False, why: str = "") -> float:
    """``value`` if finite and within [low, high] (open ends as asked), else a one-line InputRangeError."""
    check_finite(name, value)
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputRangeError(f"{name} must be in {span}{why}, got {value:g}")
    return float(value)


def check_int(name: str, value: int, low: int, high: int | None = None) -> int:
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InputRangeError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_seed(name: str, value: int) -> int:
    return check_int(name, value, 0, MAX_SEED)


def wrap_degrees(value: float) -> float:
    """An azimuth in (-180, 180]: turning 370 degrees is turning 10."""
    wrapped = math.fmod(value, 360.0)
    if wrapped > 180.0:
        wrapped -= 360.0
    elif wrapped <= -180.0:
        wrapped += 360.0
    return wrapped


# ------------------------------------------------------------------------------------------------ paths
def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path(".")


def _probe_writable(folder: Path, name: str) -> None:
    """Create and delete a temporary file in ``folder`` (the only reliable test, also for root and read-only mounts)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".zero1to3-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputPathError(f"{name}: cannot write in {folder} ({exc.strerror or type(exc).__name__})") from None


#: Suffixes of files the commands write: a new output *folder* named like this is a mistake.
_FILE_LIKE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".glb", ".obj", ".ply", ".stl",
                       ".safetensors", ".ckpt")


def check_output_dir(path: str | os.PathLike[str], name: str = "--output") -> Path:
    """A folder that exists and is writable, or can be created under a writable one (nothing is created).

    A new folder named like a media file (``-o view.png``) is refused: the user meant a file, and would
    otherwise find a folder of that name."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{name} {path} is a file; give a folder")
    if not path.exists() and path.suffix.lower() in _FILE_LIKE_SUFFIXES:
        raise OutputPathError(f"{name} is a folder (the command writes several files into it), but {path} looks "
                              f"like a file name; give a folder, e.g. {path.with_suffix('')}")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputPathError(f"{name} {path}: {existing} is a file, not a folder")
    _probe_writable(existing, f"{name} {path}")
    return path


def check_output_file(path: str | os.PathLike[str], name: str = "--output",
                      suffixes: tuple[str, ...] | None = None) -> Path:
    """A file path whose folder is (or can be made) writable; an existing folder of that name is refused."""
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{name} must end in {' or '.join(suffixes)}, got {path.name}")
    if path.is_dir():
        raise OutputPathError(f"{name} {path} is a folder; give a file name ending in {path.suffix or 'a suffix'}")
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise OutputPathError(f"{name} {path}: {existing} is a file, not a folder")
    _probe_writable(existing, f"{name} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{name} {path} exists and is not writable")
    return path
