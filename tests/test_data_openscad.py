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
    """A 2 x 1 x 1 cube: 12 triangles in OpenSCAD's yellow; the second call reuses the PLY; a 2D program fails
    with OpenSCAD's own message."""
    import trimesh

    from zero1to3.data.openscad import OPENSCAD_COLOUR, scad_to_ply

    folder = _programs(tmp_path / "scad")
    ply = scad_to_ply(folder / "block.scad", tmp_path / "x" / "block.ply")
    mesh = trimesh.load(ply, process=False)
    assert len(mesh.faces) == 12 and np.allclose(mesh.extents, [2, 1, 1])
    assert tuple(mesh.visual.vertex_colors[0]) == OPENSCAD_COLOUR == (249, 215, 44, 255)
    assert not (tmp_path / "x" / "block.stl").exists()
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
