"""Red Eclipse (``redeclipse-data``) and the up axis of a source that mixes formats: its OBJ files are written
+Y up and read raw by trimesh, its MD5 (and IQM) files are written +Z up and turned +Y up by assimp, so both
are +Y up as loaded. Hand-written upright models of both kinds must come out with their tallest side on the
GLB's +Y. With the source's old ``up_axis="z"`` every Red Eclipse object lay a quarter turn off upright (the
test renders before 2026-12-02). CPU, seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from zero1to3.data.corpus import SOURCES, convert_object, write_glb

#: formats whose assimp readers turn the file's +Z up into +Y up (a Z-up -> Y-up matrix on the root node)
ASSIMP_TURNED = (".ase", ".md3", ".iqm", ".md5mesh")


def test_sources_reading_assimp_turned_formats_declare_y_up() -> None:
    """A source holding any format assimp turns +Y up declares ``y`` (its files as loaded); a source mixing
    such a format with others loads them all with one axis, so the others must be +Y up too (Red Eclipse's
    OBJ files are). This is the check ``redeclipse-data`` (``.iqm``, ``.md5mesh`` with ``z``) failed."""
    turned = sorted(n for n, s in SOURCES.items() if set(s.extensions) & set(ASSIMP_TURNED))
    assert {"redeclipse-data", "scorched3d-data", "nexuiz-data", "openarena-data"} <= set(turned)
    assert [n for n in turned if SOURCES[n].up_axis != "y"] == []


def _upright_lamp() -> trimesh.Trimesh:
    """A base 1 x 2 x 0.5 (file Y longer) with a thin post 2.5 tall on it along file Z: 1 x 2 x 3 in all."""
    base = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    post = trimesh.creation.box(extents=(0.2, 0.2, 2.5))
    post.apply_translation((0.0, 0.0, 0.25 + 1.25))
    return trimesh.util.concatenate([base, post])


def _md5mesh_text(mesh: trimesh.Trimesh) -> str:
    """An MD5 mesh (id Tech 4, +Z up as written) with one joint at the origin: each vertex one full weight."""
    verts = "\n".join(f"\tvert {i} ( 0.5 0.5 ) {i} 1" for i in range(len(mesh.vertices)))
    tris = "\n".join(f"\ttri {i} {a} {c} {b}" for i, (a, b, c) in enumerate(mesh.faces))
    weights = "\n".join(f"\tweight {i} 0 1.0 ( {x:.6f} {y:.6f} {z:.6f} )" for i, (x, y, z) in enumerate(mesh.vertices))
    return (f'MD5Version 10\ncommandline ""\n\nnumJoints 1\nnumMeshes 1\n\njoints {{\n'
            f'\t"root"\t-1 ( 0.000000 0.000000 0.000000 ) ( 0.000000 0.000000 0.000000 )\n}}\n\n'
            f'mesh {{\n\tshader "lamp"\n\n\tnumverts {len(mesh.vertices)}\n{verts}\n\n'
            f'\tnumtris {len(mesh.faces)}\n{tris}\n\n\tnumweights {len(mesh.vertices)}\n{weights}\n}}\n')


def _check_glb_upright(mesh: trimesh.Trimesh, tmp_path: Path) -> None:
    """The post (the tallest side) is the GLB's +Y with its tip at the top; the base's length is along Z."""
    glb = tmp_path / "lamp.glb"
    write_glb(mesh, glb)
    vertices = np.asarray(trimesh.load(str(glb), force="mesh", process=False).vertices)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    np.testing.assert_allclose(high - low, [1 / 3, 1.0, 2 / 3], atol=2e-3)
    top = vertices[vertices[:, 1] > high[1] - 0.05]  # the post's tip: thin, at the top of +Y
    assert len(top) and np.ptp(top[:, 0]) == pytest.approx(0.2 / 3, abs=2e-3)
    bottom = vertices[vertices[:, 1] < low[1] + 0.05]  # the base: the whole footprint
    assert np.ptp(bottom[:, 2]) == pytest.approx(2 / 3, abs=2e-3)


@pytest.mark.skipif(shutil.which("assimp") is None, reason="needs assimp-utils")
def test_redeclipse_md5_upright_object_is_y_up_in_the_glb(tmp_path: Path) -> None:
    model = tmp_path / "lamp.md5mesh"
    model.write_text(_md5mesh_text(_upright_lamp()))
    _check_glb_upright(convert_object(model, up_axis=SOURCES["redeclipse-data"].up_axis), tmp_path)


def test_redeclipse_obj_upright_object_is_y_up_in_the_glb(tmp_path: Path) -> None:
    """Red Eclipse's OBJ files are +Y up as written: the lamp's file Z (post) becomes Y, file Y becomes -Z."""
    lamp = _upright_lamp()
    lamp.vertices = np.asarray(lamp.vertices)[:, [0, 2, 1]] * [1.0, 1.0, -1.0]
    lamp.faces = lamp.faces[:, ::-1]
    model = tmp_path / "lamp.obj"
    lamp.export(model)
    _check_glb_upright(convert_object(model, up_axis=SOURCES["redeclipse-data"].up_axis), tmp_path)
