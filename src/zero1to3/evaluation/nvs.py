"""Novel-view evaluation: model (+ optional second model) and two constant baselines on held-out renders.

For every object: pick an input view and target views (protocol, :mod:`zero1to3.evaluation.views`), ask
each method for the target views, and score each predicted image against the ground-truth render. The
constant baselines say what a model must beat: ``input-copy`` (the input as every prediction: no camera
motion) and ``blank-white`` (a white image: no object at all). An object's score is its mean over target
views and samples; objects are summarised by their mean with a 95% interval
(:mod:`zero1to3.evaluation.stats`). Where the objects carry the 30-deg orbit views, the orbit side check
(:func:`side_check`) scores whether the +90 and -90 deg views are told apart. FID, a set-level metric, is computed once over all
target views of all objects. Results are appended per object to ``OUT/results.jsonl`` so a killed run
resumes (:class:`zero1to3.evaluation.results.ResultStore`).
"""

from __future__ import annotations

import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from zero1to3.camera import relative_pose, spherical_of_camera
from zero1to3.evaluation.figure import save_grid
from zero1to3.evaluation.metrics import ALPHA_THRESHOLD, ImageMetrics, non_white, psnr, to_tensor
from zero1to3.evaluation.results import EvalResult, ResultStore
from zero1to3.evaluation.views import (PROTOCOLS, EvalObject, ProtocolError, ViewTask, find_side_views,
                                       list_objects, load_rgb, load_task, object_seed)
from zero1to3.preprocess import composite_on_white
from zero1to3.protocols import ViewSampler

INPUT_COPY = "input-copy"
BLANK_WHITE = "blank-white"
#: Baselines computed without a model (always part of a run).
CONSTANT_METHODS = (INPUT_COPY, BLANK_WHITE)
#: Per-object score of the orbit side check: 1 if both +-90 deg views are closer to their own ground truth.
ORBIT_SIDES = "orbit_sides"
#: Ground-truth +-90 deg views closer than this (PSNR, dB) look alike (round or mirror-symmetric objects):
#: there the side check measures chance more than the model, so the report also gives the rate without them.
SIDES_ALIKE_PSNR_DB = 30.0
#: Objects shown in the comparison figure (the first ones, in name order).
FIGURE_ROWS = 8
#: Objects whose images are read ahead while the model samples.
PREFETCH_OBJECTS = 2
#: Views sampled at once per object (targets x samples beyond it run in chunks).
EVAL_CHUNK = 64


def _predict(pipe: ViewSampler, task: ViewTask, size: int, *, num_samples: int, guidance_scale: float,
             num_inference_steps: int, seed: int, sampler_kwargs: dict[str, Any]) -> np.ndarray:
    """uint8 [targets, samples, size, size, 3] predicted by ``pipe`` for the task's target poses.

    The input goes to the pipe at the pipe's own size, resized once from the render (not via ``size``).
    Renders are already centred on white, so they go in without the object crop (``preprocess=False``);
    ``input_polar`` is the input camera's polar angle, which the Stable Zero123 pose encoding needs.
    """
    image = Image.fromarray(task.object.image(task.input_view, int(pipe.image_size)))
    input_polar = spherical_of_camera(task.object.poses[task.input_view])[0]
    out = pipe(image, task.relative_poses, num_samples=num_samples, guidance_scale=guidance_scale,
               num_inference_steps=num_inference_steps, seed=seed, preprocess=False, input_polar=input_polar,
               **{"batch_size": EVAL_CHUNK, **sampler_kwargs})  # memory flat in targets x samples
    arr = np.asarray(out.array, dtype=np.uint8)
    expected = (len(task.targets), num_samples)
    if arr.shape[:2] != expected or arr.ndim != 5:
        raise ValueError(f"pipe returned images of shape {arr.shape}, expected {expected} + (H, W, 3)")
    if arr.shape[2:4] != (size, size):
        arr = np.stack([[np.asarray(composite_on_white(Image.fromarray(s), size)) for s in per_pose]
                        for per_pose in arr])
    return arr


def _nanmean(values: np.ndarray, axis: int | None = None) -> Any:
    """Mean ignoring NaN (undefined mask scores); NaN -> None in the result so the JSON stays standard."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    if np.ndim(mean) == 0:
        return float(mean) if np.isfinite(mean) else None
    return [float(m) if np.isfinite(m) else None for m in mean]


def target_masks(obj: EvalObject, views: list[str], size: int, gt: np.ndarray,
                 white_threshold: float) -> torch.Tensor:
    """Foreground of the ground-truth views, bool [T, size, size]: alpha >= ``ALPHA_THRESHOLD`` after resizing;
    a view without alpha falls back to its own non-white pixels."""
    masks = []
    for view, image in zip(views, gt):
        alpha = obj.alpha(view, size)
        if alpha is None:
            masks.append(non_white(to_tensor(image), white_threshold)[0])
        else:
            masks.append(torch.from_numpy(alpha >= ALPHA_THRESHOLD))
    return torch.stack(masks)


def _score(metrics: ImageMetrics, pred: np.ndarray, gt: np.ndarray,
           gt_mask: torch.Tensor | None = None) -> tuple[dict[str, float | None], dict[str, list]]:
    """Object mean and per-target means (over samples) of each metric; ``pred`` [T, S, H, W, 3], ``gt`` [T, H, W, 3],
    ``gt_mask`` bool [T, H, W]."""
    t, s = pred.shape[:2]
    scores = metrics.per_image(to_tensor(pred.reshape(t * s, *pred.shape[2:])), to_tensor(np.repeat(gt, s, axis=0)),
                               None if gt_mask is None else gt_mask.repeat_interleave(s, dim=0))
    per_view = {k: _nanmean(np.asarray(v).reshape(t, s), axis=1) for k, v in scores.items()}
    return {k: _nanmean(v) for k, v in scores.items()}, per_view


def _constant_predictions(inp: np.ndarray, targets: int) -> dict[str, np.ndarray]:
    """input-copy and blank-white predictions, [targets, 1, H, W, 3]."""
    return {INPUT_COPY: np.broadcast_to(inp, (targets, 1, *inp.shape)).copy(),
            BLANK_WHITE: np.full((targets, 1, *inp.shape), 255, dtype=np.uint8)}


def side_check(pred: np.ndarray, gt_plus: np.ndarray, gt_minus: np.ndarray) -> dict[str, Any]:
    """Orbit side check of one object: are the predicted +90 and -90 deg views each closer (PSNR) to their own
    ground truth than to the other side's?

    ``pred`` uint8 [2, S, H, W, 3] (row 0: +90, row 1: -90; PSNR averaged over the S samples), ``gt_*``
    uint8 [H, W, 3]. A prediction that is the same image for both sides (a copy, a blank) cannot pass.
    """
    s = pred.shape[1]
    p = to_tensor(pred.reshape(2 * s, *pred.shape[2:]))
    plus, minus = to_tensor(gt_plus).expand(s, -1, -1, -1), to_tensor(gt_minus).expand(s, -1, -1, -1)
    out = {"psnr_plus_own": float(psnr(p[:s], plus).mean()), "psnr_plus_other": float(psnr(p[:s], minus).mean()),
           "psnr_minus_own": float(psnr(p[s:], minus).mean()),
           "psnr_minus_other": float(psnr(p[s:], plus).mean())}
    out["pass"] = bool(out["psnr_plus_own"] > out["psnr_plus_other"]
                       and out["psnr_minus_own"] > out["psnr_minus_other"])
    return out


def _image_dir(out: Path, obj: str, method: str) -> Path:
    return out / "images" / obj / method


def evaluate_nvs(pipe: ViewSampler, data_dir: str | Path, protocol: str = "random", *, input_view: str | int | None = None,
                 num_targets: int | None = None, limit: int | None = None, seed: int = 0,
                 baseline: ViewSampler | None = None, baseline_name: str = "baseline", model_name: str = "model",
                 num_samples: int = 1, guidance_scale: float = 3.0, num_inference_steps: int = 50,
                 out_dir: str | Path | None = None, metrics: ImageMetrics | None = None,
                 lpips_weights: str | None = None, fid_weights: str | None = None, ci: str = "t",
                 overwrite: bool = False, progress: bool = True, figure_rows: int = FIGURE_ROWS,
                 sampler_kwargs: dict[str, Any] | None = None, image_size: int | None = None,
                 orbit_sides: bool | None = None, config_extra: dict[str, Any] | None = None) -> EvalResult:
    """Evaluate ``pipe`` (called as ``pipe(image, poses, num_samples=, guidance_scale=, num_inference_steps=,
    seed=)`` returning ``.array`` uint8 [poses, samples, H, W, 3]) on the objects under ``data_dir``.

    Methods: ``model_name`` (``pipe``), ``baseline_name`` (``baseline``, if given), ``input-copy`` (the input
    image as the prediction for every target) and ``blank-white`` (a white image). Images are compared at
    ``image_size`` (default: the model's ``image_size``); renders are resized to it, the model gets its own
    size and its output is resized. ``orbit_sides``: run the orbit side check (:func:`side_check`) on every
    object; None = when the first object has the views at elevation 30 deg, azimuth 0 and +-90 deg. With
    ``out_dir``, results are appended per object to ``out_dir/results.jsonl`` and an interrupted run continues
    where it stopped; predicted images, the summary (``summary.md/.json/.csv``) and ``figure.png`` are written
    there too. ``sampler_kwargs`` (e.g. ``scheduler``, ``eta``) go to every pipe's call;
    ``config_extra`` joins the configuration that a resumed run must match.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    if len({model_name, baseline_name, *CONSTANT_METHODS}) < 2 + len(CONSTANT_METHODS):
        raise ValueError(f"model, baseline and the baselines {CONSTANT_METHODS} need distinct names")
    metrics = metrics or ImageMetrics(lpips_weights=lpips_weights, fid_weights=fid_weights)
    model_size = int(pipe.image_size)
    size = int(image_size or model_size)
    methods = [model_name] + ([baseline_name] if baseline is not None else []) + list(CONSTANT_METHODS)
    objects = list_objects(data_dir, limit)
    if orbit_sides is None:
        orbit_sides = find_side_views(objects[0]) is not None
    metric_names = metrics.per_image_names + ([ORBIT_SIDES] if orbit_sides else [])
    config = {"kind": "nvs", "data": str(Path(data_dir).resolve()), "protocol": protocol,
              "input_view": None if input_view is None else str(input_view), "targets": num_targets,
              "seed": seed, "samples": num_samples, "guidance": guidance_scale, "steps": num_inference_steps,
              "image_size": size, "model_image_size": model_size, "methods": methods, "metrics": metric_names,
              "white_threshold": metrics.white_threshold, "ci": ci, "sampler": sampler_kwargs or {},
              **(config_extra or {})}
    tmp = None
    if out_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="zero1to3-eval-")
        out = Path(tmp.name)
    else:
        out = Path(out_dir)
    models = {model_name: pipe, **({baseline_name: baseline} if baseline is not None else {})}
    call = dict(num_samples=num_samples, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                sampler_kwargs=sampler_kwargs or {})
    try:
        store = ResultStore(out, config, overwrite=overwrite or out_dir is None)
        todo = [o for o in objects if o.name not in store]
        bar = tqdm(total=len(objects), initial=len(objects) - len(todo), desc="eval nvs", unit="obj",
                   disable=not progress)
        skipped: list[str] = []
        for obj, task, loaded in _prefetched(todo, lambda o: _load_object(o, protocol, input_view, num_targets,
                                                                            seed, size, metrics, orbit_sides)):
            if task is None:
                skipped.append(loaded["skipped"])
                bar.update(1)
                continue
            inp, gt, gt_mask = loaded["input"], loaded["targets"], loaded["masks"]
            obj_seed = object_seed(seed, obj.name)
            preds = {name: _predict(m, task, size, seed=obj_seed, **call) for name, m in models.items()}
            preds.update(_constant_predictions(inp, len(task.targets)))
            record: dict[str, Any] = {"object": obj.name, "input_view": task.input_view, "targets": task.targets,
                                      "relative_poses_deg": [list(p.degrees()) for p in task.relative_poses],
                                      "scores": {}, "per_view": {}}
            for method, pred in preds.items():
                record["scores"][method], record["per_view"][method] = _score(metrics, pred, gt, gt_mask)
                if method not in CONSTANT_METHODS:
                    _save_images(_image_dir(out, obj.name, method), task.targets, pred)
            if orbit_sides:
                record["sides"] = _run_side_check(loaded["sides"], models, size,
                                                  object_seed(seed, obj.name + "/sides"), out, call)
                for method, check in (record["sides"] or {}).get("methods", {}).items():
                    record["scores"][method][ORBIT_SIDES] = float(check["pass"])
            store.append(record)
            bar.update(1)
        bar.close()
        records = [store.records[o.name] for o in objects if o.name in store]
        if not records:
            raise ProtocolError(f"no object under {data_dir} could be evaluated: {'; '.join(skipped)[:500]}")
        data_notes = [f"skipped object: {note}" for note in skipped]
        data_notes += [f"skipped view of {o.name}: {why}" for o in objects for why in o.skipped.values()]
        result = EvalResult("nvs", config, methods, metric_names, records,
                            notices=data_notes + list(metrics.notices), out_dir=None if tmp else out)
        result.compute_summary(ci=ci, seed=seed)
        if metrics.has_fid:
            by_name = {o.name: o for o in objects}
            for m in methods:
                fid = metrics.fid(_gt_batches(records, by_name, size),
                                  _pred_batches(records, by_name, out, m, size, num_samples))
                result.set_metrics.setdefault(m, {})["fid"] = fid
            result.notices = data_notes + list(metrics.notices)
        if orbit_sides:
            result.notices += side_check_lines(records, methods)
        if tmp is None:
            result.write(out)
            result.files["figure"] = _figure(out / "figure.png", records, {o.name: o for o in objects}, out,
                                             methods, size, figure_rows)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def _save_images(folder: Path, targets: list[str], pred: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for ti, target in enumerate(targets):
        for si in range(pred.shape[1]):
            Image.fromarray(pred[ti, si]).save(folder / f"{target}_s{si}.png")


def _load_object(obj: EvalObject, protocol: str, input_view: str | int | None, num_targets: int | None, seed: int,
                 size: int, metrics: ImageMetrics, orbit_sides: bool) -> tuple[ViewTask, dict[str, Any]]:
    """The object's view choice and every image the evaluation compares (read ahead of the model, in a thread).

    Unreadable views are left out (``obj.skipped``); an object that cannot be evaluated at all comes back as
    ``(None, {"skipped": reason})`` so the run goes on and reports it.
    """
    try:
        task, inp, gt = load_task(obj, protocol, input_view, num_targets, seed, size)
    except ProtocolError as exc:
        if not obj.skipped:  # the data cannot serve the protocol at all: the run's error, not one object's
            raise
        return None, {"skipped": str(exc)}
    loaded: dict[str, Any] = {"input": inp, "targets": gt, "masks": None, "sides": None}
    if metrics.mask_metrics:
        loaded["masks"] = target_masks(obj, task.targets, size, gt, metrics.white_threshold)
    if orbit_sides:
        views = find_side_views(obj)
        if views is not None:
            inp_view, plus, minus = views
            side_task = ViewTask(obj, inp_view, [plus, minus],
                                 [relative_pose(obj.poses[t], obj.poses[inp_view]) for t in (plus, minus)])
            try:
                loaded["sides"] = (side_task, obj.image(inp_view, size), obj.image(plus, size), obj.image(minus, size))
            except ValueError as exc:  # an unreadable orbit view: no side check for this object
                obj.skipped.setdefault("orbit", str(exc))
    return task, loaded


def _prefetched(objects: list[EvalObject], load: Callable[[EvalObject], tuple[ViewTask, dict[str, Any]]],
                ahead: int = PREFETCH_OBJECTS) -> Iterator[tuple[EvalObject, ViewTask, dict[str, Any]]]:
    """(object, *load(object)) in order, loading up to ``ahead`` objects in a background thread so that PNG
    decoding and resizing overlap the model's sampling (on a GPU the model would otherwise wait for them)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="eval-load") as pool:
        pending: deque = deque()
        it = iter(objects)
        for obj in it:
            pending.append((obj, pool.submit(load, obj)))
            if len(pending) >= ahead:
                break
        while pending:
            obj, future = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(load, nxt)))
            yield (obj, *future.result())


def _run_side_check(sides: tuple | None, models: dict[str, Any], size: int, seed: int, out: Path,
                    call: dict[str, Any]) -> dict[str, Any] | None:
    """The side check of every method on one object (None when it lacks the orbit views)."""
    if sides is None:
        return None
    task, inp, gt_plus, gt_minus = sides
    plus, minus = task.targets
    preds = {name: _predict(m, task, size, seed=seed, **call) for name, m in models.items()}
    preds.update(_constant_predictions(inp, 2))
    checks = {}
    for method, pred in preds.items():
        checks[method] = side_check(pred, gt_plus, gt_minus)
        if method not in CONSTANT_METHODS:
            _save_images(_image_dir(out, task.object.name, method) / "sides", [plus, minus], pred)
    gt_sides = float(psnr(to_tensor(gt_plus), to_tensor(gt_minus)).reshape(-1)[0])
    return {"input_view": task.input_view, "plus_view": plus, "minus_view": minus, "gt_sides_psnr": gt_sides,
            "methods": checks}


def side_check_lines(records: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """One line for the report: objects passing the orbit side check per method, with the count."""
    checked = [r for r in records if r.get("sides")]
    parts = []
    for m in methods:
        passed = sum(1 for r in checked if r["sides"]["methods"].get(m, {}).get("pass"))
        parts.append(f"{m} {passed}/{len(checked)}" + (f" ({100.0 * passed / len(checked):.1f}%)" if checked else ""))
    line = ("Orbit side check (input at elevation 30 deg, azimuth 0; the +90 and -90 deg views each closer in PSNR "
            "to their own ground truth than to the other side's): objects passing: " + ", ".join(parts) + ".")
    missing = len(records) - len(checked)
    if missing:
        line += f" {missing} object(s) without the orbit views were not checked."
    alike = [r for r in checked if r["sides"].get("gt_sides_psnr", 0.0) >= SIDES_ALIKE_PSNR_DB]
    if alike:
        distinct = [r for r in checked if r not in alike]
        rates = []
        for m in methods:
            passed = sum(1 for r in distinct if r["sides"]["methods"].get(m, {}).get("pass"))
            rates.append(f"{m} {passed}/{len(distinct)}" + (f" ({100.0 * passed / len(distinct):.1f}%)" if distinct else ""))
        line += (f" {len(alike)} of the {len(checked)} objects have +-90 deg ground truths within "
                 f"{SIDES_ALIKE_PSNR_DB:g} dB PSNR of each other (round or mirror-symmetric: the sides look "
                 "alike, so passing there is chance); on the others: " + ", ".join(rates) + ".")
    return [line]


def _gt_batches(records: list[dict], objects: dict, size: int) -> Iterator[torch.Tensor]:
    for rec in records:
        obj = objects[rec["object"]]
        yield to_tensor(np.stack([obj.image(t, size) for t in rec["targets"]]))


def _pred_batches(records: list[dict], objects: dict, out: Path, method: str, size: int,
                  num_samples: int) -> Iterator[torch.Tensor]:
    for rec in records:
        if method in CONSTANT_METHODS:
            inp = objects[rec["object"]].image(rec["input_view"], size)
            yield to_tensor(_constant_predictions(inp, len(rec["targets"]))[method][:, 0])
            continue
        d = _image_dir(out, rec["object"], method)
        yield to_tensor(np.stack([load_rgb(d / f"{t}_s{s}.png", size) for t in rec["targets"]
                                  for s in range(num_samples)]))


def _figure(path: Path, records: list[dict], objects: dict, out: Path, methods: list[str], size: int,
            max_rows: int) -> Path | None:
    """Rows per object: input | ground truth | each method's first sample, for the first target view."""
    shown = [m for m in methods if m not in CONSTANT_METHODS]
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
