"""Scorched3D (``scorched3d-data``) and the up axis of ASE files read through assimp: a hand-written upright
ASE (+Z up as written, as Scorched3D's tanks are) must come out +Y up in the GLB the corpus writes. With the
source's old ``up_axis="z"`` the model was turned twice and stood on end (the val renders before the fix).
CPU, seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from zero1to3.data.corpus import SOURCES, convert_object

from test_data_corpus_nexuiz import _ase_text
from test_data_corpus_redeclipse import _check_glb_upright, _upright_lamp

#: every source that reads ASE files (all through assimp)
ASE_SOURCES = sorted(name for name, source in SOURCES.items() if ".ase" in source.extensions)


def test_sources_reading_ase_declare_y_up() -> None:
    """assimp's ASE reader turns the file's +Z up into +Y up itself (a root-node matrix), so a source of ASE
    files declares its files as loaded: +Y up."""
    assert "scorched3d-data" in ASE_SOURCES and "nexuiz-data" in ASE_SOURCES
    for name in ASE_SOURCES:
        assert SOURCES[name].up_axis == "y", name


def _upright_tank_ase(path: Path) -> None:
    """A 'tank' (a hull 1 x 2 x 0.5 along the file's Y with a mast 2.5 tall on it along +Z), as ASE: the file's
    tallest side is Z, its longest flat side Y."""
    tank = _upright_lamp()
    path.write_text(_ase_text([("tank", 0, tank)], [("steel", "steel.png")]))


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
    _check_glb_upright(mesh, tmp_path)
