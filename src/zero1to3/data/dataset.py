"""Reader of the released render layout: all views of a folder in memory, for training.

Layout (SPEC §4; also what :func:`zero1to3.data.writer.render_dataset` writes): ``root/<object>/NNN.png``
(RGBA) and ``NNN.npy`` (world->camera 3x4, Blender convention). Views are composited on white and resized
by :func:`zero1to3.preprocess.composite_on_white`; training pairs and their pose vectors are drawn by
:class:`zero1to3.training.PairBatcher`. Bad objects (missing npy, unreadable PNG/npy) are skipped and
logged, never raised, because one broken folder among 800K must not stop a run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from zero1to3.atomic import atomic_path
from zero1to3.inputs import open_image
from zero1to3.preprocess import composite_on_white

logger = logging.getLogger(__name__)

__all__ = ["load_views_array", "split_of", "hash_part", "read_pose", "list_objects"]

_SPLITS = ("train", "val", "all")


def _unit_hash(name: str, salt: str = "") -> float:
    """A name's stable place in [0, 1): the same on every machine and run, so no list file is needed.
    A salt gives an independent draw (parts must not line up with the val split)."""
    return int.from_bytes(hashlib.sha1((salt + name).encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_of(name: str, val_fraction: float = 0.01) -> str:
    """'val' or 'train' for an object folder name: a hash, so the split is stable and needs no file."""
    return "val" if _unit_hash(name) < val_fraction else "train"


def hash_part(name: str, parts: int) -> int:
    """Which of ``parts`` equal-sized, stable parts (0-based) an object falls in: lets a split too large
    for one device call travel as several shard folders, each a random sample of the whole."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    return min(int(_unit_hash(name, salt="part:") * parts), parts - 1)


def _in_split(name: str, split: str, val_fraction: float) -> bool:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return split == "all" or split_of(name, val_fraction) == split


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def read_pose(path: str | os.PathLike[str]) -> np.ndarray:
    """A world->camera 3x4 float64 from an npy; ValueError if it is not a finite 3x4 or 4x4 matrix."""
    pose = np.load(path, allow_pickle=False)
    if pose.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(pose)):
        raise ValueError(f"{path}: not a finite 3x4 camera matrix (shape {pose.shape})")
    return np.asarray(pose[:3], np.float64)


def _view_indices(folder: Path, total_views: int | None) -> tuple[list[int], list[int]]:
    """(views with both png and npy, views with one of them missing) of one folder."""
    try:
        names = set(os.listdir(folder))
    except OSError:
        return [], []
    pngs = {int(n[:-4]) for n in names if n.endswith(".png") and n[:-4].isdigit()}
    npys = {int(n[:-4]) for n in names if n.endswith(".npy") and n[:-4].isdigit()}
    if total_views is not None:
        pngs = {i for i in pngs if i < total_views}
        npys = {i for i in npys if i < total_views}
    return sorted(pngs & npys), sorted(pngs ^ npys)


def list_objects(root: str | os.PathLike[str], split: str = "all", val_fraction: float = 0.01) -> list[str]:
    """Sorted object folder names under ``root`` in a split (folders starting with '.' are ignored)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    return sorted(e.name for e in os.scandir(root)
                  if e.is_dir() and not e.name.startswith(".") and _in_split(e.name, split, val_fraction))


def _cache_path(root: Path, image_size: int, cache_dir: Path) -> Path:
    """One cache file per dataset folder (by its resolved path) and resolution, inside ``cache_dir``."""
    key = hashlib.sha1(str(root.resolve()).encode("utf-8")).hexdigest()[:12]
    return cache_dir / f"views_{image_size}_{root.name}_{key}.npz"


def common_view_count(views_per_object: dict[str, list[int]], root: Path) -> int:
    """The most common number of readable views among objects with two or more (ties -> more views):
    readers keep objects with that many, so a split stays one rectangular array."""
    lengths = [len(v) for v in views_per_object.values() if len(v) >= 2]
    if not lengths:
        raise ValueError(f"no object in {root} has two or more views")
    counts_of = np.bincount(lengths)
    return int(np.flatnonzero(counts_of == counts_of.max())[-1])


def load_views_array(root: str | os.PathLike[str], image_size: int, num_views: int | None = None,
                     cache: bool = True, names: Sequence[str] | None = None,
                     progress: bool = False,
                     cache_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All views in memory: images uint8 [N, V, H, W, 3] on white, poses float32 [N, V, 3, 4], names.

    Objects with fewer than ``num_views`` readable views (default: the most common count) are left out
    and logged with the file at fault. With ``cache`` and a ``cache_dir``, the arrays are stored there
    (never in the dataset, which may be read-only) and reused while the object list and view count are
    unchanged (delete it after editing the renders).
    """
    root = Path(root)
    all_names = list_objects(root) if names is None else list(names)
    cache = cache and cache_dir is not None
    cache_file = _cache_path(root, image_size, Path(cache_dir)) if cache else None
    if cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as data:
                cached_names = [str(n) for n in data["names"]]
                skipped = {str(n) for n in data["skipped"]} if "skipped" in data else set()
                if (sorted(set(cached_names) | skipped) == sorted(all_names)
                        and (num_views is None or data["poses"].shape[1] == num_views)):
                    return data["images"], data["poses"], cached_names
        except Exception as exc:
            logger.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
    counts = {n: _view_indices(root / n, None)[0] for n in all_names}
    if num_views is None:
        num_views = common_view_count(counts, root)
    images, poses, kept, skipped = [], [], [], []
    iterator: Any = all_names
    if progress:
        iterator = tqdm(all_names, desc="load views", unit="obj")
    for name in iterator:
        views = counts[name][:num_views]
        try:
            if len(views) < num_views:
                raise ValueError(f"{len(views)} of {num_views} views present")
            obj_images, obj_poses = [], []
            for v in views:
                current = root / name / f"{v:03d}.png"
                with open_image(current) as image:
                    obj_images.append(np.array(composite_on_white(image.convert("RGBA"), image_size), np.uint8))
                current = root / name / f"{v:03d}.npy"
                obj_poses.append(read_pose(current))
        except Exception as exc:
            where = current if len(views) >= num_views else root / name
            logger.warning("load_views_array: skipping object %s: %s: %s", name, where, _one_line(exc))
            skipped.append(name)
            continue
        images.append(np.stack(obj_images))
        poses.append(np.stack(obj_poses))
        kept.append(name)
    image_array = (np.stack(images) if images else np.zeros((0, num_views, image_size, image_size, 3), np.uint8))
    pose_array = (np.stack(poses).astype(np.float32) if poses else np.zeros((0, num_views, 3, 4), np.float32))
    if cache:  # a private temporary per writer: ranks of one launch may write the same cache at once
        with atomic_path(cache_file) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=image_array, poses=pose_array, names=np.array(kept, dtype=str),
                     skipped=np.array(skipped, dtype=str))
    return image_array, pose_array, kept
