"""Mesh extraction: an analytic sphere comes out as a sphere; empty fields raise; exports round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from zero1to3.camera import focal_length_pixels, look_at, spherical_to_cartesian
from zero1to3.recon.field import VoxelField
from zero1to3.recon.mesh import EmptyMeshError, export_mesh, extract_mesh, iso_from_histogram

R = 0.5


def soft_sphere(res: int = 64, centre=(0.0, 0.0, 0.0), radius: float = R, peak: float = 50.0) -> torch.Tensor:
    field = VoxelField(res, init="empty")
    d = (field.coordinates() - torch.tensor(centre)).norm(dim=-1) - radius
    return peak * torch.sigmoid(-d / 0.03)


def field_of(sigma: torch.Tensor) -> VoxelField:
    field = VoxelField(sigma.shape[0], init="empty")
    field.set_density(sigma)
    return field


def sphere_mask(res: int, dist: float = 2.0, fov: float = 49.1) -> np.ndarray:
    rp = focal_length_pixels(res, fov) * math.tan(math.asin(R / dist))
    yy, xx = np.mgrid[:res, :res] + 0.5
    return ((xx - res / 2) ** 2 + (yy - res / 2) ** 2 < rp ** 2).astype(np.float32)


def test_sphere_radius_within_two_percent_histogram_and_silhouette() -> None:
    field = field_of(soft_sphere())
    mesh, iso = extract_mesh(field)
    assert iso.method == "histogram"
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radii.mean() - R) / R < 0.02 and radii.std() < 0.01
    assert mesh.is_watertight and mesh.volume > 0
    cam = look_at(spherical_to_cartesian(math.radians(70), 0.3, 2.0))
    mesh, iso = extract_mesh(field, reference=(cam, 49.1, sphere_mask(64)))
    assert iso.method == "silhouette" and iso.score > 0.95
    assert abs(np.linalg.norm(mesh.vertices, axis=1).mean() - R) / R < 0.02


def test_largest_component_and_colours() -> None:
    sigma = soft_sphere(48) + soft_sphere(48, centre=(0.75, 0.75, 0.75), radius=0.1)
    field = field_of(sigma)
    with torch.no_grad():
        field.color.fill_(2.0)
    kept, _ = extract_mesh(field, level=25.0)
    both, _ = extract_mesh(field, level=25.0, keep_largest=False)
    assert len(both.split(only_watertight=False)) == 2
    assert len(kept.split(only_watertight=False)) == 1
    assert np.linalg.norm(kept.vertices, axis=1).max() < 0.6
    rgba = kept.visual.vertex_colors
    assert rgba.shape == (len(kept.vertices), 4) and int(np.median(rgba[:, 0])) == round(255 / (1 + math.exp(-2)))


def test_empty_field_raises_clear_error() -> None:
    field = VoxelField(16, init="empty")
    with pytest.raises(EmptyMeshError, match="empty"):
        extract_mesh(field)
    with pytest.raises(EmptyMeshError, match="empty"):
        iso_from_histogram(field.sigma_grid().detach())
    sphere = field_of(soft_sphere(16))
    with pytest.raises(EmptyMeshError):
        extract_mesh(sphere, level=1e6)
    nan = VoxelField(8, init="empty")
    with torch.no_grad():
        nan.density.fill_(float("nan"))
    with pytest.raises(EmptyMeshError, match="NaN"):
        extract_mesh(nan)


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_export_formats_roundtrip(tmp_path, fmt: str) -> None:
    mesh, _ = extract_mesh(field_of(soft_sphere(24)))
    path = export_mesh(mesh, tmp_path / "m", fmt)
    assert path.suffix == f".{fmt}" and path.stat().st_size > 0
    back = trimesh.load(path, force="mesh")
    assert len(back.faces) == len(mesh.faces)


def test_export_rejects_unknown_format_and_empty(tmp_path) -> None:
    mesh, _ = extract_mesh(field_of(soft_sphere(16)))
    with pytest.raises(ValueError, match="format"):
        export_mesh(mesh, tmp_path / "m.stl")
    with pytest.raises(EmptyMeshError):
        export_mesh(trimesh.Trimesh(), tmp_path / "e.glb")
