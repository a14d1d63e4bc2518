"""Scorched3D (``scorched3d-data``) and the up axis of ASE files read through assimp: a hand-written upright
ASE (+Z up as written, as Scorched3D's tanks are) must come out +Y up in the GLB the corpus writes. With the
source's old ``up_axis="z"`` the model was turned twice and stood on end (the val renders before the fix).
CPU, seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from zero1to3.data.corpus import SOURCES, convert_object, write_glb

from test_data_corpus_nexuiz import _ase_text

#: every source that reads ASE files (all through assimp)
ASE_SOURCES = sorted(name for name, source in SOURCES.items() if ".ase" in source.extensions)


def test_sources_reading_ase_declare_y_up() -> None:
    """assimp's ASE reader turns the file's +Z up into +Y up itself (a root-node matrix), so a source of ASE
    files declares its files as loaded: +Y up."""
    assert "scorched3d-data" in ASE_SOURCES and "nexuiz-data" in ASE_SOURCES
    for name in ASE_SOURCES:
        assert SOURCES[name].up_axis == "y", name


def _upright_tank_ase(path: Path) -> None:
    """A 'tank' lying along the file's Y (hull 1 x 2 x 0.5) with a tall thin mast on top (+Z): 1 x 2 x 3 in all,
    so the file's tallest side is Z, its longest flat side Y."""
    hull = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    mast = trimesh.creation.box(extents=(0.2, 0.2, 2.5))
    mast.apply_translation((0.0, 0.0, 0.25 + 1.25))
    path.write_text(_ase_text([("hull", 0, hull), ("mast", 0, mast)], [("steel", "steel.png")]))


@pytest.mark.skipif(shutil.which("assimp") is None, reason="needs assimp-utils")
@pytest.mark.parametrize("name", ASE_SOURCES)
def test_ase_upright_object_is_y_up_in_the_glb(tmp_path: Path, name: str) -> None:
    """Through the source's up axis and ``write_glb``: the file's tallest side (its +Z, the mast) is the GLB's
    +Y, the mast's tip at the top; the hull's length (file Y) is the GLB's Z (glTF: +Z_file -> +Y, +Y_file -> -Z)."""
    model = tmp_path / "tank.ase"
    _upright_tank_ase(model)
    mesh = convert_object(model, up_axis=SOURCES[name].up_axis)
    extents = mesh.bounds[1] - mesh.bounds[0]  # the corpus's internal frame: +Z up
    assert np.argmax(extents) == 2 and extents[2] == pytest.approx(1.0)
    glb = tmp_path / "tank.glb"
    write_glb(mesh, glb)
    loaded = trimesh.load(str(glb), force="mesh", process=False)
    vertices = np.asarray(loaded.vertices)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    np.testing.assert_allclose(high - low, [1 / 3, 1.0, 2 / 3], atol=2e-3)
    top = vertices[vertices[:, 1] > high[1] - 0.05]  # the mast's tip: thin, near the top of +Y
    assert len(top) and np.ptp(top[:, 0]) == pytest.approx(0.2 / 3, abs=2e-3)
    bottom = vertices[vertices[:, 1] < low[1] + 0.05]  # the hull's underside: the whole footprint
    assert np.ptp(bottom[:, 2]) == pytest.approx(2 / 3, abs=2e-3)
