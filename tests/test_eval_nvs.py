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

from zero1to3.camera import focal_length_pixels, look_at, project_points, relative_pose, \
    sample_reference_cameras, spherical_to_cartesian
from zero1to3.evaluation.metrics import ImageMetrics, psnr, ssim, to_tensor
from zero1to3.evaluation.nvs import (BLANK_WHITE, INPUT_COPY, ORBIT_SIDES, SIDES_ALIKE_PSNR_DB, evaluate_nvs,
                                     side_check_lines)
from zero1to3.evaluation.results import ResumeMismatch
from zero1to3.evaluation.views import ProtocolError, find_side_views, list_objects, load_rgb, select_views

SIZE = 64
# Per object: two balls (centre, radius, RGB) so each view differs in where and how large they appear.
_BALLS = {
    "obj_a": [((0.25, 0.0, 0.0), 0.25, (220, 40, 40)), ((-0.2, 0.1, 0.15), 0.18, (40, 40, 220))],
    "obj_b": [((0.0, 0.25, 0.1), 0.3, (40, 180, 40)), ((0.1, -0.25, -0.1), 0.15, (230, 200, 20))],
    "obj_c": [((0.15, 0.0, 0.2), 0.22, (150, 60, 200)), ((0.0, -0.1, -0.2), 0.22, (20, 160, 170))],
}


def _render(balls, pose: np.ndarray, size: int = SIZE) -> np.ndarray:
    """RGBA disc rendering of the balls (painter's order), transparent background."""
    img = np.zeros((size, size, 4), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    focal = focal_length_pixels(size)
    depths = [float(-(pose[:, :3] @ np.array(c) + pose[:, 3])[2]) for c, _, _ in balls]
    for i in np.argsort(depths)[::-1]:
        centre, radius, colour = balls[i]
        u, v = project_points(np.array([centre]), pose, size)[0]
        r = focal * radius / depths[i]
        inside = (xx - u) ** 2 + (yy - v) ** 2 <= r * r
        img[inside] = (*colour, 255)
    return img


def make_dataset(root: Path, n_random: int = 4, orbit: bool = True, size: int = SIZE) -> Path:
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
            Image.fromarray(_render(balls, pose, size), "RGBA").save(d / f"{i:03d}.png")
            np.save(d / f"{i:03d}.npy", pose.astype(np.float32))
    return root


class FakePipe:
    """A zero1to3.protocols.ViewSampler; predicts a colour-shifted input and counts calls per image."""

    image_size = SIZE

    def __init__(self, shift: int = 30) -> None:
        self.shift = shift
        self.calls = 0

    def __call__(self, image, poses, *, num_samples=4, guidance_scale=3.0, num_inference_steps=50, scheduler="ddim",
                 eta=0.0, seed=0, preprocess=True, input_polar=None, batch_size=None):
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
                          num_samples=2, baseline=FakePipe(), out_dir=out, metrics=_metrics(), progress=False,
                          orbit_sides=False)  # the side check runs in the orbit16 test (fewer slow calls)
    assert result.methods == ["model", "baseline", INPUT_COPY, BLANK_WHITE]
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
    sides = result.objects[0]["sides"]  # the tiny model through the side check: two predicted views saved
    assert set(sides["methods"]) == {"model", INPUT_COPY, BLANK_WHITE}
    assert result.objects[0]["scores"]["model"][ORBIT_SIDES] == float(sides["methods"]["model"]["pass"])
    assert sorted(p.name for p in (out / "images" / "obj_a" / "model" / "sides").iterdir()) == \
        ["008_s0.png", "016_s0.png"]


def test_resume_skips_finished_objects(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    pipe = FakePipe()
    first = evaluate_nvs(pipe, dataset, "random", limit=2, num_targets=2, out_dir=out, metrics=_metrics(),
                         progress=False)
    assert pipe.calls == 2 * 2  # per object: the targets, then the orbit side check's two views
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines) + '\n{"object": "obj_c", "sco')  # killed mid-write
    pipe2 = FakePipe()
    second = evaluate_nvs(pipe2, dataset, "random", limit=3, num_targets=2, out_dir=out, metrics=_metrics(),
                          progress=False)
    assert pipe2.calls == 2  # only obj_c was computed
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


class OraclePipe:
    """Returns the ground-truth render of each requested camera (found by the input image and relative pose)."""

    image_size = SIZE

    def __init__(self, data: Path, swap_sides: bool = False) -> None:
        self.objects = {}
        for obj in list_objects(data):
            for v in obj.views:
                self.objects[obj.image(v, SIZE).tobytes()] = (obj, v)
        self.swap_sides = swap_sides

    def _view_at(self, obj, inp: str, pose) -> str:
        want = np.array(pose.degrees())
        for v in obj.views:
            got = np.array(relative_pose(obj.poses[v], obj.poses[inp]).degrees())
            if v != inp and abs(got[0] - want[0]) < 1e-3 and abs((got[1] - want[1] + 180) % 360 - 180) < 1e-3:
                return v
        raise AssertionError(f"no view of {obj.name} at {want}")

    def __call__(self, image, poses, *, num_samples=1, guidance_scale=3.0, num_inference_steps=50, scheduler="ddim",
                 eta=0.0, seed=0, preprocess=True, input_polar=None, batch_size=None):
        obj, inp = self.objects[np.asarray(image.convert("RGB")).tobytes()]
        views = [self._view_at(obj, inp, p) for p in poses]
        if self.swap_sides and len(views) == 2:
            views = views[::-1]
        arr = np.stack([np.repeat(obj.image(v, SIZE)[None], num_samples, 0) for v in views])

        class Out:
            array = arr

        return Out()


def test_mask_metrics_blank_white_and_side_check_end_to_end(dataset: Path, tmp_path: Path) -> None:
    """Oracle (the ground truth itself): IoU 1, capped masked PSNR, passes the side check; blank white: IoU 0."""
    out = tmp_path / "mask"
    result = evaluate_nvs(OraclePipe(dataset), dataset, "random", num_targets=3, out_dir=out, metrics=_metrics(),
                          progress=False)
    assert result.methods == ["model", INPUT_COPY, BLANK_WHITE]
    assert result.metrics == ["psnr", "ssim", "mask_iou", "masked_psnr", ORBIT_SIDES]
    for rec in result.objects:
        sc = rec["scores"]
        assert sc["model"]["mask_iou"] == 1.0 and sc["model"]["masked_psnr"] == 100.0  # discs: binary alpha
        assert sc[BLANK_WHITE]["mask_iou"] == 0.0
        assert 0.0 < sc[INPUT_COPY]["mask_iou"] < 1.0
        # blank white, by hand: PSNR over the target's alpha mask of (1 - target)^2
        obj = dataset / rec["object"]
        direct = []
        for t in rec["targets"]:
            gt = load_rgb(obj / f"{t}.png", SIZE).astype(np.float64) / 255.0
            alpha = np.asarray(Image.open(obj / f"{t}.png"))[..., 3] > 0
            direct.append(10 * np.log10(1.0 / ((1.0 - gt[alpha]) ** 2).mean()))
        assert sc[BLANK_WHITE]["masked_psnr"] == pytest.approx(float(np.mean(direct)), rel=1e-4)
        assert rec["per_view"][BLANK_WHITE]["mask_iou"] == [0.0, 0.0, 0.0]
        assert rec["sides"]["input_view"] == "004" and (rec["sides"]["plus_view"], rec["sides"]["minus_view"]) == \
            ("008", "016")
        assert (sc["model"][ORBIT_SIDES], sc[INPUT_COPY][ORBIT_SIDES], sc[BLANK_WHITE][ORBIT_SIDES]) == (1.0, 0.0, 0.0)
        sides_by_hand = psnr(to_tensor(load_rgb(obj / "008.png", SIZE)), to_tensor(load_rgb(obj / "016.png", SIZE)))
        assert rec["sides"]["gt_sides_psnr"] == pytest.approx(float(sides_by_hand.reshape(-1)[0]), rel=1e-5)
        assert len(list((out / "images" / rec["object"] / "model" / "sides").glob("*.png"))) == 2
    blank = result.summary[BLANK_WHITE]
    assert blank["mask_iou"].mean == 0.0 and blank["psnr"].mean > result.summary["model"]["masked_psnr"].mean - 100
    paired = result.paired[BLANK_WHITE]["mask_iou"]
    assert paired.mean == pytest.approx(1.0) and paired.n == 3
    assert result.summary["model"][ORBIT_SIDES].mean == 1.0
    assert any("model 3/3 (100.0%), input-copy 0/3 (0.0%), blank-white 0/3 (0.0%)" in n for n in result.notices)
    md = (out / "summary.md").read_text()
    assert "| blank-white |" in md and "Mask IoU" in md and "Masked PSNR" in md and "model − blank-white" in md
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert float(next(r for r in rows if r["object"] == "mean" and r["method"] == BLANK_WHITE)["mask_iou"]) == 0.0
    swapped = evaluate_nvs(OraclePipe(dataset, swap_sides=True), dataset, "random", num_targets=1, limit=2,
                           metrics=_metrics(), progress=False)
    assert swapped.summary["model"][ORBIT_SIDES].mean == 0.0  # +90 drawn where -90 belongs: caught
    off = evaluate_nvs(OraclePipe(dataset), dataset, "random", num_targets=1, limit=1, metrics=_metrics(),
                       progress=False, orbit_sides=False)
    assert ORBIT_SIDES not in off.metrics and "sides" not in off.objects[0]


def test_random_protocol_skips_orbit_views_listed_in_meta(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "r", n_random=4)
    (data / "meta.json").write_text(json.dumps({"num_views": 4, "orbit_views": 16}))
    for obj in list_objects(data):
        assert obj.extra_views == frozenset(f"{i:03d}" for i in range(4, 20))
        task = select_views(obj, "random", seed=3)
        assert {task.input_view, *task.targets} == {"000", "001", "002", "003"}
        assert len(select_views(obj, "orbit16").targets) == 15  # the orbit protocol still finds them
        assert find_side_views(obj) == ("004", "008", "016")


def test_views_larger_than_the_model(tmp_path: Path) -> None:
    """128 px renders, a 64 px model: compared at the model's size by default, or at image_size."""
    data = make_dataset(tmp_path / "r128", size=128)
    pipe = FakePipe(shift=0)
    res = evaluate_nvs(pipe, data, "random", num_targets=2, limit=2, out_dir=tmp_path / "o64", metrics=_metrics(),
                       progress=False)
    assert (res.config["image_size"], res.config["model_image_size"]) == (64, 64)
    rec = res.objects[0]
    saved = load_rgb(tmp_path / "o64" / "images" / rec["object"] / "model" / f"{rec['targets'][0]}_s0.png")
    assert saved.shape == (64, 64, 3)
    # the fake model copies its 64 px input (plus noise of +-5 levels): close to input-copy, not to blank
    assert abs(rec["scores"]["model"]["mask_iou"] - rec["scores"][INPUT_COPY]["mask_iou"]) < 0.1
    big = evaluate_nvs(FakePipe(shift=0), data, "random", num_targets=2, limit=2, out_dir=tmp_path / "o128",
                       metrics=_metrics(), progress=False, image_size=128)
    rec = big.objects[0]
    saved = load_rgb(tmp_path / "o128" / "images" / rec["object"] / "model" / f"{rec['targets'][0]}_s0.png")
    assert saved.shape == (128, 128, 3) and big.config["image_size"] == 128
    assert big.objects[0]["scores"][BLANK_WHITE]["mask_iou"] == 0.0
    assert big.objects[0]["scores"][INPUT_COPY] != res.objects[0]["scores"][INPUT_COPY]  # other pixels compared


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
    rows = {line.split("|")[1].strip() for line in captured.out.splitlines() if line.startswith("|")}
    assert {"tiny", INPUT_COPY, BLANK_WHITE, f"tiny − {INPUT_COPY}", f"tiny − {BLANK_WHITE}"} <= rows
    assert "IoU" in captured.out and "mPSNR" in captured.out and "sides" in captured.out
    assert "Orbit side check" in captured.out and "blank-white 0/1 (0.0%)" in captured.out
    assert "LPIPS skipped" in captured.err and "FID skipped" in captured.err
    assert {p.name for p in out.iterdir()} >= {"summary.md", "summary.json", "summary.csv", "figure.png",
                                               "results.jsonl", "config.json"}
    assert main(["eval", "nvs", "--model", "preset:tiny", "--data", str(tmp_path / "nope")]) == 2
    assert main(["eval", "nvs", "--model", "preset:tiny", "--data", str(dataset), "--limit", "1", "--seed", "4",
                 "-o", str(out), "--targets", "1", "--steps", "2", "--no-progress"]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_side_check_line_separates_objects_whose_sides_look_alike() -> None:
    """Objects whose +-90 ground truths are near-identical (round, mirror-symmetric) are counted apart."""
    def rec(gt_db: float, model_pass: bool) -> dict:
        return {"sides": {"gt_sides_psnr": gt_db, "methods": {"model": {"pass": model_pass},
                                                               INPUT_COPY: {"pass": False}}}}
    records = [rec(100.0, False), rec(31.0, True), rec(14.0, True), rec(22.0, False), {"object": "no orbit"}]
    (line,) = side_check_lines(records, ["model", INPUT_COPY])
    assert "objects passing: model 2/4 (50.0%), input-copy 0/4 (0.0%)." in line
    assert "1 object(s) without the orbit views were not checked." in line
    assert f"2 of the 4 objects have +-90 deg ground truths within {SIDES_ALIKE_PSNR_DB:g} dB" in line
    assert line.endswith("on the others: model 1/2 (50.0%), input-copy 0/2 (0.0%).")
    (plain,) = side_check_lines([rec(14.0, True)], ["model"])
    assert "look alike" not in plain
