"""CLI: nvs/orbit on a saved random tiny model, and one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zero1to3.cli import main


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    img = np.full((80, 80, 4), 0, np.uint8)
    img[20:60, 25:55] = (220, 120, 20, 255)
    path = tmp_path_factory.mktemp("img") / "obj.png"
    Image.fromarray(img).save(path)
    return path


def test_nvs_writes_views_and_grid(model_dir, photo, tmp_path):
    rc = main(["nvs", str(photo), "--model", str(model_dir), "--azimuth", "30", "90", "--polar", "0",
               "-n", "2", "--steps", "2", "-o", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 0
    views = sorted((tmp_path / "o").glob("view*.png"))
    assert len(views) == 4
    assert Image.open(tmp_path / "o" / "grid.png").size == (3 * 64, 2 * 64)


def test_orbit_gif(model_dir, photo, tmp_path):
    rc = main(["orbit", str(photo), "--model", str(model_dir), "--views", "3", "--steps", "2",
               "-o", str(tmp_path / "orbit.gif"), "--device", "cpu"])
    assert rc == 0
    gif = Image.open(tmp_path / "orbit.gif")
    assert gif.n_frames == 3


@pytest.mark.parametrize("args,message", [
    (["nvs", "MISSING.png"], "image file not found"),
    (["nvs", "{photo}", "--azimuth", "nan"], "finite"),
    (["nvs", "{photo}", "--model", "/no/such/model"], "model path not found"),
    (["orbit", "{photo}", "-o", "x.avi"], ".gif or .mp4"),
    (["nvs", "{photo}", "--azimuth", "1", "2", "--polar", "1", "2", "3"], "same number"),
])
def test_one_line_errors(photo, capsys, args, message):
    args = [a.replace("{photo}", str(photo)) for a in args]
    assert main(args + ["--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unreadable_image_error(model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["nvs", str(bad), "--model", str(model_dir), "--steps", "1", "--device", "cpu"]) == 2
    assert "cannot read image" in capsys.readouterr().err


@pytest.mark.parametrize("mode,expected", [("auto", None), ("eager", "eager"), ("cuda_graph", "cuda_graph"),
                                           ("compile", "compile")])
def test_fast_mode_option_reaches_the_pipeline(model_dir, mode, expected):
    import argparse

    from zero1to3.cli.common import add_model_arguments, load_pipeline

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    pipe = load_pipeline(parser.parse_args(["--model", str(model_dir), "--device", "cpu", "--fast-mode", mode]))
    fast = getattr(pipe, "_fast_denoiser", None)
    if expected is None or expected == "eager":
        assert fast is None and getattr(pipe, "_fast_auto", True) == (expected is None)
    else:
        assert fast.config.mode == expected and fast.config.channels_last == (mode == "compile")
        assert not fast.active  # on a CPU every mode samples eagerly
