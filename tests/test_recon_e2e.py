"""End-to-end image -> mesh with stand-in pipelines (CPU, seconds), the CLI, elevation and baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from zero1to3.recon.baseline import baseline_mesh
from zero1to3.recon.config import ReconConfig
from zero1to3.recon.elevation import estimate_elevation
from recon_doubles import FakePipeline, OraclePipeline
from zero1to3.recon.field import VoxelField
from zero1to3.recon.metrics import evaluate_mesh
from zero1to3.recon.reconstruct import reconstruct
from zero1to3.camera import camera_at
from zero1to3.recon.views import prepare_reference

TINY = dict(steps=10, batch_size=2, grid_resolutions=(24, 32), render_resolutions=(24, 32),
            milestones=(0.0, 0.5), occupancy_every=4)


def object_field(res: int = 40) -> VoxelField:
    """An asymmetric object: a box with a ball on one corner of its top, coloured by position."""
    field = VoxelField(res, init="empty")
    c = field.coordinates()
    half = torch.tensor([0.45, 0.25, 0.3])
    q = c.abs() - half
    box = q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
    ball = (c - torch.tensor([0.25, 0.1, 0.4])).norm(dim=-1) - 0.22
    # A density ramp one voxel wide: a crisp surface, no fog around it.
    field.set_density(100 * (-torch.minimum(box, ball) / field.voxel_size + 0.5).clamp(0, 1) + 1e-4)
    with torch.no_grad():
        col = torch.stack([torch.sigmoid(3 * c[..., 0]), torch.sigmoid(3 * c[..., 1]),
                           torch.sigmoid(-3 * c[..., 2])]).clamp(0.05, 0.95)
        field.color.copy_(torch.logit(col)[None])
    return field


def input_image(field: VoxelField, elevation: float, size: int = 32) -> np.ndarray:
    with torch.no_grad():
        rgb = field.render(camera_at(elevation, 0.0, 2.0), 49.1, size).rgb
    return (rgb.numpy() * 255).round().astype(np.uint8)


def test_reconstruct_with_fake_pipe_gives_mesh_and_outputs(tmp_path) -> None:
    gt = object_field()
    pipe = FakePipeline(image_size=32)
    result = reconstruct(pipe, input_image(gt, 0.0), ReconConfig(**TINY), preview_dir=tmp_path / "prev",
                         preview_every=5, progress=False)
    assert len(result.mesh.faces) > 0 and len(result.mesh.vertices) > 0
    assert result.field.resolution == 32
    assert {"prepare", "optimise", "mesh", "total"} <= set(result.timings)
    assert result.history and all(np.isfinite(v) for v in result.history[-1].values())
    assert sorted(p.name for p in (tmp_path / "prev").iterdir()) == ["step_00000.png", "step_00005.png",
                                                                    "step_00009.png"]
    paths = result.save(tmp_path / "out", mesh_format="obj", turntable_frames=4, turntable_resolution=24)
    assert paths["mesh"].suffix == ".obj" and len(trimesh.load(paths["mesh"], force="mesh").faces) > 0
    settings = json.loads(paths["settings"].read_text())
    assert settings["config"]["steps"] == 10 and settings["iso"]["method"] == "silhouette"
    assert settings["elevation_deg"] == 0.0 and settings["timings"]["total"] > 0
    assert paths["turntable"].stat().st_size > 0 and (tmp_path / "out" / "field.safetensors").exists()


def test_oracle_reconstruction_recovers_the_object() -> None:
    """With a pipe that knows the object, 40 steps must already recover a box-like shape."""
    gt = object_field()
    elevation = 10.0
    pipe = OraclePipeline(gt, elevation, 2.0, 49.1, image_size=32)
    cfg = ReconConfig(**dict(TINY, steps=40, lr=0.1), elevation_deg=elevation)
    result = reconstruct(pipe, input_image(gt, elevation), cfg, progress=False)
    gt_mesh, _ = __import__("zero1to3.recon.mesh", fromlist=["x"]).extract_mesh(gt, level=50.0, smooth=0)
    m = evaluate_mesh(result.mesh, gt_mesh, normalize=False, num_points=4000, iou_resolution=48)
    assert m.iou > 0.4, m


def test_reconstruct_is_reproducible_for_a_seed() -> None:
    pipe, img = FakePipeline(image_size=32), input_image(object_field(24), 0.0)
    cfg = ReconConfig(**dict(TINY, steps=3, batch_size=1))
    a = reconstruct(pipe, img, cfg, progress=False)
    b = reconstruct(pipe, img, cfg, progress=False)
    assert torch.equal(a.field.density, b.field.density)


def test_estimate_elevation_with_oracle_picks_truth() -> None:
    gt = object_field()
    for truth in (0.0, 30.0):
        pipe = OraclePipeline(gt, truth, 2.0, 49.1, image_size=48)
        ref = prepare_reference(input_image(gt, truth, 48), 48)
        est = estimate_elevation(pipe, ref, [-20.0, 0.0, 30.0], 2.0, 49.1, mask_resolution=40,
                                 azimuths_deg=(90.0, 180.0, 270.0))
        assert est.elevation_deg == truth, est
        assert str(truth).rstrip("0").rstrip(".") in est.reason and est.method == "silhouette consistency"


def test_estimate_elevation_flat_scores_fall_back_to_default() -> None:
    ball = VoxelField(24, init="blob")
    pipe = OraclePipeline(ball, 0.0, 2.0, 49.1, image_size=32)
    ref = prepare_reference(input_image(ball, 0.0), 32)
    est = estimate_elevation(pipe, ref, [-10.0, 10.0], 2.0, 49.1, default_deg=5.0, mask_resolution=32,
                             azimuths_deg=(90.0, 180.0), elevation_offsets_deg=(0.0,), min_margin=0.05)
    assert est.elevation_deg == 5.0 and "default" in est.reason


def test_baseline_meshes() -> None:
    gt = object_field()
    ref = prepare_reference(input_image(gt, 0.0, 48), 48)
    mask = ref.mask.numpy()
    hull = baseline_mesh(mask, "hull", resolution=48)
    sphere = baseline_mesh(mask, "sphere")
    assert len(hull.faces) > 0 and hull.is_watertight and len(sphere.faces) > 0
    # seen from the input camera, the hull covers exactly the mask's extent
    from zero1to3.recon.baseline import project

    uv, _ = project(np.asarray(hull.vertices), camera_at(0.0, 0.0, 2.0), 48, 49.1)
    ys, xs = np.nonzero(mask > 0.5)
    assert abs(uv[:, 0].min() - xs.min()) < 2.5 and abs(uv[:, 0].max() - (xs.max() + 1)) < 2.5
    assert abs(uv[:, 1].min() - ys.min()) < 2.5 and abs(uv[:, 1].max() - (ys.max() + 1)) < 2.5
    # it is a bounded slab, not the whole viewing cone through the box
    assert (hull.bounds[1] - hull.bounds[0])[0] < 1.0
    with pytest.raises(ValueError, match="empty"):
        baseline_mesh(np.zeros((16, 16)), "hull")


def test_prepare_reference_alpha_and_errors(tmp_path) -> None:
    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[10:30, 5:25] = (255, 255, 255, 255)                  # a white object: only alpha can tell
    ref = prepare_reference(rgba, 32)
    assert ref.mask_source == "alpha channel" and 0.2 < float(ref.mask.mean()) < 0.5
    with pytest.raises(ValueError, match="no object"):
        prepare_reference(np.full((16, 16, 3), 255, np.uint8), 16)
    with pytest.raises(FileNotFoundError):
        prepare_reference(tmp_path / "missing.png", 16)


def test_cli_recon_runs_with_stand_in_pipe(tmp_path, monkeypatch, capsys) -> None:
    from PIL import Image

    from zero1to3.cli import build_parser
    from zero1to3.cli.common import CLIError
    from zero1to3.cli import recon as recon_cli

    image = tmp_path / "in.png"
    Image.fromarray(input_image(object_field(), 0.0)).save(image)
    monkeypatch.setattr(recon_cli, "load_pipeline", lambda args: FakePipeline(image_size=32))
    parser = build_parser()
    args = parser.parse_args(["recon", str(image), "-o", str(tmp_path / "o"), "--steps", "4", "--format", "ply",
                              "--no-progress", "--no-turntable", "--near-weight", "0", "--batch-size", "1",
                              "--elevation", "5", "--preview", "--no-preprocess"])
    build_config = recon_cli.build_config
    cfg = build_config(args)
    assert cfg.w_near == 0.0 and cfg.elevation_deg == 5.0 and cfg.steps == 4
    fast = build_config(parser.parse_args(["recon", str(image), "-o", "x"]), "cpu")  # default on a CPU
    full = build_config(parser.parse_args(["recon", str(image), "-o", "x"]), "cuda")  # default on a GPU
    assert (fast.steps, fast.batch_size, fast.grid_resolutions) == (60, 2, (32, 48))
    assert full == ReconConfig(preprocess=True)
    chosen = build_config(parser.parse_args(["recon", str(image), "-o", "x", "--preset", "full", "--steps", "7"]),
                          "cpu")
    assert chosen.steps == 7 and chosen.grid_resolutions == ReconConfig().grid_resolutions
    monkeypatch.setattr(recon_cli, "build_config", lambda a, device="cpu": ReconConfig(**dict(
        TINY, steps=4, batch_size=1, w_near=0.0, elevation_deg=5.0, preprocess=False)))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mesh.ply" in out and (tmp_path / "o" / "mesh.ply").exists() and "preset fast (default on cpu)" in out
    assert (tmp_path / "o" / "preview").is_dir()
    with pytest.raises(SystemExit):
        parser.parse_args(["recon", str(image), "-o", "x", "--elevation", "3", "--estimate-elevation"])
    bad = parser.parse_args(["recon", str(image), "-o", "x", "--radius", "1.0"])
    with pytest.raises(CLIError, match="radius"):
        build_config(bad)
    missing = parser.parse_args(["recon", str(tmp_path / "nope.png"), "-o", "x"])
    with pytest.raises(CLIError, match="not found"):
        recon_cli.run(missing)


def test_reconstruct_with_tiny_real_pipeline(tiny_pipe) -> None:
    """Three steps through the real (random-weight, tiny) Zero123Pipeline: the interface holds."""
    pipe = tiny_pipe
    img = input_image(object_field(), 0.0, pipe.image_size)
    cfg = ReconConfig(**dict(TINY, steps=3, batch_size=2))
    result = reconstruct(pipe, img, cfg, progress=False)
    assert len(result.mesh.faces) > 0 and result.settings["pose_encoding"] == "zero123"
