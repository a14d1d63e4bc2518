"""Files read back as written: GIF/MP4 timing from fps, the MP4 pre-check, GLB +Y up with linear colours."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import trimesh
from PIL import Image, ImageSequence

from zero1to3.media import (MediaError, check_animation_path, gif_delay_ms, linear_to_srgb, save_animation,
                            srgb_to_linear)
from zero1to3.recon.mesh import export_mesh


def _frames(n: int = 5, size: int = 24) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        f = np.full((size, size, 3), 255, np.uint8)
        f[:, i * 4:(i + 1) * 4] = (200, 30, 30)  # a bar that moves: frames differ (no GIF frame merging)
        frames.append(f)
    return frames


@pytest.mark.parametrize("fps, delay", [(5, 200), (6, 170), (10, 100), (20, 50), (200, 10)])
def test_gif_delay_comes_from_fps(tmp_path, fps, delay):
    assert gif_delay_ms(fps) == delay
    path = save_animation(tmp_path / "a.gif", _frames(), fps)
    gif = Image.open(path)
    assert gif.info["loop"] == 0 and gif.n_frames == 5
    read = [(frame.info["duration"], np.asarray(frame.convert("RGB"))) for frame in ImageSequence.Iterator(gif)]
    assert [d for d, _ in read] == [delay] * 5
    assert all(np.array_equal(a, b) for (_, a), b in zip(read, _frames()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]  # no temp file left behind
    assert path.stat().st_mode & 0o777 == 0o644  # an ordinary output file, not the temp file's private 0600


def test_bad_fps_and_suffix(tmp_path):
    with pytest.raises(MediaError, match="fps"):
        save_animation(tmp_path / "a.gif", _frames(), 0)
    with pytest.raises(MediaError, match="fps"):  # a failed write leaves no file, temp or final
        save_animation(tmp_path / "b.mp4", _frames(), float("nan"))
    assert not any(tmp_path.iterdir())
    with pytest.raises(MediaError, match=".gif or .mp4"):
        check_animation_path(tmp_path / "a.webm")


def test_mp4_timing(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as imageio

    path = save_animation(tmp_path / "a.mp4", _frames(8, 32), 8)
    reader = imageio.get_reader(path, format="FFMPEG")
    meta = reader.get_meta_data()
    frames = [f for f in reader]
    reader.close()
    assert meta["fps"] == pytest.approx(8.0) and len(frames) == 8
    assert meta["duration"] == pytest.approx(1.0, abs=0.13)
    assert np.abs(frames[3].astype(int) - _frames(8, 32)[3]).mean() < 12  # lossy, but the same picture


def test_mp4_without_encoder_fails_before_sampling(tmp_path, monkeypatch, capsys):
    import zero1to3.cli.nvs as nvs_cli
    from zero1to3.cli import main

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    monkeypatch.setattr(nvs_cli, "load_pipeline", lambda args: pytest.fail("the model was loaded"))
    image = tmp_path / "in.png"
    Image.fromarray(_frames(1)[0]).save(image)
    out = tmp_path / "orbit.mp4"
    assert main(["orbit", str(image), "-o", str(out), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "imageio-ffmpeg" in err and ".gif" in err
    assert not out.exists()


def test_srgb_round_trip():
    v = np.linspace(0, 1, 256)
    assert np.allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-9)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.2140, abs=1e-4)  # known value


def _tall_coloured_box() -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=(0.2, 0.4, 1.0))  # tallest along +Z, our up axis
    colours = np.zeros((len(mesh.vertices), 4), np.uint8)
    colours[:, :3] = np.where(mesh.vertices[:, 2:3] > 0, [200, 100, 50], [30, 160, 240])  # top / bottom
    colours[:, 3] = 255
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colours)
    return mesh


def _only_geometry(loaded) -> trimesh.Trimesh:
    if isinstance(loaded, trimesh.Scene):
        assert len(loaded.geometry) == 1
        node = loaded.graph.nodes_geometry[0]
        transform, name = loaded.graph[node]
        return loaded.geometry[name].copy().apply_transform(transform)
    return loaded


def test_glb_is_y_up_with_linear_colours(tmp_path):
    mesh = _tall_coloured_box()
    path = export_mesh(mesh, tmp_path / "m.glb")
    back = _only_geometry(trimesh.load(path))
    assert np.argmax(back.extents) == 1  # the tall axis is +Y in the file
    top = back.vertices[:, 1] > 0
    assert top.any() and (mesh.vertices[:, 2] > 0).sum() == top.sum()  # +Z became +Y (not -Y)
    assert np.allclose(sorted(back.extents), sorted(mesh.extents))
    colours = np.asarray(back.visual.vertex_colors)[:, :3].astype(np.float64) / 255.0
    shown = np.round(linear_to_srgb(colours) * 255.0)  # what a viewer displays
    assert np.abs(shown[top] - [200, 100, 50]).max() <= 2
    assert np.abs(shown[~top] - [30, 160, 240]).max() <= 3
    assert np.abs(np.asarray(back.visual.vertex_colors)[top][0, :3] - [200, 100, 50]).max() > 40  # stored linear


@pytest.mark.parametrize("fmt", ["ply", "obj"])
def test_ply_and_obj_keep_z_up_and_srgb(tmp_path, fmt):
    mesh = _tall_coloured_box()
    path = export_mesh(mesh, tmp_path / f"m.{fmt}")
    back = _only_geometry(trimesh.load(path, process=False))
    assert np.argmax(back.extents) == 2
    colours = np.asarray(back.visual.vertex_colors)[:, :3]
    top = back.vertices[:, 2] > 0
    assert np.array_equal(np.unique(colours[top], axis=0), [[200, 100, 50]])
    assert np.array_equal(np.unique(colours[~top], axis=0), [[30, 160, 240]])
