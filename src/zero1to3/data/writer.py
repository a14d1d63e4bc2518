"""Write renders in the released Zero-1-to-3 layout (one folder per object, NNN.png + NNN.npy).

Why this layout: the same reader (:mod:`zero1to3.data.dataset`) then serves our renders and the released
Objaverse renders. Every object's cameras depend only on ``(seed, object index)`` and its light rig on ``(seed, object name)``, so results do
not depend on the number of workers, and an interrupted run resumes by skipping finished folders.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import trimesh
from PIL import Image
from tqdm import tqdm

from zero1to3.atomic import write_json_atomic
from zero1to3.camera import REFERENCE_FOV_DEG, REFERENCE_RADIUS_RANGE, camera_at, sample_reference_cameras
from zero1to3.data.dataset import load_views_array
from zero1to3.data.procedural import normalize_mesh, procedural_name, random_object
from zero1to3.data.render import MESH_EXTENSIONS, Light, load_mesh, random_light, render_views

logger = logging.getLogger(__name__)

#: What ``render_dataset`` accepts as objects: a procedural count, a folder or list of mesh files, or
#: ready ``(name, mesh)`` pairs.
ObjectSource = Union[int, str, os.PathLike, Sequence[Union[str, os.PathLike]], Sequence[tuple[str, trimesh.Trimesh]],
                     Sequence[tuple[str, Union[str, os.PathLike]]]]


@dataclass
class RenderSummary:
    """What ``render_dataset`` did: object names written, skipped (already complete) and failed."""

    out_dir: Path
    rendered: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _mesh_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MESH_EXTENSIONS))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such mesh file or folder: {p}")
    return files


def _jobs(objects: ObjectSource) -> list[tuple[str, object]]:
    """(folder name, source) per object; sources are picklable: ('proc', index), a Path, or a mesh."""
    if isinstance(objects, (int, np.integer)) and not isinstance(objects, bool):
        if objects < 0:
            raise ValueError("procedural object count must be >= 0")
        return [(procedural_name(i), ("proc", i)) for i in range(int(objects))]
    if isinstance(objects, (str, os.PathLike)):
        objects = [objects]
    items = list(objects)
    if items and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], trimesh.Trimesh) for x in items):
        return [(str(name), mesh) for name, mesh in items]
    if items and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], (str, os.PathLike)) for x in items):
        return [(str(name), Path(path)) for name, path in items]  # (name, mesh file): a corpus split
    jobs: list[tuple[str, object]] = []
    used: dict[str, int] = {}
    for f in _mesh_files(items):
        name = f.stem
        if name in used:  # same stem in two folders: keep both
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        jobs.append((name, f))
    return jobs


def object_light(seed: int, name: str) -> Light:
    """The light rig of one object: a function of ``(seed, object name)`` only, so an object keeps its
    lighting when the object list around it changes, and different objects get different rigs."""
    return random_light(np.random.default_rng((int(seed), zlib.crc32(name.encode("utf-8")), 2)))


def _complete(folder: Path, num_views: int, save_mesh: bool) -> bool:
    names = [f"{i:03d}.{ext}" for i in range(num_views) for ext in ("png", "npy")]
    if save_mesh:
        names.append("mesh.ply")
    return all((folder / n).is_file() for n in names)


def _render_one(args: tuple) -> tuple[str, str | None]:
    """Render one object into its folder (written to a temp folder, then renamed: never half-written)."""
    (name, source, index, out_dir, num_views, resolution, seed, save_mesh, supersample, msaa, fov_deg,
     radius_range, orbit) = args

    try:
        if isinstance(source, tuple) and source[0] == "proc":
            mesh = random_object((seed, int(source[1])))
        elif isinstance(source, trimesh.Trimesh):

            mesh = normalize_mesh(source)
        else:
            mesh = load_mesh(source)
        rng = np.random.default_rng((seed, index, 1))
        poses = sample_reference_cameras(rng, num_views, radius_range).astype(np.float32)
        light = object_light(seed, name)
        if orbit[0]:
            count, elevation_deg, radius = orbit
            ring = camera_at(elevation_deg, np.arange(count) * 360.0 / count, radius).astype(np.float32)
            poses = np.concatenate([poses, ring])
        result = render_views(mesh, poses.astype(np.float64), resolution, light=light, supersample=supersample,
                              msaa=msaa, fov_deg=fov_deg)
        folder = Path(out_dir) / name
        tmp = Path(out_dir) / f".tmp_{name}_{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for i in range(len(poses)):
            Image.fromarray(result.rgba[i], "RGBA").save(tmp / f"{i:03d}.png", compress_level=1)
            np.save(tmp / f"{i:03d}.npy", poses[i])
        if save_mesh:
            mesh.export(tmp / "mesh.ply")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        return name, None
    except Exception as exc:  # one bad mesh must not stop a dataset run
        return name, f"{type(exc).__name__}: {exc}"


def _init_worker(threads: int) -> None:
    # llvmpipe spawns one thread per core by default; with several workers that oversubscribes the CPU.
    os.environ.setdefault("LP_NUM_THREADS", str(threads))


def render_dataset(out_dir: str | os.PathLike, objects: ObjectSource, num_views: int = 12, resolution: int = 256,
                   seed: int = 0, workers: int = 1, save_mesh: bool = False, overwrite: bool = False,
                   supersample: int = 1, msaa: bool = True, fov_deg: float = REFERENCE_FOV_DEG,
                   radius_range: tuple[float, float] = REFERENCE_RADIUS_RANGE, progress: bool = True,
                   cache_size: int | None = None, orbit_views: int = 0, orbit_elevation_deg: float = 30.0,
                   orbit_radius: float = 2.0) -> RenderSummary:
    """Render objects into ``out_dir/<name>/{000..}.png|npy`` (+ ``mesh.ply`` if ``save_mesh``).

    ``objects``: an int (that many procedural objects of family ``seed``), a folder or list of mesh files
    or folders, ``(name, trimesh)`` pairs, or ``(name, mesh file)`` pairs (a corpus split, see
    :func:`zero1to3.data.corpus.split_files`). Cameras follow the reference distribution
    (:func:`~zero1to3.camera.sample_reference_cameras`); each npy is the float32 world->camera 3x4 used
    for the image. Anti-aliasing: 4x ``msaa`` and/or ``supersample`` (on CPU, ``supersample=2,
    msaa=False`` is faster at <= 128 px). Complete folders are kept unless ``overwrite``.
    ``workers`` > 1 uses spawned processes, each with its own GL context. ``cache_size``: afterwards also write
    ``views_<cache_size>.npz`` (see :func:`zero1to3.data.dataset.load_views_array`) for fast training.
    ``orbit_views`` > 0 appends that many views evenly spaced in azimuth at ``orbit_elevation_deg`` and
    ``orbit_radius`` (numbered after the random ones), as the 16-view evaluation protocol needs.
    A ``meta.json`` records the settings.
    """

    orbit = (int(orbit_views), float(orbit_elevation_deg), float(orbit_radius))

    if num_views < 1 or resolution < 1:
        raise ValueError("num_views and resolution must be >= 1")
    out = Path(out_dir)
    settings = {"num_views": num_views, "orbit_views": orbit[0], "orbit_elevation_deg": orbit[1],
                "orbit_radius": orbit[2], "resolution": resolution, "seed": seed, "fov_deg": fov_deg,
                "radius_range": list(radius_range), "supersample": supersample, "msaa": msaa}
    _check_existing_meta(out / "meta.json", settings, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(objects)
    summary = RenderSummary(out)
    start = time.perf_counter()
    todo = []
    for index, (name, source) in enumerate(jobs):
        if not overwrite and _complete(out / name, num_views + orbit[0], save_mesh):
            summary.existing.append(name)
            continue
        todo.append((name, source, index, str(out), num_views, resolution, seed, save_mesh, supersample, msaa,
                     fov_deg, tuple(radius_range), orbit))
    bar = tqdm(total=len(todo), desc="render", unit="obj", disable=not progress)
    try:
        if workers > 1 and len(todo) > 1:
            threads = max(1, (os.cpu_count() or 1) // workers)
            with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
                for name, error in pool.imap_unordered(_render_one, todo, chunksize=1):
                    _record(summary, name, error)
                    bar.update()
        else:
            for job in todo:
                _record(summary, *_render_one(job))
                bar.update()
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    meta = dict(settings, objects=len(jobs), failed=summary.failed,
                layout="NNN.png RGBA + NNN.npy world->camera 3x4")
    write_json_atomic(out / "meta.json", meta, indent=1)
    if cache_size:
        load_views_array(out, cache_size, num_views=num_views + orbit[0], cache=True, cache_dir=out / ".cache")
    return summary


def _check_existing_meta(path: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to add renders of other settings to a folder (its meta.json would describe only some of them)."""
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    changed = [f"{k} {old[k]!r} -> {v!r}" for k, v in settings.items()
               if k in old and json.loads(json.dumps(old[k])) != json.loads(json.dumps(v))]
    if changed:
        raise ValueError(f"{path.parent} holds renders made with other settings ({', '.join(changed)}); "
                         "use another output folder or --overwrite")


def _record(summary: RenderSummary, name: str, error: str | None) -> None:
    if error is None:
        summary.rendered.append(name)
    else:
        summary.failed[name] = error
        logger.warning("render: skipped %s (%s)", name, error)
