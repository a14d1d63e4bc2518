"""OpenSCAD programs as corpus objects (reader "openscad"): evaluated once by the openscad tool into OUT/.extract.

Skipped where the ``openscad`` command is absent (``apt-get install -y openscad``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from zero1to3.data.corpus import SOURCES, DEFAULT_SPLITS, Source, _iter_files, build_corpus

needs_openscad = pytest.mark.skipif(shutil.which("openscad") is None, reason="openscad not installed")


def _programs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "block.scad").write_text("cube([2, 1, 1]);\n")
    (folder / "flat.scad").write_text("square(1);\n")  # 2D only: no mesh
    return folder


@needs_openscad
def test_scad_to_ply_makes_one_coloured_mesh_once(tmp_path: Path) -> None:
    """A 2 x 1 x 1 cube: 12 triangles in OpenSCAD's yellow, as triangle soup (flat-shaded) in canonical order (a
    fresh conversion gives the same bytes); the second call reuses the PLY; a 2D program fails with OpenSCAD's
    own message."""
    import trimesh

    from zero1to3.data.openscad import OPENSCAD_COLOUR, scad_to_ply

    folder = _programs(tmp_path / "scad")
    ply = scad_to_ply(folder / "block.scad", tmp_path / "x" / "block.ply")
    mesh = trimesh.load(ply, process=False)
    assert len(mesh.faces) == 12 and np.allclose(mesh.extents, [2, 1, 1])
    assert tuple(mesh.visual.vertex_colors[0]) == OPENSCAD_COLOUR == (249, 215, 44, 255)
    assert not (tmp_path / "x" / "block.stl").exists()
    assert len(mesh.vertices) == 36 and np.all(np.diff(mesh.vertices[::3, 0]) >= 0)
    assert scad_to_ply(folder / "block.scad", tmp_path / "y" / "block.ply").read_bytes() == ply.read_bytes()
    stamp = ply.stat().st_mtime_ns
    assert scad_to_ply(folder / "block.scad", ply) == ply and ply.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="openscad: Current top level object is not a 3D object"):
        scad_to_ply(folder / "flat.scad", tmp_path / "x" / "flat.ply")


@needs_openscad
def test_build_reads_scad_programs(tmp_path: Path) -> None:
    """A folder source with reader "openscad": the cube becomes one vertex-coloured object (12 triangles), its
    PLY kept in OUT/.extract/<source>/; the 2D program is one line of failed.txt."""
    folder = _programs(tmp_path / "scad")
    source = Source("my-scad", (str(folder),), (".scad",), kind="folder", reader="openscad", category_levels=())
    out = tmp_path / "corpus"
    summary = build_corpus(out, [source], splits={"my-scad": "train"}, progress=False, note=lambda _: None)
    assert summary.objects == 1 and summary.failed == 1
    (row,) = json.loads((out / "manifest.json").read_text())["objects"]
    assert (row["id"], row["faces"], row["textured"], row["vertex_colours"], row["split"]) == (
        "my-scad__block", 12, False, True, "train")
    assert (out / ".extract" / "my-scad" / "block.ply").is_file()
    assert (out / "failed.txt").read_text() == (
        "flat.scad: ValueError: openscad: Current top level object is not a 3D object.\n")


def test_openscad_source_is_train_and_names_its_programs() -> None:
    """The registry's OpenSCAD examples (CC0) are training data; when the package is installed, 43 of its 48
    programs are read (5 left out by name)."""
    source = SOURCES["openscad"]
    assert DEFAULT_SPLITS["openscad"] == "train" and source.reader == "openscad" and "CC0" in source.licence
    if not Path(source.roots[0]).is_dir():
        pytest.skip("openscad's examples not installed (apt-get install -y openscad)")
    found = [rel for rel, _, _ in _iter_files(source, Path("/nonexistent"))]
    assert len(found) == 43 and "Old/example001.scad" in found and "Parametric/candleStand.scad" in found
    assert not {"Advanced/children.scad", "Functions/functions.scad", "Old/example018.scad"} & set(found)


def _shuffled(vertices: np.ndarray, faces: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same triangles listed another way: vertices permuted (and one duplicated, as triangle soup has), faces
    permuted and each turned cyclically by a random 0-2 steps (winding kept)."""
    rng = np.random.default_rng(seed)
    vertices = np.concatenate([vertices, vertices[:1]])  # an exact copy of vertex 0: merged again
    faces = np.where(faces == 0, rng.choice([0, len(vertices) - 1], faces.shape), faces)
    perm = rng.permutation(len(vertices))
    inverse = np.argsort(perm)
    faces = inverse[faces][rng.permutation(len(faces))]
    turns = rng.integers(0, 3, len(faces))
    faces = np.stack([np.roll(row, -t) for row, t in zip(faces, turns)])
    return vertices[perm], faces


def test_canonical_mesh_ignores_vertex_and_face_order() -> None:
    """Two listings of one mesh (vertices and faces permuted, faces turned cyclically, a duplicated vertex, -0.0)
    give byte-identical arrays; a triangle soup (three vertices per face, as STL) gives the same too."""
    import trimesh

    from zero1to3.data.openscad import canonical_mesh

    mesh = trimesh.creation.icosphere(subdivisions=1)
    base = canonical_mesh(mesh.vertices, mesh.faces)
    vertices = mesh.vertices.copy()
    vertices[np.abs(vertices) < 1e-12] = -0.0
    soup = (vertices[mesh.faces].reshape(-1, 3), np.arange(3 * len(mesh.faces)).reshape(-1, 3))
    for vs, fs in [_shuffled(vertices, mesh.faces, 1), _shuffled(vertices, mesh.faces, 2), soup]:
        v, f = canonical_mesh(vs, fs)
        assert v.tobytes() == base[0].tobytes() and f.tobytes() == base[1].tobytes()
    v, f = base
    assert v.dtype == np.float64 and f.dtype == np.int64 and len(v) == len(mesh.vertices)
    assert np.all(np.diff(f[:, 0]) >= 0) and np.all(f[:, 0] == f.min(axis=1))  # sorted, smallest index first
    assert np.all(v[np.lexsort(v.T[::-1])] == v)  # vertices sorted by (x, y, z)


def test_canonical_mesh_keeps_geometry_and_winding() -> None:
    """The canonical mesh has the same vertex set, volume, area and set of (outward) face normals as the input:
    faces are only turned cyclically, never flipped."""
    import trimesh

    from zero1to3.data.openscad import canonical_mesh

    mesh = trimesh.creation.box(extents=(2, 1, 0.5))
    mesh = trimesh.util.concatenate([mesh, trimesh.creation.icosphere(1, 0.4).apply_translation((2, 0, 0))])
    vs, fs = _shuffled(mesh.vertices, mesh.faces, 3)
    v, f = canonical_mesh(vs, fs)
    out = trimesh.Trimesh(v, f, process=False)
    assert np.isclose(out.volume, mesh.volume) and np.isclose(out.area, mesh.area) and out.volume > 0
    key = lambda m: sorted(map(tuple, np.round(np.concatenate([m.triangles_center, m.face_normals], 1), 9)))
    assert key(out) == key(mesh)
    assert np.array_equal(np.unique(v, axis=0), np.unique(mesh.vertices, axis=0))
