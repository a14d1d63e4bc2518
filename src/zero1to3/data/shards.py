"""Compact training form of a rendered split: per object one JPEG strip of its views (on white) and one
PNG strip of their alpha masks, packed into ``.npz`` shards of at most ~60 MiB.

Why: training data reaches the GPU machine only with the working tree (64 MiB a call), and the released
PNG layout costs ~10x more bytes than this. Views of one object are tiled side by side so that the per-file
JPEG/PNG headers are paid once per object; tiles are multiples of 8 px wide, so JPEG blocks never straddle
two views. Colour uses 4:4:4 sampling (no chroma subsampling): at 64 px an object is only a few blocks
wide. Alpha stays lossless because masks are targets (segmenter, mask IoU). Nothing is pickled: shards are
plain arrays read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from zero1to3.data.dataset import _view_indices, common_view_count, hash_part, list_objects, read_pose
from zero1to3.atomic import atomic_path, write_json_atomic
from zero1to3.inputs import open_image
from zero1to3.preprocess import RESAMPLE, composite_on_white

#: The index file that marks a folder as a shard folder.
SHARD_INDEX = "shards.json"
FORMAT_VERSION = 1


@dataclass
class ViewSet:
    """All views of a split in memory: what the trainer, the segmenter trainer and evaluation consume."""

    images: np.ndarray  # uint8 [N, V, H, W, 3], composited on white
    alpha: np.ndarray  # uint8 [N, V, H, W]
    poses: np.ndarray  # float32 [N, V, 3, 4], world->camera
    names: list[str]

    def __post_init__(self) -> None:
        n, v, h, w = self.alpha.shape
        if self.images.shape != (n, v, h, w, 3) or self.poses.shape != (n, v, 3, 4) or len(self.names) != n:
            raise ValueError(f"inconsistent view set: images {self.images.shape}, alpha {self.alpha.shape}, "
                             f"poses {self.poses.shape}, {len(self.names)} names")

    def subset(self, index: Sequence[int] | np.ndarray) -> "ViewSet":
        index = np.asarray(index, dtype=np.int64)
        return ViewSet(self.images[index], self.alpha[index], self.poses[index], [self.names[i] for i in index])


def split_alpha(rgba: Image.Image, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB on white [S,S,3], alpha [S,S]) of an RGBA render, both resized with the same filter."""
    rgb = np.array(composite_on_white(rgba.convert("RGBA"), image_size), np.uint8)
    alpha = rgba.convert("RGBA").getchannel("A")
    if alpha.size != (image_size, image_size):
        alpha = alpha.resize((image_size, image_size), RESAMPLE, reducing_gap=None)
    return rgb, np.array(alpha, np.uint8)


#: alpha (0-255) a pixel needs to count as drawn; an object with none in every view is skipped
VISIBLE_ALPHA = 128


def read_render_folder(root: str | os.PathLike[str], image_size: int, num_views: int | None = None,
                       names: Sequence[str] | None = None) -> tuple[ViewSet, dict[str, str]]:
    """A split in the released PNG layout -> ViewSet, and the objects skipped with the reason.

    Objects need ``num_views`` readable views (default: the most common count), so the set stays a
    rectangular array, and at least one pixel of ``VISIBLE_ALPHA`` in some view: an object drawn nowhere only
    teaches blank frames. The others are reported, never raised.
    """
    root = Path(root)
    all_names = list_objects(root) if names is None else list(names)
    counts = {n: _view_indices(root / n, None)[0] for n in all_names}
    if num_views is None:
        num_views = common_view_count(counts, root)
    images, alphas, poses, kept, skipped = [], [], [], [], {}
    for name in all_names:
        views = counts[name][:num_views]
        try:
            if len(views) < num_views:
                raise ValueError(f"{len(views)} of {num_views} views present")
            rgb_alpha = []
            for v in views:
                with open_image(root / name / f"{v:03d}.png") as image:
                    rgb_alpha.append(split_alpha(image, image_size))
            obj_poses = [read_pose(root / name / f"{v:03d}.npy")[:3] for v in views]
            if max(int(a.max()) for _, a in rgb_alpha) < VISIBLE_ALPHA:
                raise ValueError("invisible in every view (e.g. a texture whose alpha cuts everything out)")
        except Exception as exc:  # noqa: BLE001 - one broken object must not stop a split
            skipped[name] = str(exc)
            continue
        images.append(np.stack([rgb for rgb, _ in rgb_alpha]))
        alphas.append(np.stack([a for _, a in rgb_alpha]))
        poses.append(np.stack(obj_poses))
        kept.append(name)
    s = image_size
    return ViewSet(np.stack(images) if images else np.zeros((0, num_views, s, s, 3), np.uint8),
                   np.stack(alphas) if alphas else np.zeros((0, num_views, s, s), np.uint8),
                   np.stack(poses).astype(np.float32) if poses else np.zeros((0, num_views, 3, 4), np.float32),
                   kept), skipped


def _strip(views: np.ndarray) -> np.ndarray:
    """[V, H, W, ...] -> [H, V*W, ...]: the views side by side."""
    return np.concatenate(list(views), axis=1)


def _unstrip(strip: np.ndarray, num_views: int) -> np.ndarray:
    return np.stack(np.split(strip, num_views, axis=1))


def _encode_object(images: np.ndarray, alpha: np.ndarray, quality: int) -> tuple[bytes, bytes]:
    rgb, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(_strip(images)).save(rgb, format="JPEG", quality=quality, subsampling=0, optimize=True)
    Image.fromarray(_strip(alpha)).save(mask, format="PNG", optimize=True)
    return rgb.getvalue(), mask.getvalue()


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz"
        np.savez(f, **arrays)


def _groups_by_bytes(sizes: Sequence[int], limit: int) -> Iterator[range]:
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if total and total + size > limit:
            yield range(start, i)
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def write_shards(views: ViewSet, out_dir: str | os.PathLike[str], quality: int = 90,
                 max_shard_bytes: int = 60 * 2**20, workers: int | None = None,
                 extra: dict | None = None) -> dict:
    """Encode and write ``views`` as ``shard-NNN.npz`` + ``shards.json`` (index written last, atomically).

    Returns the index: shard files, object counts, bytes per object. ``extra`` is stored in the index
    (e.g. the source split and render settings).
    """
    if views.images.shape[3] % 8:
        raise ValueError(f"view width {views.images.shape[3]} is not a multiple of 8 (JPEG blocks would "
                         "straddle views)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(views.names)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        encoded = list(pool.map(lambda i: _encode_object(views.images[i], views.alpha[i], quality), range(n)))
    files, total = [], 0
    for k, group in enumerate(_groups_by_bytes([len(r) + len(a) for r, a in encoded], max_shard_bytes)):
        rgb = [encoded[i][0] for i in group]
        alpha = [encoded[i][1] for i in group]
        name = f"shard-{k:03d}.npz"
        _atomic_savez(out / name,
                      rgb=np.frombuffer(b"".join(rgb), np.uint8),
                      rgb_offsets=np.cumsum([0] + [len(b) for b in rgb]).astype(np.int64),
                      alpha=np.frombuffer(b"".join(alpha), np.uint8),
                      alpha_offsets=np.cumsum([0] + [len(b) for b in alpha]).astype(np.int64),
                      poses=views.poses[group.start:group.stop].astype(np.float32),
                      names=np.array(views.names[group.start:group.stop], dtype=str))
        files.append({"file": name, "objects": len(group), "bytes": (out / name).stat().st_size})
        total += files[-1]["bytes"]
    index = {"format": FORMAT_VERSION, "objects": n, "views": int(views.images.shape[1]),
             "image_size": int(views.images.shape[2]), "quality": quality, "shards": files,
             "bytes_per_object": total / max(n, 1), **(extra or {})}
    write_json_atomic(out / SHARD_INDEX, index, indent=1)
    return index


def pack_render_folder(root: str | os.PathLike[str], out_dir: str | os.PathLike[str], image_size: int,
                       quality: int = 90, num_views: int | None = None,
                       max_shard_bytes: int = 60 * 2**20, part: tuple[int, int] | None = None) -> dict:
    """PNG layout -> shards; objects that cannot be read are listed in the index under ``skipped``.

    ``part=(k, n)`` packs only part k of n (1-based, as the CLI's ``--part K/N`` and the index's ``part``):
    the objects whose ``hash_part`` is k - 1. The n folders of one split are disjoint, cover it, and each
    fits a device call that the whole would not.
    """
    names = None
    if part is not None:
        k, n = part
        if not 1 <= k <= n:
            raise ValueError(f"part {k}/{n} is out of range: K must be in 1..{n}")
        names = [name for name in list_objects(root) if hash_part(name, n) == k - 1]
    views, skipped = read_render_folder(root, image_size, num_views, names=names)
    meta_file = Path(root) / "meta.json"  # render settings, e.g. which views are the orbit views
    render_meta = json.loads(meta_file.read_text()) if meta_file.is_file() else None
    return write_shards(views, out_dir, quality=quality, max_shard_bytes=max_shard_bytes,
                        extra={"source": str(root), "skipped": skipped, "render_meta": render_meta,
                               **({"part": list(part)} if part else {})})


def is_shard_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / SHARD_INDEX).is_file()


def _decode_object(rgb: bytes, alpha: bytes, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    with Image.open(io.BytesIO(rgb)) as image:
        colour = np.asarray(image.convert("RGB"))
    with Image.open(io.BytesIO(alpha)) as image:
        mask = np.asarray(image.convert("L"))
    return _unstrip(colour, num_views), _unstrip(mask, num_views)


def read_shards(path: str | os.PathLike[str], workers: int | None = None) -> ViewSet:
    """All objects of a shard folder, decoded in threads (PIL releases the GIL while decoding)."""
    folder = Path(path)
    if not is_shard_folder(folder):
        raise FileNotFoundError(f"{folder}: not a shard folder (expected {SHARD_INDEX} written by "
                                "`zero1to3 data pack`)")
    index = json.loads((folder / SHARD_INDEX).read_text())
    if index.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder / SHARD_INDEX}: shard format {index.get('format')!r}, expected {FORMAT_VERSION}")
    v, s = index["views"], index["image_size"]
    n = index["objects"]
    images = np.empty((n, v, s, s, 3), np.uint8)
    alpha = np.empty((n, v, s, s), np.uint8)
    poses, names = [], []
    start = 0
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for shard in index["shards"]:
            with np.load(folder / shard["file"], allow_pickle=False) as data:
                rgb, ro, al, ao = data["rgb"], data["rgb_offsets"], data["alpha"], data["alpha_offsets"]
                poses.append(data["poses"])
                names.extend(str(x) for x in data["names"])
            count = len(ro) - 1

            def decode(i: int, rgb=rgb, ro=ro, al=al, ao=ao, start=start) -> None:
                images[start + i], alpha[start + i] = _decode_object(
                    rgb[ro[i]:ro[i + 1]].tobytes(), al[ao[i]:ao[i + 1]].tobytes(), v)

            list(pool.map(decode, range(count)))
            start += count
    if start != n:
        raise ValueError(f"{folder}: index says {n} objects, shards hold {start}")
    return ViewSet(images, alpha, np.concatenate(poses).astype(np.float32), names)


def unpack_shards(path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> int:
    """Shards -> the released PNG layout (RGBA + world->camera npy), e.g. for ``zero1to3 eval nvs``.

    The colour under partial alpha is recovered from the white composite as (c - 255 (1 - a)) / a, so
    compositing the written PNG on white gives back the stored view (up to rounding).
    """
    views = read_shards(path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    render_meta = json.loads((Path(path) / SHARD_INDEX).read_text()).get("render_meta")
    if render_meta is not None:
        write_json_atomic(out / "meta.json", render_meta, indent=1)
    for n, name in enumerate(views.names):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        a = views.alpha[n].astype(np.float32)[..., None] / 255.0
        colour = (views.images[n].astype(np.float32) - 255.0 * (1.0 - a)) / np.maximum(a, 1.0 / 255.0)
        rgba = np.concatenate([np.clip(np.rint(colour), 0, 255), a * 255.0], -1).astype(np.uint8)
        for v in range(rgba.shape[0]):
            Image.fromarray(rgba[v], "RGBA").save(folder / f"{v:03d}.png")
            np.save(folder / f"{v:03d}.npy", views.poses[n, v])
    return len(views.names)
