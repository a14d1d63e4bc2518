"""Field -> coloured triangle mesh: marching cubes at an automatically chosen iso level.

A fixed iso constant is the classic reason for empty or holey meshes from score distillation (SPEC §7):
the density scale of an optimised field is arbitrary. The level is therefore chosen per object, either so
that the mesh's silhouette seen from the reference camera best matches the reference mask (when the mask
is known), or from the density histogram (Otsu's threshold on log-density) otherwise.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy import ndimage
from skimage import measure
from skimage.filters import threshold_otsu

from zero1to3.media import mesh_for_gltf

from .field import DEFAULT_OCCUPANCY_THRESHOLD, VoxelField

log = logging.getLogger(__name__)

MESH_FORMATS = ("glb", "obj", "ply")


class EmptyMeshError(ValueError):
    """Mesh extraction found no surface; the message says why (empty field, level above every density)."""


@dataclass
class IsoChoice:
    """The chosen iso level and how: ``method`` is "silhouette" or "histogram"; ``score`` the mask IoU."""

    level: float
    method: str
    score: float | None = None

    def describe(self) -> str:
        extra = f", reference-mask IoU {self.score:.3f}" if self.score is not None else ""
        return f"iso level {self.level:.4g} ({self.method}{extra})"


def density_volume(field: VoxelField, smooth: float = 0.0) -> torch.Tensor:
    """The field's density grid [Z, Y, X] (no grad), optionally Gaussian-smoothed (``smooth`` in voxels)."""
    with torch.no_grad():
        sigma = field.sigma_grid().detach().float()
    if smooth > 0:
        sigma = torch.from_numpy(ndimage.gaussian_filter(sigma.cpu().numpy(), smooth)).to(sigma.device)
    return sigma


def _check_not_empty(sigma: torch.Tensor, min_density: float) -> None:
    peak = float(sigma.max())
    if not math.isfinite(peak):
        raise EmptyMeshError("the density field contains NaN/inf: the optimisation diverged "
                             "(lower the learning rate or the guidance weight)")
    if peak <= min_density:
        raise EmptyMeshError(f"the density field is empty (max density {peak:.3g} <= {min_density:.3g}): "
                             "nothing to mesh; the reconstruction did not converge (more steps, check the "
                             "input mask / elevation, lower sparsity weights)")


def iso_from_histogram(sigma: torch.Tensor, min_density: float = DEFAULT_OCCUPANCY_THRESHOLD) -> IsoChoice:
    """Otsu's threshold on the densities of non-empty voxels: the split between "air" and "object".

    Used when no reference mask is known. Linear (not log) densities: the long low-density tail of a
    soft surface would otherwise pull the level outwards.
    """
    _check_not_empty(sigma, min_density)
    values = sigma[sigma > min_density].cpu().numpy()
    if values.size < 8 or float(values.max() - values.min()) < 1e-6:
        return IsoChoice(max(float(values.min()) * 0.5 if values.size else min_density, min_density),
                         "histogram")
    return IsoChoice(float(threshold_otsu(values)), "histogram")


def iso_from_silhouette(field: VoxelField, sigma: torch.Tensor, world_to_camera, fov_deg: float,
                        mask: np.ndarray | torch.Tensor, num_candidates: int = 64,
                        min_density: float = DEFAULT_OCCUPANCY_THRESHOLD) -> IsoChoice:
    """The level whose iso-surface silhouette (from the reference camera) has the best IoU with ``mask``.

    One pass computes each pixel's maximum density along its ray; ``max > level`` is the silhouette
    for every candidate level at once. Among equally good levels the middle one (geometric) is taken.
    """
    _check_not_empty(sigma, min_density)
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32) if not isinstance(mask, torch.Tensor)
                             else mask.float()).squeeze()
    res = int(mask_t.shape[-1])
    peak = field.max_density(world_to_camera, fov_deg, res, volume=sigma).cpu()
    target = mask_t.cpu() > 0.5
    positive = sigma[sigma > min_density]
    lo = max(float(torch.quantile(positive.float().cpu()[:1_000_000], 0.05)), min_density)
    hi = float(positive.max()) * 0.95
    if hi <= lo:
        return iso_from_histogram(sigma, min_density)
    levels = np.geomspace(lo, hi, num_candidates)
    ious = []
    for level in levels:
        sil = peak > level
        union = (sil | target).sum().item()
        ious.append((sil & target).sum().item() / union if union else 0.0)
    ious = np.asarray(ious)
    best = ious.max()
    good = np.nonzero(ious >= best - 1e-3)[0]
    idx = int(good[len(good) // 2])
    return IsoChoice(float(levels[idx]), "silhouette", float(ious[idx]))


def extract_mesh(field: VoxelField, level: float | None = None, *, reference: tuple | None = None,
                 smooth: float = 0.5, keep_largest: bool = True, colors: bool = True,
                 min_density: float = DEFAULT_OCCUPANCY_THRESHOLD) -> tuple[trimesh.Trimesh, IsoChoice]:
    """Marching cubes of the field's density; returns the mesh (world units) and the iso level used.

    ``level=None`` chooses it automatically: by silhouette when ``reference=(world_to_camera, fov_deg,
    mask)`` is given, else from the histogram. ``smooth`` Gaussian-smooths the density (in voxels) first,
    as the paper does, which removes single-voxel speckle. ``keep_largest`` keeps the largest connected
    component (floaters from score distillation are removed). Raises :class:`EmptyMeshError` rather than
    return an empty mesh.
    """
    sigma = density_volume(field, smooth)
    if level is not None:
        _check_not_empty(sigma, min_density)
        choice = IsoChoice(float(level), "given")
    elif reference is not None:
        choice = iso_from_silhouette(field, sigma, *reference, min_density=min_density)
    else:
        choice = iso_from_histogram(sigma, min_density)
    if float(sigma.max()) <= choice.level:
        raise EmptyMeshError(f"no density reaches the iso level {choice.level:.4g} "
                             f"(max {float(sigma.max()):.4g}): the field is empty at that level")
    # Marching cubes on an (x, y, z)-ordered volume, padded with zeros so the surface is closed where
    # the object touches the box.
    volume = np.pad(sigma.permute(2, 1, 0).cpu().numpy().astype(np.float32), 1)
    verts, faces, _normals, _ = measure.marching_cubes(volume, level=choice.level,
                                                       gradient_direction="descent")
    verts = (verts - 1.0) * field.voxel_size - field.bound
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    if keep_largest and len(mesh.faces):
        parts = mesh.split(only_watertight=False)
        if len(parts) > 1:
            areas = [p.area for p in parts]
            log.info("mesh: %d connected components; keeping the largest (%.1f%% of the area)",
                     len(parts), 100.0 * max(areas) / sum(areas))
            mesh = parts[int(np.argmax(areas))]
    if len(mesh.faces) == 0:
        raise EmptyMeshError(f"marching cubes at {choice.describe()} produced no faces")
    if mesh.volume < 0:
        mesh.invert()
    if colors:
        with torch.no_grad():
            pts = torch.as_tensor(np.asarray(mesh.vertices, dtype=np.float32), device=field.density.device)
            _, rgb, _ = field.query(pts.clamp(-field.bound, field.bound))
        rgba = np.concatenate([(rgb.cpu().numpy() * 255).round().astype(np.uint8),
                               np.full((len(rgb), 1), 255, np.uint8)], axis=1)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return mesh, choice


def export_mesh(mesh: trimesh.Trimesh, path: str | Path, file_format: str | None = None) -> Path:
    """Write ``mesh`` as .glb (default), .obj or .ply, with vertex colours; returns the path written.

    GLB is turned +Y up with linear vertex colours as glTF requires (zero1to3.media.mesh_for_gltf); OBJ and
    PLY keep our +Z up and sRGB colours. The file appears complete or not at all (temp file + rename).
    """
    path = Path(path)
    fmt = (file_format or path.suffix.lstrip(".") or "glb").lower()
    if fmt not in MESH_FORMATS:
        raise ValueError(f"unsupported mesh format {fmt!r}; choose one of {', '.join(MESH_FORMATS)}")
    if path.suffix.lower() != f".{fmt}":
        path = path.with_suffix(f".{fmt}")
    if len(mesh.faces) == 0:
        raise EmptyMeshError("refusing to write an empty mesh")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (mesh_for_gltf(mesh) if fmt == "glb" else mesh).export(file_type=fmt)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
