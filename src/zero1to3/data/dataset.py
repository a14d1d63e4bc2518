"""Readers of the released render layout: per-item from disk, or all views in memory for fast training.

Layout (SPEC §4; also what :func:`zero1to3.data.writer.render_dataset` writes): ``root/<object>/NNN.png``
(RGBA) and ``NNN.npy`` (world->camera 3x4, Blender convention). Items are pairs of distinct views of one
object: ``target`` and ``cond`` images in [-1, 1] composited on white, and ``pose`` =
``relative_pose(target, cond).vector()``. Bad views (missing npy, unreadable PNG/npy) are skipped and
reported once, never raised mid-epoch, because one broken folder among 800K must not kill training.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from zero1to3.camera import cartesian_to_spherical, relative_pose
from zero1to3.inputs import open_image

logger = logging.getLogger(__name__)

__all__ = ["ObjectViewDataset", "ArrayPairDataset", "load_views_array", "split_of", "composite_on_white",
           "read_pose", "list_objects"]

_SPLITS = ("train", "val", "all")


def split_of(name: str, val_fraction: float = 0.01) -> str:
    """'val' or 'train' for an object folder name: a hash, so the split is stable and needs no file."""
    h = int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    return "val" if h < val_fraction else "train"


def _in_split(name: str, split: str, val_fraction: float) -> bool:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return split == "all" or split_of(name, val_fraction) == split


def composite_on_white(image: Image.Image, image_size: int | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3]: alpha-composite on white, then resize with antialiasing (PIL bicubic)."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if image_size is not None and rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.BICUBIC, reducing_gap=None)
    return np.array(rgb, np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def read_pose(path: str | os.PathLike[str]) -> np.ndarray:
    """A world->camera 3x4 float64 from an npy; ValueError if it is not a finite 3x4 or 4x4 matrix."""
    pose = np.load(path, allow_pickle=False)
    if pose.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(pose)):
        raise ValueError(f"{path}: not a finite 3x4 camera matrix (shape {pose.shape})")
    return np.asarray(pose[:3], np.float64)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(127.5).sub(1.0)


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


class ObjectViewDataset(Dataset):
    """Pairs of distinct views per object, read from disk (the released Objaverse renders or ours).

    ``split`` picks objects by a hash of the folder name (``val_fraction`` go to 'val'). Training pairs
    are drawn with torch's global RNG (seeded per DataLoader worker, new every epoch); validation pairs
    are fixed per index from ``seed`` unless ``fixed_pairs`` says otherwise. ``total_views`` limits views
    to indices below it. ``skipped`` maps object -> reason for every view or object left out.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_size: int | None = None,
                 val_fraction: float = 0.01, seed: int = 0, total_views: int | None = None,
                 fixed_pairs: bool | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.image_size = image_size
        self.seed = seed
        self.fixed_pairs = (split == "val") if fixed_pairs is None else fixed_pairs
        self.skipped: dict[str, str] = {}
        self.objects: list[str] = []
        self.views: list[list[int]] = []
        for name in list_objects(self.root, split, val_fraction):
            good, missing = _view_indices(self.root / name, total_views)
            if missing:
                self._skip(name, f"views {missing} lack a png or npy")
            if len(good) < 2:
                self._skip(name, f"only {len(good)} usable view(s)")
                continue
            self.objects.append(name)
            self.views.append(good)

    def _skip(self, name: str, reason: str) -> None:
        previous = self.skipped.get(name)
        self.skipped[name] = reason if previous is None else f"{previous}; {reason}"
        logger.warning("dataset %s: skipping %s: %s", self.root, name, reason)

    def __len__(self) -> int:
        return len(self.objects)

    def _load(self, obj: int, view: int) -> tuple[np.ndarray, np.ndarray]:
        folder = self.root / self.objects[obj]
        with open_image(folder / f"{view:03d}.png") as image:
            rgb = composite_on_white(image, self.image_size)
        return rgb, read_pose(folder / f"{view:03d}.npy")

    def _pick_pair(self, index: int, views: Sequence[int], attempt: int) -> tuple[int, int]:
        if self.fixed_pairs:
            rng = np.random.default_rng((self.seed, index, attempt))
            a, b = rng.choice(len(views), size=2, replace=False)
        else:
            a = int(torch.randint(len(views), ()).item())
            b = int(torch.randint(len(views) - 1, ()).item())
            b += b >= a
        return views[int(a)], views[int(b)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not len(self):
            raise IndexError("empty dataset")
        obj = index % len(self)
        for attempt in range(4 * len(self) + 8):
            views = self.views[obj]
            if len(views) >= 2:
                target_view, cond_view = self._pick_pair(index, views, attempt)
                loaded = {}
                for view in (target_view, cond_view):
                    try:
                        loaded[view] = self._load(obj, view)
                    except Exception as exc:  # corrupt file: drop the view, try another pair
                        views.remove(view)
                        self._skip(self.objects[obj], f"view {view:03d} unreadable ({type(exc).__name__}: {exc})")
                        break
                if len(loaded) == 2:
                    (target, target_rt), (cond, cond_rt) = loaded[target_view], loaded[cond_view]
                    return {"target": _to_tensor(target), "cond": _to_tensor(cond),
                            "pose": torch.from_numpy(relative_pose(target_rt, cond_rt).vector()),
                            "object": self.objects[obj], "target_index": target_view, "cond_index": cond_view}
                continue
            obj = (obj + 1) % len(self)  # this object ran out of views: use the next one
        raise RuntimeError(f"no readable view pairs left in {self.root}")


def _cache_path(root: Path, image_size: int, cache_dir: Path) -> Path:
    """One cache file per dataset folder (by its resolved path) and resolution, inside ``cache_dir``."""
    key = hashlib.sha1(str(root.resolve()).encode("utf-8")).hexdigest()[:12]
    return cache_dir / f"views_{image_size}_{root.name}_{key}.npz"


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
        lengths = [len(v) for v in counts.values() if len(v) >= 2]
        if not lengths:
            raise ValueError(f"no object in {root} has two or more views")
        counts_of = np.bincount(lengths)
        num_views = int(np.flatnonzero(counts_of == counts_of.max())[-1])  # most common; ties -> more views
    images, poses, kept, skipped = [], [], [], []
    iterator: Any = all_names
    if progress:
        from tqdm import tqdm

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
                    obj_images.append(composite_on_white(image, image_size))
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
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=cache_file.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=image_array, poses=pose_array, names=np.array(kept, dtype=str),
                     skipped=np.array(skipped, dtype=str))
        os.replace(tmp, cache_file)
    return image_array, pose_array, kept


def _spherical(poses: np.ndarray) -> np.ndarray:
    """(polar, azimuth, radius) [..., 3] of world->camera poses [..., 3, 4], float64."""
    rt = np.asarray(poses, np.float64)
    centres = -np.einsum("...ji,...j->...i", rt[..., :3, :3], rt[..., :3, 3])
    return np.stack(cartesian_to_spherical(centres), axis=-1)


class ArrayPairDataset(Dataset):
    """In-memory pairs of distinct views (from :func:`load_views_array`): no I/O per item.

    Items match :class:`ObjectViewDataset`. ``objects`` selects a subset (e.g. a split); pairs come from
    torch's global RNG unless ``fixed_pairs`` (then from ``seed`` and the index). :meth:`sample_batch`
    draws a whole batch with tensor ops for training loops that skip the DataLoader.
    """

    def __init__(self, images: np.ndarray, poses: np.ndarray, names: Sequence[str] | None = None,
                 objects: Sequence[int] | None = None, fixed_pairs: bool = False, seed: int = 0) -> None:
        if images.ndim != 5 or images.shape[-1] != 3 or poses.shape[:2] != images.shape[:2]:
            raise ValueError(f"expected images [N, V, H, W, 3] and poses [N, V, 3, 4], got "
                             f"{images.shape} and {poses.shape}")
        if images.shape[1] < 2:
            raise ValueError("need at least two views per object")
        self.images = torch.from_numpy(np.ascontiguousarray(images))  # shares memory, stays uint8
        self.spherical = torch.from_numpy(_spherical(poses))
        self.names = list(names) if names is not None else [f"{i:06d}" for i in range(len(images))]
        self.objects = (torch.arange(len(images)) if objects is None
                        else torch.as_tensor(list(objects), dtype=torch.long))
        self.fixed_pairs = fixed_pairs
        self.seed = seed

    @classmethod
    def from_root(cls, root: str | os.PathLike[str], image_size: int, split: str = "train",
                  val_fraction: float = 0.01, **kwargs: Any) -> "ArrayPairDataset":
        """Load (or reuse the cache of) ``root`` and keep the objects of one split."""
        images, poses, names = load_views_array(root, image_size)
        keep = [i for i, n in enumerate(names) if _in_split(n, split, val_fraction)]
        kwargs.setdefault("fixed_pairs", split == "val")
        return cls(images, poses, names, objects=keep, **kwargs)

    def __len__(self) -> int:
        return len(self.objects)

    @property
    def num_views(self) -> int:
        return int(self.images.shape[1])

    def _pose_vectors(self, obj: torch.Tensor, target: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t, c = self.spherical[obj, target], self.spherical[obj, cond]
        d = t - c
        return torch.stack([d[..., 0], torch.sin(d[..., 1]), torch.cos(d[..., 1]), d[..., 2]], dim=-1).float()

    def _images(self, obj: torch.Tensor, view: torch.Tensor,
                device: torch.device | str | None = None) -> torch.Tensor:
        # Gather and move as uint8 (4x less to copy), convert to [-1, 1] on the target device.
        return self.images[obj, view].to(device or "cpu").permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        obj = int(self.objects[index])
        if self.fixed_pairs:
            a, b = np.random.default_rng((self.seed, index)).choice(self.num_views, size=2, replace=False)
        else:
            a = int(torch.randint(self.num_views, ()).item())
            b = int(torch.randint(self.num_views - 1, ()).item())
            b += b >= a
        o, t, c = torch.tensor([obj]), torch.tensor([int(a)]), torch.tensor([int(b)])
        return {"target": self._images(o, t)[0], "cond": self._images(o, c)[0],
                "pose": self._pose_vectors(o, t, c)[0], "object": self.names[obj],
                "target_index": int(a), "cond_index": int(b)}

    def sample_batch(self, batch_size: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """A random batch (objects with replacement, distinct view pairs): target, cond, pose, indices."""
        n, v = len(self.objects), self.num_views
        obj = self.objects[torch.randint(n, (batch_size,), generator=generator)]
        a = torch.randint(v, (batch_size,), generator=generator)
        b = torch.randint(v - 1, (batch_size,), generator=generator)
        b = b + (b >= a).long()
        batch = {"target": self._images(obj, a, device), "cond": self._images(obj, b, device),
                 "pose": self._pose_vectors(obj, a, b), "object_index": obj, "target_index": a, "cond_index": b}
        if device is not None:
            batch = {k: t.to(device) for k, t in batch.items()}
        return batch
