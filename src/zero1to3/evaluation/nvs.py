"""Novel-view evaluation: model (+ optional second model) and the input-copy baseline on held-out renders.

For every object: pick an input view and target views (protocol, :mod:`zero1to3.evaluation.views`), ask
each method for the target views, and score each predicted image against the ground-truth render. An
object's score is its mean over target views and samples; objects are summarised by their mean with a
95% interval (:mod:`zero1to3.evaluation.stats`). FID, a set-level metric, is computed once over all
target views of all objects. Results are appended per object to ``OUT/results.jsonl`` so a killed run
resumes (:class:`zero1to3.evaluation.results.ResultStore`).
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from zero1to3.camera import spherical_of_camera
from zero1to3.evaluation.figure import save_grid
from zero1to3.evaluation.metrics import ImageMetrics, to_tensor
from zero1to3.evaluation.results import EvalResult, ResultStore
from zero1to3.evaluation.views import (PROTOCOLS, ProtocolError, ViewTask, list_objects, load_rgb, load_task,
                                       object_seed)

INPUT_COPY = "input-copy"
#: Objects shown in the comparison figure (the first ones, in name order).
FIGURE_ROWS = 8
#: Views sampled at once per object (targets x samples beyond it run in chunks).
EVAL_CHUNK = 64


def _call_kwargs(pipe: Any, task: ViewTask, sampler_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments the pipe accepts beyond the documented ones (evaluation inputs are already framed)."""
    try:
        params = inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return {}
    extra: dict[str, Any] = {k: v for k, v in sampler_kwargs.items() if k in params}
    if "preprocess" in params:
        extra["preprocess"] = False  # renders are already centred on white: re-cropping would move the object
    if "input_polar" in params:
        extra["input_polar"] = spherical_of_camera(task.object.poses[task.input_view])[0]
    if "batch_size" in params:
        extra.setdefault("batch_size", EVAL_CHUNK)  # memory flat in targets x samples
    return extra


def _predict(pipe: Any, task: ViewTask, input_image: np.ndarray, size: int, num_samples: int,
             guidance_scale: float, num_inference_steps: int, seed: int,
             sampler_kwargs: dict[str, Any]) -> np.ndarray:
    """uint8 [targets, samples, size, size, 3] predicted by ``pipe`` for the task's target poses."""
    pipe_size = getattr(pipe, "image_size", size)
    image = Image.fromarray(input_image)
    if image.size != (pipe_size, pipe_size):
        image = image.resize((pipe_size, pipe_size), Image.Resampling.LANCZOS)
    out = pipe(image, task.relative_poses, num_samples=num_samples, guidance_scale=guidance_scale,
               num_inference_steps=num_inference_steps, seed=seed, **_call_kwargs(pipe, task, sampler_kwargs))
    arr = np.asarray(out.array, dtype=np.uint8)
    expected = (len(task.targets), num_samples)
    if arr.shape[:2] != expected or arr.ndim != 5:
        raise ValueError(f"pipe returned images of shape {arr.shape}, expected {expected} + (H, W, 3)")
    if arr.shape[2:4] != (size, size):
        arr = np.stack([[np.asarray(Image.fromarray(s).resize((size, size), Image.Resampling.LANCZOS))
                         for s in per_pose] for per_pose in arr])
    return arr


def _score(metrics: ImageMetrics, pred: np.ndarray, gt: np.ndarray) -> tuple[dict[str, float], dict[str, list]]:
    """Object mean and per-target means (over samples) of each metric; ``pred`` [T, S, H, W, 3], ``gt`` [T, H, W, 3]."""
    t, s = pred.shape[:2]
    scores = metrics.per_image(to_tensor(pred.reshape(t * s, *pred.shape[2:])),
                               to_tensor(np.repeat(gt, s, axis=0)))
    per_view = {k: np.asarray(v).reshape(t, s).mean(axis=1).tolist() for k, v in scores.items()}
    return {k: float(np.mean(v)) for k, v in scores.items()}, per_view


def _image_dir(out: Path, obj: str, method: str) -> Path:
    return out / "images" / obj / method


def evaluate_nvs(pipe: Any, data_dir: str | Path, protocol: str = "random", *, input_view: str | int | None = None,
                 num_targets: int | None = None, limit: int | None = None, seed: int = 0,
                 baseline: Any | None = None, baseline_name: str = "baseline", model_name: str = "model",
                 num_samples: int = 1, guidance_scale: float = 3.0, num_inference_steps: int = 50,
                 out_dir: str | Path | None = None, metrics: ImageMetrics | None = None,
                 lpips_weights: str | None = None, fid_weights: str | None = None, ci: str = "t",
                 overwrite: bool = False, progress: bool = True, figure_rows: int = FIGURE_ROWS,
                 sampler_kwargs: dict[str, Any] | None = None,
                 config_extra: dict[str, Any] | None = None) -> EvalResult:
    """Evaluate ``pipe`` (called as ``pipe(image, poses, num_samples=, guidance_scale=, num_inference_steps=,
    seed=)`` returning ``.array`` uint8 [poses, samples, H, W, 3]) on the objects under ``data_dir``.

    Methods: ``model_name`` (``pipe``), ``baseline_name`` (``baseline``, if given) and ``input-copy``
    (the input image as the prediction for every target). With ``out_dir``, results are appended per
    object to ``out_dir/results.jsonl`` and an interrupted run continues where it stopped; predicted images,
    the summary (``summary.md/.json/.csv``) and ``figure.png`` are written there too. ``sampler_kwargs``
    (e.g. ``scheduler``, ``eta``) go to the pipes that accept them; ``config_extra`` joins the configuration
    that a resumed run must match.
    """
    from tqdm.auto import tqdm

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if len({model_name, baseline_name, INPUT_COPY}) < 3:
        raise ValueError("model, baseline and input-copy need distinct names")
    metrics = metrics or ImageMetrics(lpips_weights=lpips_weights, fid_weights=fid_weights)
    size = int(getattr(pipe, "image_size", 256))
    methods = [model_name] + ([baseline_name] if baseline is not None else []) + [INPUT_COPY]
    config = {"kind": "nvs", "data": str(Path(data_dir).resolve()), "protocol": protocol,
              "input_view": None if input_view is None else str(input_view), "targets": num_targets,
              "seed": seed, "samples": num_samples, "guidance": guidance_scale, "steps": num_inference_steps,
              "image_size": size, "methods": methods, "metrics": metrics.per_image_names, "ci": ci,
              "sampler": sampler_kwargs or {},
              **(config_extra or {})}
    objects = list_objects(data_dir, limit)
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="zero1to3-eval-")
        out = Path(tmp.name)
    else:
        out = Path(out_dir)
    try:
        store = ResultStore(out, config, overwrite=overwrite or out_dir is None)
        todo = [o for o in objects if o.name not in store]
        bar = tqdm(total=len(objects), initial=len(objects) - len(todo), desc="eval nvs", unit="obj",
                   disable=not progress)
        skipped: list[str] = []
        for obj in todo:
            try:
                task, inp, gt = load_task(obj, protocol, input_view, num_targets, seed, size)
            except ProtocolError as exc:
                if protocol == "orbit16" and not obj.skipped:
                    raise
                skipped.append(str(exc))
                bar.update(1)
                continue
            obj_seed = object_seed(seed, obj.name)
            preds = {model_name: _predict(pipe, task, inp, size, num_samples, guidance_scale,
                                          num_inference_steps, obj_seed, sampler_kwargs or {})}
            if baseline is not None:
                preds[baseline_name] = _predict(baseline, task, inp, size, num_samples, guidance_scale,
                                                num_inference_steps, obj_seed, sampler_kwargs or {})
            preds[INPUT_COPY] = np.broadcast_to(inp, (len(task.targets), 1, *inp.shape)).copy()
            record: dict[str, Any] = {"object": obj.name, "input_view": task.input_view, "targets": task.targets,
                                      "relative_poses_deg": [list(p.degrees()) for p in task.relative_poses],
                                      "scores": {}, "per_view": {}}
            for method, pred in preds.items():
                record["scores"][method], record["per_view"][method] = _score(metrics, pred, gt)
                if method != INPUT_COPY:
                    d = _image_dir(out, obj.name, method)
                    d.mkdir(parents=True, exist_ok=True)
                    for ti, target in enumerate(task.targets):
                        for si in range(pred.shape[1]):
                            Image.fromarray(pred[ti, si]).save(d / f"{target}_s{si}.png")
            store.append(record)
            bar.update(1)
        bar.close()
        records = [store.records[o.name] for o in objects if o.name in store]
        if not records:
            raise ProtocolError(f"no object under {data_dir} could be evaluated: {'; '.join(skipped)[:500]}")
        data_notes = [f"skipped object: {note}" for note in skipped]
        data_notes += [f"skipped view of {o.name}: {why}" for o in objects for why in o.skipped.values()]
        result = EvalResult("nvs", config, methods, metrics.per_image_names, records,
                            notices=data_notes + list(metrics.notices), out_dir=None if tmp else out)
        result.compute_summary(ci=ci, seed=seed)
        if metrics.has_fid:
            by_name = {o.name: o for o in objects}
            for m in methods:
                fid = metrics.fid(_gt_batches(records, by_name, size),
                                  _pred_batches(records, by_name, out, m, size, num_samples))
                result.set_metrics.setdefault(m, {})["fid"] = fid
            result.notices = data_notes + list(metrics.notices)
        if tmp is None:
            result.write(out)
            result.files["figure"] = _figure(out / "figure.png", records, {o.name: o for o in objects}, out,
                                             methods, size, figure_rows)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def _gt_batches(records: list[dict], objects: dict, size: int) -> Iterator[torch.Tensor]:
    for rec in records:
        obj = objects[rec["object"]]
        yield to_tensor(np.stack([obj.image(t, size) for t in rec["targets"]]))


def _pred_batches(records: list[dict], objects: dict, out: Path, method: str, size: int,
                  num_samples: int) -> Iterator[torch.Tensor]:
    for rec in records:
        if method == INPUT_COPY:
            inp = objects[rec["object"]].image(rec["input_view"], size)
            yield to_tensor(np.repeat(inp[None], len(rec["targets"]), axis=0))
            continue
        d = _image_dir(out, rec["object"], method)
        yield to_tensor(np.stack([load_rgb(d / f"{t}_s{s}.png", size) for t in rec["targets"]
                                  for s in range(num_samples)]))


def _figure(path: Path, records: list[dict], objects: dict, out: Path, methods: list[str], size: int,
            max_rows: int) -> Path | None:
    """Rows per object: input | ground truth | each method's first sample, for the first target view."""
    shown = [m for m in methods if m != INPUT_COPY]
    rows, labels = [], []
    for rec in records[:max_rows]:
        obj = objects[rec["object"]]
        target = rec["targets"][0]
        row = [obj.image(rec["input_view"], size), obj.image(target, size)]
        row += [load_rgb(_image_dir(out, rec["object"], m) / f"{target}_s0.png", size) for m in shown]
        rows.append(row)
        labels.append(rec["object"])
    if not rows:
        return None
    return save_grid(path, rows, ["input", "ground truth"] + shown, labels)
