"""Single-image 3D reconstruction quality on held-out objects (issue 6; real test-split objects: issue 15).

For each of ``--objects`` held-out objects (procedural family 987654, training used family 0; or the
objects of ``--data``, a render folder written with ``--save-mesh``, e.g. the corpus's test split) one
rendered view is the input; the shipped default model (``Zero123Pipeline.from_pretrained()``) supervises the reconstruction.
The result and the mask-only baselines (visual hull of the reference mask, and a sphere) are scored
against the true mesh with :func:`zero1to3.recon.metrics.evaluate_mesh` (unit-box normalisation, Chamfer,
volumetric IoU, F-score@0.05). Prints a Markdown table and writes ``results.json`` to ``--out``.

Frame alignment: the reconstruction's input camera sits at azimuth 0 (``recon/views.py``), the real
input camera at azimuth ``phi``. ``look_at`` with +Z up commutes with rotations about Z, so
``pose(elev, phi, r) = camera_at(elev, 0, r) o Rz(-phi)``: rotating the true mesh by ``Rz(-phi)`` puts it
in the reconstruction's frame. This is checked numerically per object (the rotated mesh seen from the
azimuth-0 camera must project exactly where the original mesh projects in the real input view).
Scale and translation are left to ``evaluate_mesh``'s unit-box normalisation (the pipeline's crop
changes the apparent object size, and the render radius differs from the reconstruction's 2.0).

    python benchmarks/recon_quality.py --objects 3 --steps 300 --seed 0 --out /tmp/recon_quality
    # real test objects, 4 processes sharing one GPU (objects k, k+4, ...):
    zero1to3 render -o rq --meshes <test-split GLBs> --views 13 --resolution 64 --save-mesh
    for k in 0 1 2 3; do python benchmarks/recon_quality.py --data rq --objects 20 --part $k/4 --out out$k & done
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import trimesh

HELD_OUT_SEED = 987654  # procedural family never seen in training (training: seed 0)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--objects", type=int, default=3, help="number of held-out objects")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps per object")
    p.add_argument("--seed", type=int, default=0, help="reconstruction seed")
    p.add_argument("--out", type=Path, default=Path("recon_quality_out"), help="output folder")
    p.add_argument("--model", default=None, help="model folder/.ckpt (default: the shipped tiny model)")
    p.add_argument("--grid", type=_ints, default=(32, 48), help="coarse-to-fine grid sizes")
    p.add_argument("--render", type=_ints, default=(32, 48), help="coarse-to-fine render sizes")
    p.add_argument("--batch-size", type=int, default=2, help="novel views per SDS step")
    p.add_argument("--sds-weight", type=float, default=None, help="override ReconConfig.w_sds")
    p.add_argument("--elevation-range", type=float, nargs=2, default=(-10.0, 35.0),
                   help="input view = first view whose elevation lies in this range")
    p.add_argument("--data", type=Path, default=None,
                   help="render folder with mesh.ply per object (render --save-mesh) instead of procedural objects")
    p.add_argument("--part", default="0/1", metavar="K/N",
                   help="evaluate objects K, K+N, K+2N, ... (N processes can share one GPU)")
    p.add_argument("--turntable", type=Path, default=None,
                   help="write the first object's turntable GIF here (and its input as <stem>_input.png)")
    return p.parse_args(argv)


def camera_angles(pose: np.ndarray) -> tuple[float, float, float]:
    """(elevation deg, azimuth deg, radius) of a world->camera pose (polar measured from +Z)."""
    from zero1to3.camera import spherical_of_camera

    polar, azimuth, radius = spherical_of_camera(pose)
    return 90.0 - math.degrees(polar), math.degrees(azimuth) % 360.0, radius


def pick_view(folder: Path, lo: float, hi: float) -> tuple[int, float, float, float]:
    views = sorted(folder.glob("*.npy"))
    for path in views:
        elev, az, r = camera_angles(np.load(path))
        if lo <= elev <= hi:
            return int(path.stem), elev, az, r
    raise RuntimeError(f"{folder}: no view with elevation in [{lo}, {hi}]")


def align_gt(mesh: trimesh.Trimesh, azimuth_deg: float) -> trimesh.Trimesh:
    """The true mesh in the reconstruction's frame (input camera moved to azimuth 0): Rz(-azimuth)."""
    out = mesh.copy()
    out.apply_transform(trimesh.transformations.rotation_matrix(math.radians(-azimuth_deg), [0, 0, 1]))
    return out


def check_alignment(mesh: trimesh.Trimesh, aligned: trimesh.Trimesh, pose: np.ndarray, elev: float,
                    radius: float) -> float:
    """Max reprojection difference (px at 64 px) between the real input view and the aligned frame's."""
    from zero1to3.recon.baseline import project
    from zero1to3.camera import camera_at

    a, _ = project(np.asarray(mesh.vertices), np.asarray(pose, np.float64), 64, 49.1)
    b, _ = project(np.asarray(aligned.vertices), camera_at(elev, 0.0, radius), 64, 49.1)
    return float(np.abs(a - b).max())


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from zero1to3.data.writer import render_dataset
    from zero1to3.pipeline import Zero123Pipeline
    from zero1to3.recon.baseline import baseline_mesh
    from zero1to3.recon.metrics import evaluate_mesh
    from zero1to3.recon.reconstruct import ReconConfig, reconstruct, render_turntable

    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.out / "data"
        render_dataset(data, args.objects, num_views=13, resolution=64, seed=HELD_OUT_SEED, save_mesh=True,
                       progress=False)
    part, parts = (int(v) for v in args.part.split("/"))
    pipe = Zero123Pipeline.from_pretrained(args.model, device="cuda" if torch.cuda.is_available() else "cpu")
    n = len(args.grid)
    extra = {} if args.sds_weight is None else {"w_sds": args.sds_weight}
    records = []
    skipped: dict[str, str] = {}
    folders = sorted(p for p in data.iterdir() if p.is_dir())[: args.objects][part::parts]
    for k, folder in enumerate(folders):
        view, elev, az, radius = pick_view(folder, *args.elevation_range)
        pose = np.load(folder / f"{view:03d}.npy")
        gt_world = trimesh.load(folder / "mesh.ply", force="mesh")
        gt = align_gt(gt_world, az)
        err = check_alignment(gt_world, gt, pose, elev, radius)
        if err > 1e-3:
            raise RuntimeError(f"{folder.name}: frame alignment check failed ({err:.3g} px)")
        config = ReconConfig(steps=args.steps, seed=args.seed, elevation_deg=elev, batch_size=args.batch_size,
                             grid_resolutions=args.grid, render_resolutions=args.render,
                             milestones=tuple(i / n for i in range(n)), **extra)
        t0 = time.perf_counter()
        try:
            result = reconstruct(pipe, folder / f"{view:03d}.png", config, progress=False)
        except ValueError as exc:  # e.g. an input view with no object in it: the other objects still count
            skipped[folder.name] = str(exc)
            print(f"# {folder.name}: view {view:03d} skipped ({exc})", flush=True)
            continue
        seconds = time.perf_counter() - t0
        mask = result.reference.mask.cpu().numpy()
        meshes = {"ours (SDS)": result.mesh,
                  "baseline: mask hull": baseline_mesh(mask, "hull", elevation_deg=elev),
                  "baseline: sphere": baseline_mesh(mask, "sphere")}
        for method, mesh in meshes.items():
            m = evaluate_mesh(mesh, gt, seed=args.seed)
            rec = dict(object=folder.name, view=view, elevation=elev, azimuth=az, method=method,
                       seconds=seconds if method.startswith("ours") else None, **m.as_dict())
            records.append(rec)
        result.mesh.export(args.out / f"{folder.name}_ours.ply")
        if k == 0 and args.turntable is not None:
            render_turntable(result.field, args.turntable, frames=36, elevation_deg=elev, resolution=96, fps=12)
            result.reference.image.resize((96, 96)).save(args.turntable.with_name(args.turntable.stem + "_input.png"))
        print(f"# {folder.name}: view {view:03d} (elev {elev:.1f}, az {az:.1f}), {seconds:.1f} s, "
              f"iso {result.iso.describe()}", flush=True)
    (args.out / "results.json").write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()},
                                                           records=records, skipped=skipped), indent=2))
    if skipped:
        print(f"\n{len(skipped)} object(s) skipped (not in the means): {', '.join(skipped)}")
    print("\n| object (input view) | method | Chamfer ↓ | IoU ↑ | F@0.05 ↑ | s / object |")
    print("|---|---|---|---|---|---|")
    for r in records:
        sec = f"{r['seconds']:.0f}" if r["seconds"] is not None else ""
        print(f"| {r['object']} (v{r['view']:03d}, el {r['elevation']:.0f}°, az {r['azimuth']:.0f}°) | "
              f"{r['method']} | {r['chamfer']:.3f} | {r['iou']:.3f} | {r['fscore']:.3f} | {sec} |")
    for method in dict.fromkeys(r["method"] for r in records):
        sel = [r for r in records if r["method"] == method]
        sec = [r["seconds"] for r in sel if r["seconds"] is not None]
        print(f"| **mean** | {method} | {np.mean([r['chamfer'] for r in sel]):.3f} | "
              f"{np.mean([r['iou'] for r in sel]):.3f} | {np.mean([r['fscore'] for r in sel]):.3f} | "
              f"{f'{np.mean(sec):.0f}' if sec else ''} |")


if __name__ == "__main__":
    main()
