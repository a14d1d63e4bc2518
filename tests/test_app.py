"""Unit tests of the web demo's pure parts: presets, camera geometry and plot, cancellation, sampling."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from zero1to3 import app
from zero1to3.camera import RelativePose, cartesian_to_spherical, look_at
from zero1to3.pipeline import denoiser_steps
from zero1to3.preprocess import ImageInputError


def test_presets_match_camera_convention() -> None:
    assert app.preset_pose("left") == (0.0, -90.0, 0.0)
    assert app.preset_pose("Right") == (0.0, 90.0, 0.0)
    assert app.preset_pose("above")[0] < 0  # negative polar change moves the camera up
    assert app.preset_pose("below")[0] > 0
    assert app.preset_pose("behind")[1] == 180.0
    with pytest.raises(ValueError, match="unknown preset"):
        app.preset_pose("sideways")


def test_random_preset_stays_in_slider_ranges() -> None:
    rng = np.random.default_rng(0)
    draws = [app.preset_pose("random", rng) for _ in range(200)]
    for polar, azimuth, radius in draws:
        assert app.POLAR_RANGE[0] <= polar <= app.POLAR_RANGE[1]
        assert app.AZIMUTH_RANGE[0] <= azimuth <= app.AZIMUTH_RANGE[1]
        assert app.RADIUS_RANGE[0] <= radius <= app.RADIUS_RANGE[1]
    assert len(set(draws)) > 150


def test_clamp_pose() -> None:
    assert app.clamp_pose(120, -400, 2) == (90.0, -180.0, 0.5)
    with pytest.raises(ValueError, match="polar"):
        app.clamp_pose(float("nan"), 0, 0)


def test_right_preset_turns_camera_to_its_right() -> None:
    inp, tgt = app.camera_centers(*app.preset_pose("right"))
    right_axis = look_at(inp)[0, :3]
    assert np.dot(tgt - inp, right_axis) > 0.5


@pytest.mark.parametrize("polar,azimuth,radius", [(0, 90, 0), (30, -45, 0.2), (-60, 180, -0.4)])
def test_camera_centers_follow_slider_change(polar: float, azimuth: float, radius: float) -> None:
    inp, tgt = app.camera_centers(polar, azimuth, radius, input_elevation=10.0)
    p0, a0, r0 = cartesian_to_spherical(inp)
    p1, a1, r1 = cartesian_to_spherical(tgt)
    assert math.degrees(p0) == pytest.approx(80.0)
    assert math.degrees(p1 - p0) == pytest.approx(polar)  # + polar = camera moves down
    assert (math.degrees(a1 - a0) - azimuth) % 360 == pytest.approx(0.0, abs=1e-6)
    assert r1 - r0 == pytest.approx(radius)


def test_camera_centers_clip_at_the_pole() -> None:
    _, tgt = app.camera_centers(-90, 0, 0, input_elevation=30.0)  # would pass the top pole
    assert tgt[2] == pytest.approx(app.BASE_RADIUS)


def test_frustum_points_at_object() -> None:
    position = np.array([1.9, 0.0, 0.0])
    segments = app.frustum_segments(position, scale=0.4)
    assert segments.shape[1:] == (2, 3)
    apex_lines = segments[:4]
    assert np.allclose(apex_lines[:, 0], position)
    assert np.all(apex_lines[:, 1, 0] < position[0])  # the image plane lies toward the origin


def test_camera_figure_traces_and_title() -> None:
    pytest.importorskip("plotly")
    fig = app.camera_figure(20, -45, 0.1)
    names = {t.name for t in fig.data}
    assert {"object", "input camera", "target camera", "camera move"} <= names
    assert "azimuth -45" in fig.layout.title.text
    target = next(t for t in fig.data if t.name == "target camera")
    xyz = np.array([[x, y, z] for x, y, z in zip(target.x, target.y, target.z) if x is not None])
    _, expected = app.camera_centers(20, -45, 0.1)
    assert np.allclose(xyz[0], expected)
    assert fig.layout.uirevision == "keep"  # the user's rotation survives slider moves


def test_job_registry_cancels_only_its_session() -> None:
    jobs = app.JobRegistry()
    a, b = jobs.start("a"), jobs.start("b")
    assert jobs.cancel("a") and a.is_set() and not b.is_set()
    assert not jobs.cancel("a")  # already cancelled
    with pytest.raises(app.JobCancelled):
        app._check(a)
    app._check(b)
    jobs.finish("a", a)
    assert not jobs.cancel("a") and not jobs.cancel("nobody")


def test_examples_bundled_small_and_licensed() -> None:
    examples = app.example_images()
    assert 3 <= len(examples) <= 4
    assert sum(p.stat().st_size for p in examples) < 100_000
    assert "CC0" in (app.EXAMPLES_DIR / "LICENSE").read_text()
    for path in examples:
        crop = app.preprocess_preview(path, 0.7, size=64)
        assert crop.size == (64, 64)


def test_preview_errors_are_input_errors(tmp_path) -> None:
    from PIL import Image

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageInputError, match="cannot read"):
        app.preprocess_preview(bad)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    with pytest.raises(ImageInputError, match="no object found"):
        app.preprocess_preview(blank)
    with pytest.raises(ImageInputError, match="no image"):
        app.preprocess_preview(None)


def test_orbit_poses() -> None:
    poses = app.orbit_poses(10, 0.2, views=4)
    assert [round(p.degrees()[1]) for p in poses] == [0, 90, 180, 270]
    assert all(p.degrees()[0] == pytest.approx(10) and p.d_radius == pytest.approx(0.2) for p in poses)


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++"])
def test_sample_views_matches_pipeline_call(tiny_pipe, scheduler: str) -> None:
    image = app.example_images()[0]
    poses = [RelativePose.from_degrees(10, 90, 0.1), RelativePose.from_degrees(0, -30, 0)]
    steps: list[tuple[int, int]] = []
    kwargs = dict(num_samples=2, guidance_scale=3.0, num_inference_steps=4, scheduler=scheduler, seed=7)
    got = app.sample_views(tiny_pipe, image, poses, on_step=lambda i, n: steps.append((i, n)), **kwargs)
    want = tiny_pipe(image, poses, latents=app.per_sample_latents(tiny_pipe, 7, 2, len(poses)), **kwargs).array
    assert got.shape == want.shape == (2, 2, 64, 64, 3)
    np.testing.assert_array_equal(got, want)
    total = denoiser_steps(4, scheduler)
    assert steps == [(i, total) for i in range(1, total + 1)]


def test_sample_views_stops_when_cancelled(tiny_pipe) -> None:
    flag = threading.Event()
    calls = []

    def hook(i: int, n: int) -> None:
        calls.append(i)
        if i == 2:
            flag.set()
        app._check(flag)

    with pytest.raises(app.JobCancelled):
        app.sample_views(tiny_pipe, app.example_images()[0], [RelativePose.from_degrees(0, 90)],
                         num_samples=1, num_inference_steps=10, on_step=hook)
    assert calls == [1, 2]


def test_write_gif(tmp_path) -> None:
    import imageio.v2 as imageio

    frames = [np.full((64, 64, 3), v, np.uint8) for v in (0, 128, 255)]
    path = app.write_gif(frames, tmp_path / "o.gif")
    assert len(imageio.mimread(path)) == 3


def test_build_app_and_cli_fallback_note(tiny_pipe) -> None:
    pytest.importorskip("gradio")
    pytest.importorskip("plotly")
    import argparse

    from zero1to3.cli import build_parser
    from zero1to3.cli.demo import RANDOM_WEIGHTS_WARNING, load_demo_pipeline
    from zero1to3.pipeline import DEFAULT_MODEL_DIR

    args = build_parser().parse_args(["demo", "--port", "0"])
    assert args.host == "127.0.0.1" and args.share == "off" and args.func.__name__ == "run"
    if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        pipe, name, warning = load_demo_pipeline(argparse.Namespace(model=None, device=None))
        assert warning == RANDOM_WEIGHTS_WARNING and "random" in name
    demo = app.build_app(tiny_pipe, app.DemoInfo(model_name="tiny", warning="random weights"))
    config = demo.get_config_file() if hasattr(demo, "get_config_file") else demo.config
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"input-image", "gallery", "generate-btn", "camera-plot", "mesh-view", "model-warning"} <= ids


def test_recon_config_presets() -> None:
    ok, why = app.recon_status()
    if not ok:
        pytest.skip(why)
    fast = app.recon_config("fast (CPU preview)", 60, 15.0, 3)
    assert fast.steps == 60 and fast.elevation_deg == 15.0 and fast.seed == 3
    assert max(fast.grid_resolutions) <= 64 and fast.batch_size == 2
    full = app.recon_config("full (recipe, GPU)", 600, 0.0, 0)
    from zero1to3.recon.config import ReconConfig

    assert full.grid_resolutions == ReconConfig().grid_resolutions
    with pytest.raises(ValueError, match="unknown quality"):
        app.recon_config("ultra", 10, 0, 0)


def test_per_sample_seeds_reproduce_each_sample(tiny_pipe) -> None:
    image = app.example_images()[0]
    kwargs = dict(guidance_scale=3.0, num_inference_steps=3, scheduler="ddim")
    batch = app.sample_views(tiny_pipe, image, [RelativePose.from_degrees(0, 90)], num_samples=3, seed=5, **kwargs)
    alone = app.sample_views(tiny_pipe, image, [RelativePose.from_degrees(0, 90)], num_samples=1, seed=7, **kwargs)
    assert np.abs(batch[0, 2].astype(int) - alone[0, 0]).max() <= 1  # "seed 7" in the caption is sample 3 of seed 5
    assert not np.array_equal(batch[0, 0], batch[0, 1])


def test_preview_is_at_the_model_size_and_notes(tiny_pipe) -> None:
    preview = app.preprocess_preview(app.example_images()[0], 0.6, size=256, model_size=tiny_pipe.image_size)
    pixels = np.asarray(preview)
    assert preview.size == (256, 256)
    block = 256 // tiny_pipe.image_size  # square pixels: each model pixel is a block of equal values
    assert (pixels[::block, ::block] == pixels[block - 1::block, block - 1::block]).all()
    assert app.slow_choice_warning("full (recipe, GPU)", 600, on_gpu=False).startswith("⚠️")
    assert app.slow_choice_warning("full (recipe, GPU)", 600, on_gpu=True) == ""
    assert app.slow_choice_warning("fast (CPU preview)", 60, on_gpu=False) == ""
    assert app.slow_choice_warning("fast (CPU preview)", 400, on_gpu=False).startswith("⚠️")
    note = app.about_model(tiny_pipe, app.DemoInfo())
    assert f"{tiny_pipe.image_size}×{tiny_pipe.image_size} px" in note and app.MODEL_CARD in note
