"""3D evaluation: predicted meshes against ground-truth meshes (Chamfer, volumetric IoU, F-score).

The geometry itself is measured by :mod:`zero1to3.recon.metrics` (imported lazily: it pulls in the
reconstruction stack); this module pairs meshes by object name, resumes per object and writes the same
reports as the novel-view evaluation.

Pairing: ``DIR/<name>.<ext>`` or ``DIR/<name>/<any mesh file>`` in both folders; objects present in the
ground truth but missing from the predictions are reported in the notices and left out (not scored 0).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import trimesh
from tqdm.auto import tqdm

from zero1to3.evaluation.results import EvalResult, ResultStore
from zero1to3.recon.metrics import evaluate_mesh

MESH_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")
METRICS_3D = ["chamfer", "iou", "fscore"]

MeshMetricFn = Callable[[Any, Any], dict[str, float]]


def find_meshes(folder: str | Path) -> dict[str, Path]:
    """Object name -> mesh file under ``folder`` (``name.ext`` or ``name/<mesh>``)."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"mesh folder not found: {root}")
    found: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in MESH_EXTENSIONS:
            found.setdefault(p.stem, p)
        elif p.is_dir():
            meshes = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in MESH_EXTENSIONS)
            if meshes:
                found.setdefault(p.name, meshes[0])
    return found


def default_mesh_metrics(**kwargs: Any) -> MeshMetricFn:
    """:func:`zero1to3.recon.metrics.evaluate_mesh` as a dict (raises ImportError if the module is absent).

    ``kwargs`` go to it: ``threshold`` (F-score distance, default 0.05 of the unit box), ``num_points``,
    ``iou_resolution``, ``normalize``, ``seed``. All its numbers are kept in the per-object records
    (accuracy, completeness, precision, recall too); the table shows Chamfer, IoU and F-score.
    """

    def compute(pred: Any, gt: Any) -> dict[str, float]:
        result = evaluate_mesh(pred, gt, **kwargs)
        values = result.as_dict() if hasattr(result, "as_dict") else dict(result)
        return {k: float(v) for k, v in values.items()}

    return compute


def _load_mesh(path: Path) -> Any:
    return trimesh.load(path, force="mesh")


def evaluate_3d(pred_dir: str | Path, gt_dir: str | Path, *, limit: int | None = None,
                out_dir: str | Path | None = None, method: str = "reconstruction", ci: str = "t", seed: int = 0,
                overwrite: bool = False, progress: bool = True, metric_fn: MeshMetricFn | None = None,
                load_mesh: Callable[[Path], Any] = _load_mesh,
                config_extra: dict[str, Any] | None = None) -> EvalResult:
    """Score every predicted mesh against its ground truth; resumable through ``out_dir/results.jsonl``.

    ``metric_fn(pred_mesh, gt_mesh) -> {"chamfer", "iou", "fscore"}`` defaults to
    :func:`default_mesh_metrics`; meshes are loaded with trimesh. ``config_extra`` (e.g. the metric
    settings) joins the configuration that a resumed run must match.
    """


    metric_fn = metric_fn or default_mesh_metrics()
    gt = find_meshes(gt_dir)
    pred = find_meshes(pred_dir)
    if not gt:
        raise FileNotFoundError(f"no meshes ({', '.join(MESH_EXTENSIONS)}) under {gt_dir}")
    names = sorted(gt)
    if limit is not None:
        names = names[:limit]
    missing = [n for n in names if n not in pred]
    names = [n for n in names if n in pred]
    notices = [f"{len(missing)} object(s) without a predicted mesh left out: {', '.join(missing[:10])}"
               + (" ..." if len(missing) > 10 else "")] if missing else []
    config = {"kind": "3d", "pred": str(Path(pred_dir).resolve()), "gt": str(Path(gt_dir).resolve()),
              "methods": [method], "ci": ci, **(config_extra or {})}
    tmp = tempfile.TemporaryDirectory(prefix="zero1to3-eval3d-") if out_dir is None else None
    out = Path(tmp.name) if tmp else Path(out_dir)
    try:
        store = ResultStore(out, config, overwrite=overwrite or tmp is not None)
        todo = [n for n in names if n not in store]
        bar = tqdm(total=len(names), initial=len(names) - len(todo), desc="eval 3d", unit="obj",
                   disable=not progress)
        for name in todo:
            scores = metric_fn(load_mesh(pred[name]), load_mesh(gt[name]))
            store.append({"object": name, "pred": str(pred[name]), "gt": str(gt[name]),
                          "scores": {method: {k: float(v) for k, v in scores.items()}}})
            bar.update(1)
        bar.close()
        records = [store.records[n] for n in names]
        present = [k for k in METRICS_3D if any(k in r["scores"][method] for r in records)]
        result = EvalResult("3d", config, [method], present or METRICS_3D, records, notices=notices,
                            out_dir=None if tmp else out)
        result.compute_summary(ci=ci, seed=seed)
        if tmp is None:
            result.write(out)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()
