"""3D metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from zero1to3.recon.metrics import (chamfer_distance, evaluate_mesh, fscore, inside_grid, normalize_mesh,
                                    volume_iou)


def box(extents=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents)
    mesh.apply_translation(offset)
    return mesh


def test_concentric_spheres() -> None:
    outer = trimesh.creation.icosphere(5, radius=0.5)
    inner = trimesh.creation.icosphere(5, radius=0.4)
    # every point of one sphere is 0.1 from the other: each half of Chamfer is 0.1
    cd, acc, comp = chamfer_distance(outer, inner, 20_000)
    assert acc == pytest.approx(0.1, abs=2e-3) and comp == pytest.approx(0.1, abs=2e-3)
    assert cd == pytest.approx(0.2, abs=4e-3)
    assert volume_iou(outer, inner, 96) == pytest.approx(0.8 ** 3, abs=0.01)
    assert fscore(outer, inner, 0.05, 5_000)[0] == 0.0
    assert fscore(outer, inner, 0.15, 5_000)[0] == 1.0


def test_offset_cubes_iou() -> None:
    a, b = box(), box(offset=(0.5, 0.0, 0.0))
    assert volume_iou(a, b, 96) == pytest.approx(1.0 / 3.0, abs=0.01)
    c = box(offset=(0.7, 0.3, 0.1))            # overlap 0.3 x 0.7 x 0.9
    inter = 0.3 * 0.7 * 0.9
    assert volume_iou(a, c, 96) == pytest.approx(inter / (2 - inter), abs=0.01)
    assert volume_iou(a, box(offset=(2.0, 0, 0)), 32) == 0.0


def test_inside_grid_counts_volume() -> None:
    sphere = trimesh.creation.icosphere(4, radius=0.5)
    lo, hi = np.full(3, -0.5), np.full(3, 0.5)
    occ = inside_grid(sphere, lo, hi, 64)
    assert occ.mean() == pytest.approx(4 / 3 * np.pi * 0.125, rel=0.02)


def test_normalisation_makes_similar_copies_equal() -> None:
    ref = box((1.0, 0.5, 0.8))
    moved = ref.copy()
    moved.apply_scale(3.0)
    moved.apply_translation((5.0, -1.0, 2.0))
    n = normalize_mesh(moved)
    assert np.allclose(n.bounds, [[-0.5, -0.25, -0.4], [0.5, 0.25, 0.4]])
    m = evaluate_mesh(moved, ref, num_points=5_000, iou_resolution=48)
    assert m.iou > 0.97 and m.fscore == 1.0 and m.chamfer < 0.03
    raw = evaluate_mesh(moved, ref, normalize=False, num_points=2_000, iou_resolution=32)
    assert raw.iou == 0.0 and raw.fscore == 0.0
    assert set(m.as_dict()) >= {"chamfer", "iou", "fscore", "precision", "recall"}


def test_empty_mesh_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        evaluate_mesh(trimesh.Trimesh(), box())
