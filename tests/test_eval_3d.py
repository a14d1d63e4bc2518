"""3D evaluation over a set of objects: pairing, resume, reports, and the real mesh metrics."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

trimesh = pytest.importorskip("trimesh", reason="3D evaluation reads meshes with trimesh")

from zero1to3.evaluation.three_d import evaluate_3d, find_meshes  # noqa: E402

HAVE_RECON_METRICS = importlib.util.find_spec("zero1to3.recon.metrics") is not None


def _meshes(root: Path) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    gt.mkdir()
    pred.mkdir()
    shapes = {"box": trimesh.creation.box((1, 1, 1)), "ball": trimesh.creation.icosphere(3, 0.5),
              "slab": trimesh.creation.box((1, 1, 0.3))}
    for name, mesh in shapes.items():
        mesh.export(gt / f"{name}.obj")
    shapes["box"].export(pred / "box.obj")                       # perfect
    (pred / "ball").mkdir()
    trimesh.creation.box((0.8, 0.8, 0.8)).export(pred / "ball" / "mesh.ply")  # a box for a ball
    return pred, gt                                               # slab has no prediction


def test_find_meshes_pairs_files_and_folders(tmp_path: Path) -> None:
    pred, gt = _meshes(tmp_path)
    assert sorted(find_meshes(gt)) == ["ball", "box", "slab"]
    assert find_meshes(pred)["ball"].name == "mesh.ply"


def test_plumbing_resume_and_reports(tmp_path: Path) -> None:
    pred, gt = _meshes(tmp_path)
    calls: list[int] = []

    def fake_metrics(p, g) -> dict[str, float]:
        calls.append(1)
        return {"chamfer": float(abs(p.volume - g.volume)), "iou": 0.5, "fscore": 0.25}

    out = tmp_path / "out"
    r1 = evaluate_3d(pred, gt, limit=1, out_dir=out, metric_fn=fake_metrics, progress=False)
    assert [o["object"] for o in r1.objects] == ["ball"] and len(calls) == 1
    r2 = evaluate_3d(pred, gt, out_dir=out, metric_fn=fake_metrics, progress=False)
    assert len(calls) == 2  # ball reused, box computed
    assert [o["object"] for o in r2.objects] == ["ball", "box"]
    assert any("slab" in n for n in r2.notices)
    assert r2.summary["reconstruction"]["iou"].mean == pytest.approx(0.5)
    md = (out / "summary.md").read_text()
    assert "Chamfer ↓" in md and "Vol. IoU ↑" in md and "slab" in md
    assert json.loads((out / "summary.json").read_text())["summary"]["reconstruction"]["fscore"]["n"] == 2


@pytest.mark.skipif(not HAVE_RECON_METRICS, reason="zero1to3.recon.metrics not present yet")
def test_real_mesh_metrics_through_cli(tmp_path: Path, capsys) -> None:
    from zero1to3.cli.common import CLIError
    from zero1to3.cli import eval as eval_cli

    pred, gt = _meshes(tmp_path)
    parser = argparse.ArgumentParser()
    eval_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "out3d"
    args = parser.parse_args(["eval", "3d", "--pred", str(pred), "--gt", str(gt), "-o", str(out),
                              "--num-points", "3000", "--iou-resolution", "32", "--no-progress"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "| reconstruction |" in text
    rec = {o["object"]: o["scores"]["reconstruction"] for o in json.loads((out / "summary.json").read_text())["objects"]}
    # identical meshes: Chamfer is only the sampling gap (~spacing of 3000 points on the box), IoU ~1
    assert rec["box"]["chamfer"] < 0.08 and rec["box"]["iou"] > 0.95 and rec["box"]["fscore"] > 0.95
    assert rec["ball"]["iou"] < rec["box"]["iou"] and rec["ball"]["chamfer"] > rec["box"]["chamfer"]
    args = parser.parse_args(["eval", "3d", "--pred", str(pred), "--gt", str(gt), "-o", str(out),
                              "--num-points", "2000", "--iou-resolution", "32", "--no-progress"])
    with pytest.raises(CLIError, match="num_points"):
        args.func(args)
