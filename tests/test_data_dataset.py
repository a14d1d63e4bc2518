"""Dataset writer/readers: released layout, poses, compositing, skip-and-report, splits, CLI."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from zero1to3.camera import RelativePose, camera_center, relative_pose_vectors
from zero1to3.cli import main
from zero1to3.data.dataset import list_objects, load_views_array, split_of
from zero1to3.preprocess import composite_on_white
from zero1to3.data.writer import render_dataset
from zero1to3.evaluation.views import load_rgb

pytest.importorskip("moderngl")

VIEWS, RES = 4, 32


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("renders")
    summary = render_dataset(root, 3, num_views=VIEWS, resolution=RES, seed=5, save_mesh=True, progress=False)
    assert sorted(summary.rendered) == ["proc_000000", "proc_000001", "proc_000002"] and not summary.failed
    return root


def _spherical_by_hand(rt: np.ndarray) -> tuple[float, float, float]:
    c = -rt[:, :3].T @ rt[:, 3]
    return math.atan2(math.hypot(c[0], c[1]), c[2]), math.atan2(c[1], c[0]), float(np.linalg.norm(c))


def test_layout_and_world_to_camera_poses(rendered: Path) -> None:
    folder = rendered / "proc_000001"
    assert sorted(p.name for p in folder.iterdir()) == (
        [f"{i:03d}.{e}" for i in range(VIEWS) for e in ("npy", "png")] + ["mesh.ply"])
    for i in range(VIEWS):
        rt = np.load(folder / f"{i:03d}.npy")
        assert rt.dtype == np.float32 and rt.shape == (3, 4)
        np.testing.assert_allclose(rt[:, :3] @ rt[:, :3].T, np.eye(3), atol=1e-5)
        centre = camera_center(rt)
        assert 1.5 - 1e-5 <= np.linalg.norm(centre) <= 2.2 + 1e-5
        # Blender convention: the camera's +Z axis points away from the origin it looks at.
        np.testing.assert_allclose(rt[2, :3], centre / np.linalg.norm(centre), atol=1e-5)
        image = Image.open(folder / f"{i:03d}.png")
        assert image.mode == "RGBA" and image.size == (RES, RES)
        alpha = np.asarray(image)[..., 3]
        assert alpha[0, 0] == 0 and alpha.max() == 255
    mesh = trimesh.load(folder / "mesh.ply", process=False)
    assert np.isclose(np.max(mesh.extents), 1.0, atol=1e-5)


def test_same_seed_same_renders(rendered: Path, tmp_path: Path) -> None:
    render_dataset(tmp_path, 2, num_views=VIEWS, resolution=RES, seed=5, progress=False)
    for name in ("proc_000000", "proc_000001"):
        for i in range(VIEWS):
            assert (tmp_path / name / f"{i:03d}.png").read_bytes() == (rendered / name / f"{i:03d}.png").read_bytes()
            np.testing.assert_array_equal(np.load(tmp_path / name / f"{i:03d}.npy"),
                                          np.load(rendered / name / f"{i:03d}.npy"))
    again = render_dataset(tmp_path, 2, num_views=VIEWS, resolution=RES, seed=5, progress=False)
    assert again.rendered == [] and sorted(again.existing) == ["proc_000000", "proc_000001"]  # resumable


def test_views_on_white_and_pose_vectors_by_hand(rendered: Path) -> None:
    images, poses, names = load_views_array(rendered, 16, cache=False)
    assert names == ["proc_000000", "proc_000001", "proc_000002"] and images.shape == (3, VIEWS, 16, 16, 3)
    assert np.all(images[:, :, 0, 0] == 255)  # transparent corner -> white
    vectors = relative_pose_vectors(poses[:, :, None], poses[:, None, :])  # [N, V, V, 4]: every ordered pair
    for o, a, b in ((0, 1, 0), (1, 3, 2), (2, 0, 3)):
        (tp, ta, tr), (cp, ca, cr) = _spherical_by_hand(poses[o, a]), _spherical_by_hand(poses[o, b])
        np.testing.assert_allclose(vectors[o, a, b], [tp - cp, math.sin(ta - ca), math.cos(ta - ca), tr - cr],
                                   atol=1e-6)
        np.testing.assert_allclose(vectors[o, a, b], RelativePose(tp - cp, ta - ca, tr - cr).vector(), atol=1e-6)


def test_composite_on_white_blends_by_alpha() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[0, 2, 3] = 0, 255, 128
    out = np.asarray(composite_on_white(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
    np.testing.assert_array_equal(out[0, 1], (255, 0, 0))
    assert abs(int(out[0, 2, 1]) - 127) <= 1 and out[0, 2, 0] == 255
    assert composite_on_white(Image.fromarray(rgba, "RGBA"), 2).size == (2, 2)


def test_bad_views_are_skipped_and_reported(rendered: Path, tmp_path: Path, caplog) -> None:
    root = tmp_path / "broken"
    shutil.copytree(rendered, root)
    (root / "proc_000000" / "001.png").write_bytes(b"not a png")  # corrupt image
    (root / "proc_000001" / "002.npy").unlink()                    # missing pose
    for i in range(1, VIEWS):                                       # object left with one view
        (root / "proc_000002" / f"{i:03d}.png").unlink()
    with caplog.at_level(logging.WARNING, logger="zero1to3.data.dataset"):
        images, poses, names = load_views_array(root, 8, num_views=3, cache=False)
    assert names == ["proc_000001"]  # proc_000000 has an unreadable view, proc_000002 too few views
    assert images.shape == (1, 3, 8, 8, 3) and poses.shape == (1, 3, 3, 4)
    assert len([r for r in caplog.records if "proc_000000" in r.getMessage()]) == 1
    assert load_views_array(root, 8, cache=False)[0].shape[:2] == (0, VIEWS)  # most common count: 4


def test_split_by_object_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    names = [f"obj{i:03d}" for i in range(60)]
    for name in names:
        (tmp_path / name).mkdir()
    train = list_objects(tmp_path, "train", val_fraction=0.3)
    val = list_objects(tmp_path, "val", val_fraction=0.3)
    assert set(train).isdisjoint(val) and sorted(train + val) == names
    assert 5 <= len(val) <= 30
    assert val == [n for n in names if split_of(n, 0.3) == "val"]
    assert list_objects(tmp_path, "all") == names


def test_views_array_cache_written_by_concurrent_loaders(rendered: Path, monkeypatch) -> None:
    """The ranks of one launch load (and cache) the same folder at once: every loader must succeed."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    savez = np.savez

    def slow_savez(*args, **kwargs):  # widen the write -> rename window so the writers overlap
        savez(*args, **kwargs)
        time.sleep(0.3)

    monkeypatch.setattr(np, "savez", slow_savez)
    cache = rendered.parent / "cache_concurrent"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: load_views_array(rendered, 12, cache_dir=cache), range(4)))
    for images, _, names in results:
        np.testing.assert_array_equal(images, results[0][0])
        assert names == results[0][2]
    assert len(list(cache.glob("views_12_*.npz"))) == 1
    assert not list(cache.glob("*.tmp"))  # no temporary left behind
    assert not list(rendered.glob("*.npz"))  # the dataset folder is never written
    np.testing.assert_array_equal(load_views_array(rendered, 12, cache_dir=cache)[0], results[0][0])


def test_views_array_cache_matches_the_pngs(rendered: Path) -> None:
    cache = rendered.parent / "cache_pairs"
    images, poses, names = load_views_array(rendered, 16, cache_dir=cache)
    assert images.shape == (3, VIEWS, 16, 16, 3) and images.dtype == np.uint8
    assert poses.shape == (3, VIEWS, 3, 4) and poses.dtype == np.float32
    assert len(list(cache.glob("views_16_*.npz"))) == 1 and not list(rendered.glob("*.npz"))
    np.testing.assert_array_equal(poses[1, 2], np.load(rendered / names[1] / "002.npy"))
    with Image.open(rendered / names[1] / "002.png") as png:
        np.testing.assert_array_equal(images[1, 2], np.asarray(composite_on_white(png.convert("RGBA"), 16)))
    # evaluation reads targets with the same framing and filter as training
    np.testing.assert_array_equal(images[1, 2], load_rgb(rendered / names[1] / "002.png", 16))
    again = load_views_array(rendered, 16, cache_dir=cache)
    np.testing.assert_array_equal(again[0], images)
    assert again[2] == names


def test_mesh_files_and_failures_do_not_stop_a_run(tmp_path: Path) -> None:
    src = tmp_path / "meshes"
    src.mkdir()
    trimesh.creation.box(extents=(2, 1, 1)).export(src / "box.ply")
    (src / "bad.obj").write_text("this is not a mesh\n")
    summary = render_dataset(tmp_path / "out", src, num_views=2, resolution=16, progress=False, save_mesh=True)
    assert summary.rendered == ["box"] and list(summary.failed) == ["bad"]
    mesh = trimesh.load(tmp_path / "out" / "box" / "mesh.ply")
    np.testing.assert_allclose(mesh.extents, (1.0, 0.5, 0.5), atol=1e-6)


def test_cli_renders_two_objects(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["render", "-o", str(out), "--procedural", "2", "--views", "3", "--resolution", "64",
                 "--quiet"]) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["proc_000000", "proc_000001"]
    for name in folders:
        for i in range(3):
            image = Image.open(out / name / f"{i:03d}.png")
            assert image.mode == "RGBA" and image.size == (64, 64)
            assert np.load(out / name / f"{i:03d}.npy").shape == (3, 4)
    assert "rendered 2 object(s)" in capsys.readouterr().out
    assert main(["render", "-o", str(out), "--meshes", str(tmp_path / "nope.obj")]) == 2


def test_workers_give_the_same_renders(rendered: Path, tmp_path: Path) -> None:
    summary = render_dataset(tmp_path, 2, num_views=VIEWS, resolution=RES, seed=5, workers=2, progress=False)
    assert sorted(summary.rendered) == ["proc_000000", "proc_000001"]
    for i in range(VIEWS):
        assert (tmp_path / "proc_000001" / f"{i:03d}.png").read_bytes() == \
            (rendered / "proc_000001" / f"{i:03d}.png").read_bytes()
