"""Losses of image-to-3D: finite, right sign, and they decrease on trivial problems."""

from __future__ import annotations

import math

import pytest
import torch

from zero1to3.camera import RelativePose
from zero1to3.recon.config import ReconConfig
from recon_doubles import FakePipeline, OraclePipeline
from zero1to3.recon.field import VoxelField
from zero1to3.recon.losses import (near_view_loss, opacity_entropy_loss, reference_losses, sample_timestep,
                                   sds_loss, sparsity_loss, timestep_range)
from zero1to3.camera import camera_at
from zero1to3.recon.views import pose_vector


def test_timestep_window_anneals_as_spec_scaled_to_steps() -> None:
    cfg = ReconConfig(steps=600)
    assert timestep_range(0, cfg) == pytest.approx((0.4, 0.85))
    assert timestep_range(200, cfg) == pytest.approx((0.2, 0.5))
    assert timestep_range(599, cfg) == pytest.approx((0.2, 0.5))
    assert timestep_range(100, cfg) == pytest.approx((0.3, 0.675))
    short = ReconConfig(steps=60)                       # same schedule, scaled: annealed by step 20
    assert timestep_range(20, short) == pytest.approx((0.2, 0.5))
    gen = torch.Generator().manual_seed(0)
    ts = [sample_timestep(0, cfg, 1000, gen) for _ in range(200)]
    assert 400 <= min(ts) and max(ts) <= 850


def test_pose_vector_conventions() -> None:
    # camera moved up (higher elevation) = negative polar change; azimuth measured from the input view
    v = pose_vector(30.0, 90.0, 2.0, ref_elevation_deg=10.0, ref_radius=2.0)
    assert v == pytest.approx(RelativePose.from_degrees(-20.0, 90.0, 0.0).vector())
    assert v[0] < 0 and v[1] == pytest.approx(1.0) and abs(v[2]) < 1e-6
    s = pose_vector(0.0, 0.0, 2.0, 30.0, 2.0, stable=True)
    assert s[3] == pytest.approx(math.radians(60.0))


def test_sds_through_fake_pipe_is_finite_and_reaches_the_image() -> None:
    pipe = FakePipeline(image_size=32)
    cond = pipe.encode_condition(torch.zeros(1, 3, 32, 32))
    img = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss, info = sds_loss(pipe, img, cond, torch.zeros(2, 4), 500, 3.0, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and info.timestep == 500
    assert img.grad is not None and torch.isfinite(img.grad).all() and float(img.grad.abs().sum()) > 0


def test_sds_with_oracle_pulls_render_towards_the_true_view() -> None:
    gt = VoxelField(24)                                     # the default blob, coloured
    with torch.no_grad():
        gt.color.fill_(-1.0)
    pipe = OraclePipeline(gt, ref_elevation_deg=0.0, ref_radius=2.0, fov_deg=49.1, image_size=32)
    pose = torch.from_numpy(pose_vector(20.0, 90.0, 2.0, 0.0, 2.0))[None]
    target = (pipe.render(pose.numpy()) + 1) / 2
    img = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    opt = torch.optim.Adam([img], lr=0.05)
    gen = torch.Generator().manual_seed(0)
    cond = pipe.encode_condition(torch.zeros(1, 3, 32, 32))
    start = float((img.detach() - target).pow(2).mean())
    for _ in range(40):
        loss, _ = sds_loss(pipe, img, cond, pose, 300, 3.0, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float((img.detach() - target).pow(2).mean()) < 0.3 * start


def test_reference_losses_zero_at_match_positive_otherwise() -> None:
    ref_rgb = torch.rand(3, 32, 32)
    ref_mask = (torch.rand(32, 32) > 0.5).float()
    rgb = torch.nn.functional.interpolate(ref_rgb[None], size=(16, 16), mode="area")[0].permute(1, 2, 0)
    alpha = torch.nn.functional.interpolate(ref_mask[None, None], size=(16, 16), mode="area")[0, 0]
    l_rgb, l_mask = reference_losses(rgb, alpha, ref_rgb, ref_mask)
    assert float(l_rgb) < 1e-10 and float(l_mask) < 1e-10
    l_rgb, l_mask = reference_losses(1 - rgb, 1 - alpha, ref_rgb, ref_mask)
    assert float(l_rgb) > 0.01 and float(l_mask) > 0.01
    assert float(near_view_loss(rgb, ref_rgb)) < 1e-10


def test_regularisers_sign() -> None:
    empty, full, half = torch.zeros(8, 8), torch.ones(8, 8), torch.full((8, 8), 0.5)
    assert float(sparsity_loss(empty)) == 0.0 and float(sparsity_loss(full)) == 1.0
    assert float(opacity_entropy_loss(half)) == pytest.approx(math.log(2), rel=1e-4)
    assert float(opacity_entropy_loss(full)) < 1e-3 and float(opacity_entropy_loss(empty)) < 1e-3


def test_reference_rgb_loss_decreases_when_fitting_a_field() -> None:
    """Trivial problem: fit a field to one view of itself; the reference losses must fall."""
    target = VoxelField(16, blob_radius=0.4)
    with torch.no_grad():
        target.color.fill_(-2.0)
        cam = camera_at(10.0, 0.0, 2.0)
        out = target.render(cam, 49.1, 16)
    ref_rgb, ref_mask = out.rgb.permute(2, 0, 1), out.alpha
    field = VoxelField(16, init="empty")
    opt = torch.optim.Adam(field.parameters(), lr=0.3)
    losses = []
    for _ in range(30):
        r = field.render(cam, 49.1, 16, skip_empty=False)
        l_rgb, l_mask = reference_losses(r.rgb, r.alpha, ref_rgb, ref_mask)
        loss = l_rgb + l_mask
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ReconConfig(steps=0)
    with pytest.raises(ValueError, match="radius"):
        ReconConfig(radius=1.2)
    with pytest.raises(ValueError):
        ReconConfig(w_rgb=-1.0)
    with pytest.raises(ValueError):
        ReconConfig(grid_resolutions=(32,), render_resolutions=(32, 64), milestones=(0.0,))
    cfg = ReconConfig(steps=100)
    assert cfg.stage(0) == 0 and cfg.stage(30) == 1 and cfg.stage(99) == 2
    assert ReconConfig.from_dict(cfg.to_dict()) == cfg
