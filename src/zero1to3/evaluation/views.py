"""Reading evaluation objects (the released render layout) and choosing input/target views per protocol.

Layout (SPEC §4): one folder per object holding ``NNN.png`` (RGBA) and ``NNN.npy`` (world->camera 3x4
[R|t], Blender convention). Every view carries its own pose, so any camera set works as long as the
protocol's cameras are among the rendered views; relative poses come from
:func:`zero1to3.camera.relative_pose`.

Selections are seeded per object (seed + a stable hash of the object's name), so ``--limit`` and resuming
never change which views an object is evaluated on.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from zero1to3.camera import RelativePose, relative_pose, spherical_of_camera
from zero1to3.inputs import open_image
from zero1to3.preprocess import RESAMPLE, composite_on_white

PROTOCOLS = ("random", "orbit16")
#: orbit16: 16 views at this elevation, evenly spaced in azimuth (the protocol of later papers, SPEC §8).
ORBIT_ELEVATION_DEG = 30.0
ORBIT_VIEWS = 16
#: Tolerance (degrees) when matching rendered cameras to the orbit.
ORBIT_TOLERANCE_DEG = 0.5


class ProtocolError(ValueError):
    """The data cannot serve the requested protocol (e.g. no orbit renders); the message says what is missing."""


@dataclass
class EvalObject:
    """One object folder: its view names (file stems, sorted) and their world->camera poses."""

    name: str
    path: Path
    views: list[str]
    poses: dict[str, np.ndarray] = field(repr=False)
    #: views rendered for evaluation protocols (orbits), not drawn from the reference camera distribution;
    #: the ``random`` protocol leaves them out (from the dataset's ``meta.json``, see :func:`list_objects`)
    extra_views: frozenset[str] = frozenset()
    #: view -> why it was left out (unreadable pose or image), for the run's notices
    skipped: dict[str, str] = field(default_factory=dict)

    def image(self, view: str, size: int | None = None) -> np.ndarray:
        """View ``view`` as uint8 RGB [H, W, 3], alpha-composited on white, resized to ``size`` if given."""
        return load_rgb(self.path / f"{view}.png", size)

    def alpha(self, view: str, size: int | None = None) -> np.ndarray | None:
        """Alpha of view ``view`` as float [H, W] in [0, 1] (resized to ``size`` like the image); None without alpha."""
        return load_alpha(self.path / f"{view}.png", size)


@dataclass
class ViewTask:
    """What to evaluate on one object: the input view, the target views and their relative poses."""

    object: EvalObject
    input_view: str
    targets: list[str]
    relative_poses: list[RelativePose]


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """PNG -> uint8 RGB on a white background, resized to ``size`` as training data is (preprocess.composite_on_white).

    An unreadable or oversize file raises :class:`~zero1to3.inputs.ImageInputError` naming it."""
    with open_image(path) as im:
        return np.array(composite_on_white(im.convert("RGBA"), size), np.uint8)


def load_alpha(path: Path, size: int | None = None) -> np.ndarray | None:
    """The PNG's alpha as float [H, W] in [0, 1], resized with the filter of :func:`load_rgb`; None if it has none."""
    with Image.open(path) as im:
        if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
            return None
        alpha = im.convert("RGBA").getchannel("A")
    if size is not None and alpha.size != (size, size):
        alpha = alpha.resize((size, size), RESAMPLE, reducing_gap=None)
    return np.asarray(alpha, dtype=np.float32) / 255.0


def _extra_view_names(root: Path) -> frozenset[str]:
    """Orbit views appended by ``zero1to3 render --orbit`` (numbered after the ``num_views`` random ones)."""
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return frozenset()
    try:
        meta = json.loads(meta_path.read_text())
        first, count = int(meta.get("num_views", 0)), int(meta.get("orbit_views", 0) or 0)
    except (ValueError, TypeError, AttributeError):
        return frozenset()
    return frozenset(f"{i:03d}" for i in range(first, first + count)) if first > 0 else frozenset()


def _read_object(path: Path, extra: frozenset[str] = frozenset()) -> EvalObject | None:
    """The object's views with a readable, finite pose; a bad pose file drops its view (recorded in ``skipped``)."""
    views = sorted(p.stem for p in path.glob("*.png") if (path / f"{p.stem}.npy").is_file())
    if not views:
        return None
    poses, skipped = {}, {}
    for v in views:
        npy = path / f"{v}.npy"
        try:
            pose = np.load(npy, allow_pickle=False)
            if pose.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(pose)):
                raise ValueError(f"expected a finite 3x4 world->camera matrix, got shape {pose.shape}")
        except Exception as exc:  # pickled, truncated, wrong shape: this view only
            skipped[v] = f"{npy}: {(str(exc).splitlines() or [type(exc).__name__])[0][:160]}"
            continue
        poses[v] = np.asarray(pose, np.float64)[:3]
    kept = [v for v in views if v in poses]
    return EvalObject(path.name, path, kept, poses, extra & frozenset(kept), skipped)


def load_task(obj: EvalObject, protocol: str, input_view: str | int | None, num_targets: int | None, seed: int,
              size: int) -> tuple[ViewTask, np.ndarray, np.ndarray]:
    """(task, input image, target images) with unreadable views dropped and the selection redone.

    A broken input view falls back to another one unless the input view was fixed by the caller; a broken
    target is replaced. Raises ProtocolError (naming the files) when the object cannot serve the protocol.
    """
    while True:
        task = select_views(obj, protocol, input_view, num_targets, seed)
        bad = None
        try:
            bad = task.input_view
            inp = obj.image(task.input_view, size)
            images = []
            for t in task.targets:
                bad = t
                images.append(obj.image(t, size))
            return task, inp, np.stack(images)
        except ValueError as exc:  # ImageInputError: unreadable, truncated, oversize
            obj.skipped[bad] = str(exc)
            if input_view is not None and bad == _match_view(obj, input_view):
                raise ProtocolError(f"object {obj.name}: the input view is unreadable ({exc})") from None
            obj.views = [v for v in obj.views if v != bad]
            if len(obj.views) < 2:
                raise ProtocolError(f"object {obj.name}: fewer than two readable views ({exc})") from None


def list_objects(data_dir: str | Path, limit: int | None = None) -> list[EvalObject]:
    """Object folders under ``data_dir`` (sorted by name; ``data_dir`` itself if it is one), first ``limit``.

    A ``meta.json`` beside the object folders (written by ``zero1to3 render``) marks the ``--orbit`` views
    as :attr:`EvalObject.extra_views`.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    own = _read_object(root, _extra_view_names(root.parent))
    if own is not None:
        objects = [own]
    else:
        extra = _extra_view_names(root)
        objects = [o for o in (_read_object(p, extra) for p in sorted(root.iterdir()) if p.is_dir())
                   if o is not None]
    if not objects:
        raise ProtocolError(f"no object folders with NNN.png + NNN.npy views under {root}")
    return objects[:limit] if limit is not None else objects


def object_seed(seed: int, name: str) -> int:
    """A per-object seed that depends only on the run seed and the object's name."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**31 - 1)


def _match_view(obj: EvalObject, key: str | int) -> str:
    key = str(key)
    if key in obj.views:
        return key
    if key.isdigit():
        for v in obj.views:
            if v.isdigit() and int(v) == int(key):
                return v
    raise ProtocolError(f"object {obj.name}: no view {key!r} (views: {', '.join(obj.views)})")


def find_orbit(obj: EvalObject, elevation_deg: float = ORBIT_ELEVATION_DEG, count: int = ORBIT_VIEWS,
               tol_deg: float = ORBIT_TOLERANCE_DEG) -> list[str]:
    """The ``count`` views at ``elevation_deg`` spaced 360/count in azimuth, ordered by azimuth from the first.

    Raises :class:`ProtocolError` when the object was not rendered with such an orbit.
    """
    ring: list[tuple[float, str]] = []
    for v in obj.views:
        polar, azimuth, _ = spherical_of_camera(obj.poses[v])
        if abs((90.0 - math.degrees(polar)) - elevation_deg) <= tol_deg:
            ring.append((math.degrees(azimuth) % 360.0, v))
    step = 360.0 / count
    for start, _ in ring:
        chosen = []
        for k in range(count):
            want = (start + k * step) % 360.0
            hits = [v for a, v in ring if abs((a - want + 180.0) % 360.0 - 180.0) <= tol_deg]
            if not hits:
                break
            chosen.append(hits[0])
        if len(chosen) == count:
            return chosen
    raise ProtocolError(
        f"object {obj.name}: orbit16 needs {count} views at elevation {elevation_deg:g} deg spaced "
        f"{step:g} deg in azimuth; found {len(ring)} view(s) at that elevation "
        "(render the object with the orbit cameras, see docs/evaluation.md)")


def select_views(obj: EvalObject, protocol: str = "random", input_view: str | int | None = None,
                 num_targets: int | None = None, seed: int = 0) -> ViewTask:
    """Choose the input view and target views of ``obj`` for ``protocol``.

    * ``random``: input = ``input_view`` or a random view; targets = ``num_targets`` random other views
      (all others by default), as in the paper. Orbit views (:attr:`EvalObject.extra_views`) are neither
      drawn as input nor as targets: they are not from the reference camera distribution.
    * ``orbit16``: targets = the 16 views of the elevation-30 orbit, minus the input view if it is one of
      them; input = ``input_view`` or the first orbit view (lowest file name).
    """
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    rng = np.random.default_rng(object_seed(seed, obj.name))
    if protocol == "random":
        reference = [v for v in obj.views if v not in obj.extra_views]
        inp = _match_view(obj, input_view) if input_view is not None else str(rng.choice(reference))
        pool = [v for v in reference if v != inp]
        if not pool:
            raise ProtocolError(f"object {obj.name}: needs at least two views")
    else:
        ring = find_orbit(obj)
        inp = _match_view(obj, input_view) if input_view is not None else min(ring)
        pool = [v for v in ring if v != inp]
    if num_targets is not None and num_targets < len(pool):
        if num_targets < 1:
            raise ProtocolError(f"--targets must be at least 1, got {num_targets}")
        keep = set(rng.choice(len(pool), size=num_targets, replace=False).tolist())
        pool = [v for i, v in enumerate(pool) if i in keep]
    rel = [relative_pose(obj.poses[t], obj.poses[inp]) for t in pool]
    return ViewTask(obj, inp, pool, rel)


def find_side_views(obj: EvalObject, elevation_deg: float = ORBIT_ELEVATION_DEG,
                    tol_deg: float = ORBIT_TOLERANCE_DEG) -> tuple[str, str, str] | None:
    """(input, +90, -90): the view at ``elevation_deg`` nearest azimuth 0 that has partners at +-90 deg azimuth.

    Serves the orbit side check (docs/evaluation.md); ``zero1to3 render --orbit 4 --orbit-elevation 30``
    renders such views (azimuth 0, 90, 180, 270; so does ``--orbit 16``). None when the object has none.
    """
    ring: list[tuple[float, str]] = []
    for v in obj.views:
        polar, azimuth, _ = spherical_of_camera(obj.poses[v])
        if abs((90.0 - math.degrees(polar)) - elevation_deg) <= tol_deg:
            ring.append((math.degrees(azimuth) % 360.0, v))

    def gap(a: float, b: float) -> float:
        return abs((a - b + 180.0) % 360.0 - 180.0)

    for start, view in sorted(ring, key=lambda av: (gap(av[0], 0.0), av[1])):
        plus = [v for a, v in ring if gap(a, start + 90.0) <= tol_deg]
        minus = [v for a, v in ring if gap(a, start - 90.0) <= tol_deg]
        if plus and minus:
            return view, plus[0], minus[0]
    return None
