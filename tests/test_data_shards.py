"""The compact shard form decodes to the views of the PNG layout (within JPEG error), losslessly for
alpha and poses, and the trainer reads it directly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zero1to3.data.dataset import load_views_array
from zero1to3.data.shards import (SHARD_INDEX, ViewSet, is_shard_folder, pack_render_folder, read_render_folder,
                                  read_shards, write_shards)
from zero1to3.data.writer import render_dataset
from zero1to3.training import load_training_arrays

SIZE, VIEWS = 32, 4


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("renders")
    render_dataset(root, 3, num_views=VIEWS, resolution=SIZE, seed=3, progress=False)
    return root


def test_shards_decode_to_the_png_views(rendered: Path, tmp_path: Path) -> None:
    index = pack_render_folder(rendered, tmp_path / "sh", SIZE, quality=95)
    assert is_shard_folder(tmp_path / "sh") and index["objects"] == 3 and index["views"] == VIEWS
    views = read_shards(tmp_path / "sh")
    images, poses, names = load_views_array(rendered, SIZE, cache=False)
    assert views.names == names
    np.testing.assert_array_equal(views.poses, poses)
    error = np.abs(views.images.astype(np.int16) - images)
    assert error.mean() < 1.5 and error.max() < 64  # JPEG at quality 95, 4:4:4
    # alpha is lossless: the PNG render's alpha resized with the same filter
    with Image.open(rendered / names[1] / "002.png") as im:
        assert im.size == (SIZE, SIZE)
        np.testing.assert_array_equal(views.alpha[1, 2], np.array(im.getchannel("A")))
    # the colour of a pixel the object covers is close to the render's
    assert (views.alpha > 0).any() and (views.alpha == 0).any()


def test_shards_split_by_size_and_keep_order(rendered: Path, tmp_path: Path) -> None:
    views, skipped = read_render_folder(rendered, SIZE)
    assert skipped == {}
    index = write_shards(views, tmp_path / "sh", max_shard_bytes=1)  # one object per shard
    assert [s["objects"] for s in index["shards"]] == [1, 1, 1]
    again = read_shards(tmp_path / "sh")
    assert again.names == views.names
    np.testing.assert_array_equal(again.alpha, views.alpha)
    assert json.loads((tmp_path / "sh" / SHARD_INDEX).read_text())["bytes_per_object"] > 0


def test_trainer_reads_shards_directly(rendered: Path, tmp_path: Path) -> None:
    pack_render_folder(rendered, tmp_path / "sh", SIZE)
    images, poses, names = load_training_arrays(str(tmp_path / "sh"), SIZE)
    assert images.shape == (3, VIEWS, SIZE, SIZE, 3) and poses.shape == (3, VIEWS, 3, 4) and len(names) == 3
    with pytest.raises(ValueError, match="32 px"):
        load_training_arrays(str(tmp_path / "sh"), 64)


def test_broken_objects_are_reported_not_raised(rendered: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(rendered, copy)
    bad = sorted(p for p in copy.iterdir() if p.is_dir())[0]
    (bad / "001.png").write_bytes(b"not a png")
    views, skipped = read_render_folder(copy, SIZE)
    assert list(skipped) == [bad.name] and len(views.names) == 2


def test_objects_drawn_in_no_view_are_skipped(rendered: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(rendered, copy)
    names = sorted(p.name for p in copy.iterdir() if p.is_dir())
    for png in sorted((copy / names[0]).glob("*.png")):  # every view fully transparent: nothing drawn
        with Image.open(png) as im:
            clear = im.convert("RGBA")
        clear.putalpha(0)
        clear.save(png)
    faint = sorted((copy / names[1]).glob("*.png"))
    for png in faint[1:]:  # one view keeps its object: kept
        with Image.open(png) as im:
            clear = im.convert("RGBA")
        clear.putalpha(0)
        clear.save(png)
    views, skipped = read_render_folder(copy, SIZE)
    assert list(skipped) == [names[0]] and "invisible" in skipped[names[0]]
    assert views.names == names[1:]


def test_view_set_checks_shapes_and_width_multiple_of_8(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        ViewSet(np.zeros((1, 2, 8, 8, 3), np.uint8), np.zeros((1, 2, 8, 8), np.uint8),
                np.zeros((2, 2, 3, 4), np.float32), ["a"])
    odd = ViewSet(np.zeros((1, 2, 12, 12, 3), np.uint8), np.zeros((1, 2, 12, 12), np.uint8),
                  np.zeros((1, 2, 3, 4), np.float32), ["a"])
    with pytest.raises(ValueError, match="multiple of 8"):
        write_shards(odd, tmp_path)
    with pytest.raises(FileNotFoundError, match="not a shard folder"):
        read_shards(tmp_path)


def test_unpack_gives_back_the_views(rendered: Path, tmp_path: Path) -> None:
    from zero1to3.data.shards import unpack_shards

    pack_render_folder(rendered, tmp_path / "sh", SIZE)
    packed = read_shards(tmp_path / "sh")
    assert unpack_shards(tmp_path / "sh", tmp_path / "png") == 3
    assert json.loads((tmp_path / "png" / "meta.json").read_text()) == json.loads((rendered / "meta.json").read_text())
    images, poses, names = load_views_array(tmp_path / "png", SIZE, cache=False)
    assert names == packed.names
    np.testing.assert_array_equal(poses, packed.poses)
    # where the object covers a pixel fully, the stored colour comes back exactly (up to rounding);
    # under alpha 0 the unpacked view is white, as the render was (JPEG ringing there is dropped)
    opaque = packed.alpha == 255
    assert np.abs(images.astype(np.int16) - packed.images)[opaque].max() <= 1
    assert (images[packed.alpha == 0] == 255).all()
    original, _, _ = load_views_array(rendered, SIZE, cache=False)
    assert np.abs(images.astype(np.int16) - original).mean() < 1.5


def test_cli_pack_and_unpack(rendered: Path, tmp_path: Path, capsys) -> None:
    from zero1to3.cli import main

    assert main(["data", "pack", str(rendered), "-o", str(tmp_path / "sh"), "--size", str(SIZE)]) == 0
    assert "packed 3 objects x 4 views" in capsys.readouterr().out
    assert main(["data", "unpack", str(tmp_path / "sh"), "-o", str(tmp_path / "png")]) == 0
    assert len(list_objects_in(tmp_path / "png")) == 3
    assert main(["data", "pack", str(rendered), "-o", str(tmp_path / "x"), "--size", "30"]) == 2
    assert "multiple of 8" in capsys.readouterr().err


def list_objects_in(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir()]


def test_hash_parts_are_stable_disjoint_and_even() -> None:
    from zero1to3.data.dataset import hash_part, split_of

    names = [f"obj_{i:05d}" for i in range(6000)]
    parts = [hash_part(n, 3) for n in names]
    assert parts == [hash_part(n, 3) for n in names]           # no state: the same on every call and machine
    counts = np.bincount(parts, minlength=3)
    assert counts.sum() == 6000 and (abs(counts - 2000) < 150).all()   # ~2000 each (binomial sd ~37)
    # pinned: a later change of the scheme would silently reshuffle every packed folder
    assert [hash_part(f"proc_{i:06d}", 3) for i in range(8)] == [1, 0, 2, 2, 0, 2, 0, 1]
    # salted: the objects split_of sends to val are spread over the parts, not all in part 0
    val = [p for n, p in zip(names, parts) if split_of(n, 0.05) == "val"]
    assert set(val) == {0, 1, 2}
    assert all(hash_part(n, 1) == 0 for n in names[:50])
    with pytest.raises(ValueError, match="parts must be >= 1"):
        hash_part("a", 0)


def test_cli_pack_parts_cover_the_split_once(rendered: Path, tmp_path: Path, capsys) -> None:
    from zero1to3.cli import main
    from zero1to3.data.dataset import hash_part

    names = []
    for k in (1, 2):
        assert main(["data", "pack", str(rendered), "-o", str(tmp_path / f"p{k}"), "--size", str(SIZE),
                     "--part", f"{k}/2"]) == 0
        assert f"part {k}/2" in capsys.readouterr().out
        part = read_shards(tmp_path / f"p{k}")
        assert all(hash_part(n, 2) == k - 1 for n in part.names)
        assert json.loads((tmp_path / f"p{k}" / SHARD_INDEX).read_text())["part"] == [k, 2]
        names += part.names
    pack_render_folder(rendered, tmp_path / "all", SIZE)
    whole = read_shards(tmp_path / "all")
    assert sorted(names) == sorted(whole.names) and len(names) == 3
    for bad in ("3/2", "0/2", "x"):
        with pytest.raises(SystemExit):
            main(["data", "pack", str(rendered), "-o", str(tmp_path / "bad"), "--part", bad])
        assert "K/N" in capsys.readouterr().err
