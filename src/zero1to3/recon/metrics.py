"""3D metrics of a reconstructed mesh against a ground-truth mesh: Chamfer distance, volumetric IoU, F-score.

Conventions (stated because published numbers differ by them):

* Both meshes are first normalised to a unit box centred at the origin (largest bounding-box side 1),
  as the objects are in the training renders (SPEC §4); ``normalize=False`` skips it.
* Chamfer distance = mean distance from predicted surface samples to the GT surface **plus** mean
  distance from GT samples to the predicted surface (L2 distances, not squared), both halves returned.
* Volumetric IoU: both meshes are voxelised on the same ``resolution^3`` grid over the union of their
  bounding boxes by an inside test (ray parity along +Z per column), then |A and B| / |A or B|.
* F-score at threshold tau: precision = share of predicted samples within tau of GT, recall = share of
  GT samples within tau of the prediction, F = 2PR / (P + R).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree


@dataclass
class MeshMetrics:
    chamfer: float
    accuracy: float      # mean distance pred -> GT
    completeness: float  # mean distance GT -> pred
    iou: float
    fscore: float
    precision: float
    recall: float
    threshold: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def normalize_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """A copy scaled so the largest bounding-box side is 1 and translated so the box is centred at 0."""
    out = mesh.copy()
    lo, hi = out.bounds
    extent = float((hi - lo).max())
    if not np.isfinite(extent) or extent <= 0:
        raise ValueError("cannot normalise a mesh with an empty or degenerate bounding box")
    out.apply_translation(-(lo + hi) / 2.0)
    out.apply_scale(1.0 / extent)
    return out


def _check(mesh: trimesh.Trimesh, name: str) -> None:
    if mesh is None or len(mesh.faces) == 0:
        raise ValueError(f"{name} mesh is empty")


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points uniformly on the surface (area-weighted), reproducibly."""
    rng = np.random.default_rng(seed)
    tris = mesh.triangles
    area = mesh.area_faces
    face = rng.choice(len(tris), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = tris[face, 0], tris[face, 1], tris[face, 2]
    return a + u[:, None] * (b - a) + v[:, None] * (c - a)


def chamfer_distance(pred: trimesh.Trimesh, gt: trimesh.Trimesh, num_points: int = 30_000,
                     seed: int = 0) -> tuple[float, float, float]:
    """(chamfer, accuracy, completeness) from ``num_points`` surface samples of each mesh."""
    _check(pred, "predicted")
    _check(gt, "ground-truth")
    p, g = sample_surface(pred, num_points, seed), sample_surface(gt, num_points, seed + 1)
    acc = float(cKDTree(g).query(p)[0].mean())
    comp = float(cKDTree(p).query(g)[0].mean())
    return acc + comp, acc, comp


def fscore(pred: trimesh.Trimesh, gt: trimesh.Trimesh, threshold: float = 0.05, num_points: int = 30_000,
           seed: int = 0) -> tuple[float, float, float]:
    """(F-score, precision, recall) at distance ``threshold``."""
    p, g = sample_surface(pred, num_points, seed), sample_surface(gt, num_points, seed + 1)
    precision = float((cKDTree(g).query(p)[0] < threshold).mean())
    recall = float((cKDTree(p).query(g)[0] < threshold).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f, precision, recall


def inside_grid(mesh: trimesh.Trimesh, lo: np.ndarray, hi: np.ndarray, resolution: int) -> np.ndarray:
    """Boolean occupancy [X, Y, Z] of voxel centres of the box [lo, hi] split into ``resolution``^3 cells.

    Ray parity along +Z: for each (x, y) column, count the triangles crossed above each voxel centre.
    Needs a closed (watertight) mesh to be meaningful; no spatial index library is required.
    """
    step = (hi - lo) / resolution
    # A tiny irrational offset keeps columns off mesh edges and vertices (parity is then unambiguous).
    xs = lo[0] + (np.arange(resolution) + 0.5) * step[0] + 1.234567e-7 * step[0]
    ys = lo[1] + (np.arange(resolution) + 0.5) * step[1] + 2.345671e-7 * step[1]
    zs = lo[2] + (np.arange(resolution) + 0.5) * step[2]
    tris = np.asarray(mesh.triangles, dtype=np.float64)
    # Column index ranges covered by each triangle's xy bounding box.
    tmin, tmax = tris.min(1), tris.max(1)
    i0 = np.clip(np.ceil((tmin[:, 0] - xs[0]) / step[0]), 0, resolution).astype(np.int64)
    i1 = np.clip(np.floor((tmax[:, 0] - xs[0]) / step[0]), -1, resolution - 1).astype(np.int64)
    j0 = np.clip(np.ceil((tmin[:, 1] - ys[0]) / step[1]), 0, resolution).astype(np.int64)
    j1 = np.clip(np.floor((tmax[:, 1] - ys[0]) / step[1]), -1, resolution - 1).astype(np.int64)
    ni, nj = np.maximum(i1 - i0 + 1, 0), np.maximum(j1 - j0 + 1, 0)
    counts = ni * nj
    tri_id = np.repeat(np.arange(len(tris)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ci = i0[tri_id] + local // nj[tri_id]
    cj = j0[tri_id] + local % nj[tri_id]
    # Barycentric test of the column point (x, y) in the triangle's xy projection, then the z crossing.
    a, b, c = tris[tri_id, 0], tris[tri_id, 1], tris[tri_id, 2]
    px, py = xs[ci], ys[cj]
    v0x, v0y = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    v1x, v1y = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    v2x, v2y = px - a[:, 0], py - a[:, 1]
    den = v0x * v1y - v1x * v0y
    ok = np.abs(den) > 1e-18
    den = np.where(ok, den, 1.0)
    s = (v2x * v1y - v1x * v2y) / den
    t = (v0x * v2y - v2x * v0y) / den
    hit = ok & (s >= 0) & (t >= 0) & (s + t <= 1)
    zc = a[:, 2] + s * (b[:, 2] - a[:, 2]) + t * (c[:, 2] - a[:, 2])
    ci, cj, zc = ci[hit], cj[hit], zc[hit]
    # Crossings above each voxel centre, per column: parity odd -> inside.
    crossings = np.zeros((resolution, resolution, resolution + 1), np.int32)
    k = np.searchsorted(zs, zc)            # voxels with index < k lie below this crossing
    np.add.at(crossings, (ci, cj, k), 1)
    below_count = np.cumsum(crossings[:, :, ::-1], axis=2)[:, :, ::-1]   # crossings at index >= k
    return (below_count[:, :, 1:] % 2) == 1


def volume_iou(pred: trimesh.Trimesh, gt: trimesh.Trimesh, resolution: int = 128) -> float:
    """Volumetric IoU on a shared grid over the union of both bounding boxes."""
    _check(pred, "predicted")
    _check(gt, "ground-truth")
    lo = np.minimum(pred.bounds[0], gt.bounds[0])
    hi = np.maximum(pred.bounds[1], gt.bounds[1])
    pad = (hi - lo) * 0.02 + 1e-6
    lo, hi = lo - pad, hi + pad
    a = inside_grid(pred, lo, hi, resolution)
    b = inside_grid(gt, lo, hi, resolution)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def evaluate_mesh(pred: trimesh.Trimesh, gt: trimesh.Trimesh, *, normalize: bool = True,
                  threshold: float = 0.05, num_points: int = 30_000, iou_resolution: int = 128,
                  seed: int = 0) -> MeshMetrics:
    """All three metrics; meshes normalised to the unit box first unless ``normalize=False``."""
    _check(pred, "predicted")
    _check(gt, "ground-truth")
    if normalize:
        pred, gt = normalize_mesh(pred), normalize_mesh(gt)
    cd, acc, comp = chamfer_distance(pred, gt, num_points, seed)
    f, p, r = fscore(pred, gt, threshold, num_points, seed)
    return MeshMetrics(chamfer=cd, accuracy=acc, completeness=comp,
                       iou=volume_iou(pred, gt, iou_resolution), fscore=f, precision=p, recall=r,
                       threshold=threshold)
