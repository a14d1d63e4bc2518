"""Visual hulls: the mask-only baseline mesh for evaluation, and the carving used to estimate elevation.

The baseline answers "how much does the diffusion prior add over the silhouette alone?": a 3D metric
that the reconstruction does not beat against this baseline means the prior did not help.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import trimesh
from scipy import ndimage
from skimage import measure

from ..camera import REFERENCE_FOV_DEG, focal_length_pixels
from .field import VoxelField
from zero1to3.camera import camera_at


def _grid_points(resolution: int, bound: float) -> np.ndarray:
    lin = np.linspace(-bound, bound, resolution)
    z, y, x = np.meshgrid(lin, lin, lin, indexing="ij")
    return np.stack([x, y, z], axis=-1).reshape(-1, 3)


def project(points: np.ndarray, world_to_camera: np.ndarray, size: int, fov_deg: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x right, y down) and camera depth of world points (Blender camera)."""
    cam = points @ world_to_camera[:, :3].T + world_to_camera[:, 3]
    depth = -cam[:, 2]
    focal = focal_length_pixels(size, fov_deg)
    safe = np.where(depth > 1e-6, depth, 1e-6)
    return np.stack([size / 2 + focal * cam[:, 0] / safe, size / 2 - focal * cam[:, 1] / safe], -1), depth


def visual_hull(masks: list[np.ndarray], cameras: list[np.ndarray], fov_deg: float = REFERENCE_FOV_DEG,
                resolution: int = 64, bound: float = 1.0) -> np.ndarray:
    """Boolean volume [Z, Y, X] of grid points whose projection falls inside every mask."""
    pts = _grid_points(resolution, bound)
    inside = np.ones(len(pts), bool)
    for mask, cam in zip(masks, cameras):
        size = mask.shape[0]
        uv, depth = project(pts, np.asarray(cam, np.float64), size, fov_deg)
        ij = np.floor(uv).astype(np.int64)
        ok = (depth > 0) & (ij[:, 0] >= 0) & (ij[:, 0] < size) & (ij[:, 1] >= 0) & (ij[:, 1] < size)
        hit = np.zeros(len(pts), bool)
        hit[ok] = mask[ij[ok, 1], ij[ok, 0]] > 0.5
        inside &= hit
    return inside.reshape(resolution, resolution, resolution)


def hull_silhouette_iou(volume: np.ndarray, masks: list[np.ndarray], cameras: list[np.ndarray],
                        fov_deg: float = REFERENCE_FOV_DEG, bound: float = 1.0) -> list[float]:
    """IoU between each mask and the silhouette of ``volume`` seen from its camera.

    A visual hull carved with correct cameras reprojects onto (nearly) its masks; wrong cameras carve
    away parts that some view saw, so the silhouettes shrink: this is the elevation score.
    """
    field = VoxelField(volume.shape[0], bound=bound, init="empty")
    vol = torch.from_numpy(volume.astype(np.float32))
    ious = []
    for mask, cam in zip(masks, cameras):
        sil = field.max_density(cam, fov_deg, mask.shape[0], volume=vol).numpy() > 0.5
        target = mask > 0.5
        union = np.logical_or(sil, target).sum()
        ious.append(float(np.logical_and(sil, target).sum() / union) if union else 0.0)
    return ious


def volume_to_mesh(volume: np.ndarray, bound: float = 1.0, smooth: float = 1.0) -> trimesh.Trimesh:
    """Mesh of an indicator volume [Z, Y, X] (level 0.5 of the smoothed indicator: a fixed level is
    right here because an indicator, unlike a learned density, has a known scale)."""
    vol = ndimage.gaussian_filter(volume.astype(np.float32), smooth) if smooth > 0 else volume.astype(np.float32)
    if vol.max() <= 0.5:
        raise ValueError("the visual hull is empty (mask empty or cameras do not see the box)")
    vol = np.pad(vol.transpose(2, 1, 0), 1)
    verts, faces, _, _ = measure.marching_cubes(vol, 0.5, gradient_direction="descent")
    verts = (verts - 1.0) * (2.0 * bound / (volume.shape[0] - 1)) - bound
    mesh = trimesh.Trimesh(verts, faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def baseline_mesh(mask: np.ndarray, kind: str = "hull", elevation_deg: float = 0.0, radius: float = 2.0,
                  fov_deg: float = REFERENCE_FOV_DEG, resolution: int = 96, bound: float = 1.0
                  ) -> trimesh.Trimesh:
    """A mesh from the reference mask alone (no diffusion prior), in the reconstruction's frame.

    ``kind="hull"``: the mask's viewing cone, cut to a depth slab as thick as the silhouette is wide
    (one view says nothing about depth; "as deep as wide" is the neutral guess). ``kind="sphere"``: the
    sphere at the origin whose projection has the mask's area.
    """
    mask = np.asarray(mask, np.float32)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"expected a square mask, got shape {mask.shape}")
    if (mask > 0.5).sum() < 4:
        raise ValueError("the reference mask is empty: no baseline to build")
    size = mask.shape[0]
    focal = focal_length_pixels(size, fov_deg)
    if kind == "sphere":
        pix_radius = math.sqrt((mask > 0.5).sum() / math.pi)
        r = radius * math.sin(math.atan(pix_radius / focal))
        return trimesh.creation.icosphere(subdivisions=4, radius=r)
    if kind != "hull":
        raise ValueError(f"unknown baseline {kind!r} (hull or sphere)")
    cam = camera_at(elevation_deg, 0.0, radius)
    cols = np.nonzero((mask > 0.5).any(0))[0]
    half_width = 0.5 * (cols.max() - cols.min() + 1) / focal * radius
    cone = visual_hull([mask], [cam], fov_deg, resolution, bound)
    _, depth = project(_grid_points(resolution, bound), cam, size, fov_deg)
    slab = (np.abs(depth - radius) <= half_width).reshape(cone.shape)
    return volume_to_mesh(cone & slab, bound)
