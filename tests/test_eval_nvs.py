"""End-to-end novel-view evaluation on a tiny hand-made dataset (both protocols, resume, CLI)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zero1to3.camera import focal_length_pixels, look_at, project_points, sample_reference_cameras, \
    spherical_to_cartesian
from zero1to3.evaluation.metrics import ImageMetrics, psnr, ssim, to_tensor
from zero1to3.evaluation.nvs import INPUT_COPY, evaluate_nvs
from zero1to3.evaluation.results import ResumeMismatch
from zero1to3.evaluation.views import ProtocolError, list_objects, load_rgb, select_views

SIZE = 64
# Per object: two balls (centre, radius, RGB) so each view differs in where and how large they appear.
_BALLS = {
    "obj_a": [((0.25, 0.0, 0.0), 0.25, (220, 40, 40)), ((-0.2, 0.1, 0.15), 0.18, (40, 40, 220))],
    "obj_b": [((0.0, 0.25, 0.1), 0.3, (40, 180, 40)), ((0.1, -0.25, -0.1), 0.15, (230, 200, 20))],
    "obj_c": [((0.15, 0.0, 0.2), 0.22, (150, 60, 200)), ((0.0, -0.1, -0.2), 0.22, (20, 160, 170))],
}


def _render(balls, pose: np.ndarray) -> np.ndarray:
    """RGBA disc rendering of the balls (painter's order), transparent background."""
    img = np.zeros((SIZE, SIZE, 4), np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    focal = focal_length_pixels(SIZE)
    depths = [float(-(pose[:, :3] @ np.array(c) + pose[:, 3])[2]) for c, _, _ in balls]
    for i in np.argsort(depths)[::-1]:
        centre, radius, colour = balls[i]
        u, v = project_points(np.array([centre]), pose, SIZE)[0]
        r = focal * radius / depths[i]
        inside = (xx - u) ** 2 + (yy - v) ** 2 <= r * r
        img[inside] = (*colour, 255)
    return img


def make_dataset(root: Path, n_random: int = 4, orbit: bool = True) -> Path:
    """Objects in the released layout: ``n_random`` reference-style views, then the 16-view elevation-30 orbit."""
    rng = np.random.default_rng(0)
    for name, balls in _BALLS.items():
        d = root / name
        d.mkdir(parents=True)
        poses = list(sample_reference_cameras(rng, n_random))
        if orbit:
            poses += [look_at(spherical_to_cartesian(math.radians(60), math.radians(22.5 * k), 1.8))
                      for k in range(16)]
        for i, pose in enumerate(poses):
            Image.fromarray(_render(balls, pose), "RGBA").save(d / f"{i:03d}.png")
            np.save(d / f"{i:03d}.npy", pose.astype(np.float32))
    return root


class FakePipe:
    """A zero1to3.protocols.ViewSampler; predicts a colour-shifted input and counts calls per image."""

    image_size = SIZE

    def __init__(self, shift: int = 30) -> None:
        self.shift = shift
        self.calls = 0

    def __call__(self, image, poses, *, num_samples=4, guidance_scale=3.0, num_inference_steps=50, scheduler="ddim",
                 eta=0.0, seed=0, preprocess=True, input_polar=None):
        assert not preprocess and image.size == (SIZE, SIZE)  # renders go in framed, at the model's size
        self.calls += 1
        arr = np.asarray(image.convert("RGB"), np.int16)
        rng = np.random.default_rng(seed)
        out = np.empty((len(poses), num_samples, SIZE, SIZE, 3), np.uint8)
        for p in range(len(poses)):
            for s in range(num_samples):
                out[p, s] = np.clip(arr - self.shift + rng.integers(-5, 6, arr.shape), 0, 255)

        class Out:
            array = out

        return Out()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("renders"))


def _metrics() -> ImageMetrics:
    return ImageMetrics(use_lpips=False, use_fid=False)


def test_views_and_protocols(dataset: Path) -> None:
    objs = list_objects(dataset)
    assert [o.name for o in objs] == sorted(_BALLS) and len(objs[0].views) == 20
    task = select_views(objs[0], "orbit16")
    assert task.input_view == "004" and len(task.targets) == 15 and "004" not in task.targets
    for t, rel in zip(task.targets, task.relative_poses):
        k = int(t) - 4
        assert rel.d_polar == pytest.approx(0, abs=1e-5)
        assert math.degrees(rel.d_azimuth) == pytest.approx(22.5 * k, abs=1e-3)
    r1 = select_views(objs[1], "random", num_targets=3, seed=5)
    r2 = select_views(list_objects(dataset, limit=2)[1], "random", num_targets=3, seed=5)
    assert (r1.input_view, r1.targets) == (r2.input_view, r2.targets) and r1.input_view not in r1.targets
    assert select_views(objs[0], "random", input_view=2).input_view == "002"
    with pytest.raises(ProtocolError, match="no view"):
        select_views(objs[0], "random", input_view="099")


def test_orbit16_needs_orbit_renders(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "r", orbit=False)
    with pytest.raises(ProtocolError, match="orbit16 needs 16 views"):
        evaluate_nvs(FakePipe(), data, "orbit16", metrics=_metrics(), progress=False)


def _check_against_direct(result, out: Path, data: Path, method: str, samples: int) -> None:
    """Recompute each object's PSNR/SSIM from the saved images and the renders; compare with the table."""
    per_object = []
    for rec in result.objects:
        obj = data / rec["object"]
        gt = np.stack([load_rgb(obj / f"{t}.png", SIZE) for t in rec["targets"]])
        if method == INPUT_COPY:
            pred = np.repeat(load_rgb(obj / f"{rec['input_view']}.png", SIZE)[None], len(gt), 0)[:, None]
        else:
            pred = np.stack([[load_rgb(out / "images" / rec["object"] / method / f"{t}_s{s}.png")
                              for s in range(samples)] for t in rec["targets"]])
        t_, s_ = pred.shape[:2]
        p = to_tensor(pred.reshape(t_ * s_, SIZE, SIZE, 3))
        g = to_tensor(np.repeat(gt, s_, 0))
        direct = {"psnr": float(psnr(p, g).mean()), "ssim": float(ssim(p, g).mean())}
        assert rec["scores"][method]["psnr"] == pytest.approx(direct["psnr"], rel=1e-5)
        assert rec["scores"][method]["ssim"] == pytest.approx(direct["ssim"], rel=1e-5)
        per_object.append(direct)
    for k in ("psnr", "ssim"):
        mean = float(np.mean([d[k] for d in per_object]))
        assert result.summary[method][k].mean == pytest.approx(mean, rel=1e-6)
        assert f"{mean:.4f}" in result.files["markdown"].read_text()
    rows = list(csv.DictReader(open(result.files["csv"])))
    mean_row = next(r for r in rows if r["object"] == "mean" and r["method"] == method)
    assert float(mean_row["psnr"]) == pytest.approx(result.summary[method]["psnr"].mean)


def test_random_protocol_end_to_end_tiny_model(dataset: Path, tmp_path: Path, tiny_pipe) -> None:
    out = tmp_path / "out"
    result = evaluate_nvs(tiny_pipe, dataset, "random", num_targets=1, seed=1, num_inference_steps=2,
                          num_samples=2, baseline=FakePipe(), out_dir=out, metrics=_metrics(), progress=False)
    assert result.methods == ["model", "baseline", INPUT_COPY]
    assert len(result.objects) == 3 and all(len(o["targets"]) == 1 for o in result.objects)
    for method, samples in (("model", 2), ("baseline", 2), (INPUT_COPY, 1)):
        _check_against_direct(result, out, dataset, method, samples)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["model"]["psnr"]["ci_low"] <= summary["summary"]["model"]["psnr"]["mean"]
    fig = Image.open(out / "figure.png")
    assert fig.size[1] > 3 * SIZE and fig.size[0] > 4 * SIZE  # 3 rows; input | gt | model | baseline


def test_orbit16_end_to_end_tiny_model(dataset: Path, tmp_path: Path, tiny_pipe) -> None:
    out = tmp_path / "orbit"
    result = evaluate_nvs(tiny_pipe, dataset, "orbit16", limit=1, num_inference_steps=2, out_dir=out,
                          metrics=_metrics(), progress=False)
    assert [len(o["targets"]) for o in result.objects] == [15]
    assert [r[1] for r in result.objects[0]["relative_poses_deg"]][:2] == pytest.approx([22.5, 45.0])
    _check_against_direct(result, out, dataset, "model", 1)
    _check_against_direct(result, out, dataset, INPUT_COPY, 1)


def test_resume_skips_finished_objects(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    pipe = FakePipe()
    first = evaluate_nvs(pipe, dataset, "random", limit=2, num_targets=2, out_dir=out, metrics=_metrics(),
                         progress=False)
    assert pipe.calls == 2
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines) + '\n{"object": "obj_c", "sco')  # killed mid-write
    pipe2 = FakePipe()
    second = evaluate_nvs(pipe2, dataset, "random", limit=3, num_targets=2, out_dir=out, metrics=_metrics(),
                          progress=False)
    assert pipe2.calls == 1  # only obj_c was computed
    assert second.objects[:2] == first.objects and len(second.objects) == 3
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    with pytest.raises(ResumeMismatch, match="seed"):
        evaluate_nvs(FakePipe(), dataset, "random", limit=3, num_targets=2, seed=9, out_dir=out,
                     metrics=_metrics(), progress=False)


def test_fid_column_with_custom_features(dataset: Path, tmp_path: Path) -> None:
    class Pool(torch.nn.Module):
        num_features = 3

        def forward(self, x):
            return x.float().mean(dim=(2, 3))

    metrics = ImageMetrics(use_lpips=False, fid_feature=Pool())
    result = evaluate_nvs(FakePipe(), dataset, "random", num_targets=3, out_dir=tmp_path / "fid",
                          metrics=metrics, progress=False)
    assert result.set_metrics["model"]["fid"] > result.set_metrics[INPUT_COPY]["fid"] >= 0
    assert "FID" in result.markdown()


def main(argv: list[str]) -> int:
    """``zero1to3`` with only the eval command registered (other commands are other modules' business)."""
    import argparse
    import sys

    from zero1to3.cli.common import CLIError
    from zero1to3.cli import eval as eval_cli

    parser = argparse.ArgumentParser(prog="zero1to3")
    eval_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, FileNotFoundError, ValueError) as exc:  # as zero1to3.cli.main reports them
        print(f"zero1to3 eval: error: {exc}", file=sys.stderr)
        return 2


def test_cli_eval_nvs(dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("ZERO1TO3_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("ZERO1TO3_FID_WEIGHTS", raising=False)
    out = tmp_path / "cli"
    rc = main(["eval", "nvs", "--model", "preset:tiny", "--data", str(dataset), "--limit", "1", "--targets", "1",
               "--steps", "2", "-o", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "| tiny |" in captured.out and f"| {INPUT_COPY} |" in captured.out
    assert "LPIPS skipped" in captured.err and "FID skipped" in captured.err
    assert {p.name for p in out.iterdir()} >= {"summary.md", "summary.json", "summary.csv", "figure.png",
                                               "results.jsonl", "config.json"}
    assert main(["eval", "nvs", "--model", "preset:tiny", "--data", str(tmp_path / "nope")]) == 2
    assert main(["eval", "nvs", "--model", "preset:tiny", "--data", str(dataset), "--limit", "1", "--seed", "4",
                 "-o", str(out), "--targets", "1", "--steps", "2", "--no-progress"]) == 2
    assert "another configuration" in capsys.readouterr().err
