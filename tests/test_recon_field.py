"""Voxel field rendering: an analytic sphere must render as a disc of the right size at a known camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zero1to3.camera import focal_length_pixels, look_at, spherical_to_cartesian
from zero1to3.recon.field import VoxelField

FOV = 49.1
DIST = 2.0
RADIUS = 0.5


def sphere_field(res: int = 64, radius: float = RADIUS, density: float = 200.0) -> VoxelField:
    field = VoxelField(res, init="empty")
    sdf = field.coordinates().norm(dim=-1) - radius
    # A linear ramp one voxel wide: trilinear interpolation reproduces it exactly.
    field.set_density(density * (-sdf / field.voxel_size + 0.5).clamp(0, 1) + 1e-4)
    return field


def camera(polar_deg: float = 60.0, azimuth_deg: float = 30.0) -> np.ndarray:
    return look_at(spherical_to_cartesian(math.radians(polar_deg), math.radians(azimuth_deg), DIST))


@torch.no_grad()
def test_sphere_renders_disc_of_projected_radius() -> None:
    field, res = sphere_field(), 96
    out = field.render(camera(), FOV, res)
    expected = focal_length_pixels(res, FOV) * math.tan(math.asin(RADIUS / DIST))
    measured = math.sqrt(float((out.alpha > 0.5).sum()) / math.pi)
    pixel_per_voxel = field.voxel_size * focal_length_pixels(res, FOV) / (DIST - RADIUS)
    assert abs(measured - expected) < pixel_per_voxel, (measured, expected)
    # centred: the disc's centroid is the image centre
    ys, xs = np.nonzero(out.alpha.numpy() > 0.5)
    assert abs(xs.mean() + 0.5 - res / 2) < 0.5 and abs(ys.mean() + 0.5 - res / 2) < 0.5
    # white background outside, opaque inside; depth at the centre is the distance to the front
    assert float(out.rgb[0, 0].min()) == pytest.approx(1.0) and float(out.alpha[0, 0]) < 1e-3
    assert float(out.alpha[res // 2, res // 2]) > 0.99
    assert float(out.depth[res // 2, res // 2]) == pytest.approx(DIST - RADIUS, abs=1.5 * field.voxel_size)


@torch.no_grad()
def test_normals_face_the_camera_and_skipping_is_exact() -> None:
    field = sphere_field(48)
    cam = camera(80.0, 200.0)
    full = field.render(cam, FOV, 48, with_normals=True, skip_empty=False, min_transmittance=0.0)
    fast = field.render(cam, FOV, 48, with_normals=True)
    assert torch.allclose(full.alpha, fast.alpha, atol=2e-3)
    assert torch.allclose(full.rgb, fast.rgb, atol=2e-3)
    to_cam = torch.from_numpy(-cam[:, :3].T @ cam[:, 3]).float()
    to_cam = to_cam / to_cam.norm()
    centre = fast.normal[24, 24]
    assert float(centre @ to_cam) > 0.95


@torch.no_grad()
def test_batch_matches_single_and_upsample_keeps_image() -> None:
    field = sphere_field(32)
    cams = np.stack([camera(60, 0), camera(100, 120)])
    batch = field.render(cams, FOV, 24)
    for i in range(2):
        single = field.render(cams[i], FOV, 24)
        assert torch.allclose(batch.alpha[i], single.alpha, atol=1e-5)
    before = field.render(cams[0], FOV, 24).alpha
    field.upsample(48)
    assert field.resolution == 48 and field.occupancy.shape[-1] == 47
    after = field.render(cams[0], FOV, 24).alpha
    assert float((before - after).abs().mean()) < 0.02


def test_render_is_differentiable_and_tv_is_zero_for_constant() -> None:
    field = VoxelField(16)
    out = field.render(camera(), FOV, 16)
    (out.rgb.mean() + out.alpha.mean()).backward()
    assert field.density.grad is not None and float(field.density.grad.abs().sum()) > 0
    assert field.color.grad is not None and float(field.color.grad.abs().sum()) > 0
    const = VoxelField(8, init="empty")
    with torch.no_grad():
        assert float(const.total_variation()) == 0.0
        assert float(field.total_variation()) > 0.0


def test_state_roundtrip_and_bad_camera() -> None:
    field = sphere_field(16)
    copy = VoxelField.from_state(field.state())
    assert torch.equal(copy.density, field.density)
    with pytest.raises(ValueError):
        field.render(np.eye(3), FOV, 8)
