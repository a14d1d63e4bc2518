"""Procedural objects: seeded, normalised, colourful and not rotationally symmetric."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from zero1to3.data.procedural import normalize_mesh, procedural_name, procedural_objects, random_object


def test_same_seed_same_object_and_different_seed_differs() -> None:
    a, b = random_object((0, 5)), random_object((0, 5))
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.visual.vertex_colors, b.visual.vertex_colors)
    c = random_object((0, 6))
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)


@pytest.mark.parametrize("index", range(6))
def test_unit_box_centred_with_colours(index: int) -> None:
    mesh = random_object((3, index))
    assert isinstance(mesh, trimesh.Trimesh)
    assert np.isclose(np.max(mesh.extents), 1.0)
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)
    colours = np.unique(mesh.visual.vertex_colors[:, :3], axis=0)
    assert len(colours) >= 3  # several parts/patterns, not one flat colour
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)


@pytest.mark.parametrize("index", range(6))
def test_not_symmetric_about_the_vertical_axis(index: int) -> None:
    # Some colour's centroid must lie off the Z axis, so a half turn changes the object's look.
    mesh = random_object((7, index))
    rgb = mesh.visual.vertex_colors[:, :3]
    keys, inverse = np.unique(rgb, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    offsets = [np.linalg.norm(mesh.vertices[inverse == k, :2].mean(axis=0)) for k in range(len(keys))]
    assert max(offsets) > 0.1


def test_family_slices_are_independent_of_start() -> None:
    items = list(procedural_objects(2, seed=1, start=3))
    assert [name for name, _ in items] == [procedural_name(3), procedural_name(4)] == ["proc_000003", "proc_000004"]
    np.testing.assert_array_equal(items[1][1].vertices, random_object((1, 4)).vertices)


def test_normalize_mesh_scales_and_centres() -> None:
    box = trimesh.creation.box(extents=(2.0, 4.0, 1.0))
    box.apply_translation((5.0, -3.0, 2.0))
    out = normalize_mesh(box)
    np.testing.assert_allclose(out.extents, (0.5, 1.0, 0.25))
    np.testing.assert_allclose(out.bounds.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(box.bounds.mean(axis=0), (5.0, -3.0, 2.0))  # input untouched
