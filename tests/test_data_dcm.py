"""DreamChess's ``.dcm`` reader (``formats.read_dcm``) on hand-built files, and the ``dreamchess-data`` source's
file rule and conversion (+Z up, the set's white.png). CPU, well under a second."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from zero1to3.data.corpus import DEFAULT_SPLITS, SOURCES, convert_object
from zero1to3.data.corpus import _iter_files
from zero1to3.data.formats import read_dcm

#: a unit square pyramid: 5 vertices, a two-triangle strip for the base (one degenerate strip triangle
#: dropped) and four side triangles
_VERTICES = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0.5, 0.5, 2)]
_UV = [(0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0.5)]


def _dcm_text(primitives: list[tuple[str, list[int]]], vertices=_VERTICES, uv=_UV) -> str:
    tokens = ["DCM 0100", str(len(vertices))]
    tokens += [str(c) for v in vertices for c in v] + ["0"] * (3 * len(vertices)) + [str(c) for t in uv for c in t]
    tokens.append(str(len(primitives)))
    for kind, index in primitives:
        tokens += [kind, str(len(index))] + [str(i) for i in index]
    return "\n".join(tokens) + "\n"


_PYRAMID = [("STRIP", [0, 2, 1, 3, 3]), ("TRIANGLES", [0, 1, 4, 1, 3, 4, 3, 2, 4, 2, 0, 4])]


def test_read_dcm_hand_built(tmp_path: Path) -> None:
    """Vertices and UVs as written; the strip (0 2 1 3 3) gives (0 2 1), (2 1 3) flipped to (1 2 3), and its
    degenerate last triangle is dropped; the triangle list follows as written."""
    (tmp_path / "p.dcm").write_text(_dcm_text(_PYRAMID))
    mesh = read_dcm(tmp_path / "p.dcm")
    np.testing.assert_array_equal(mesh.vertices, np.array(_VERTICES, float))
    np.testing.assert_array_equal(mesh.visual.uv, np.array(_UV, float))
    np.testing.assert_array_equal(mesh.faces, [[0, 2, 1], [1, 2, 3], [0, 1, 4], [1, 3, 4], [3, 2, 4], [2, 0, 4]])


@pytest.mark.parametrize("text", [
    "DCM 0200\n1\n0 0 0 0 0 0 0 0\n0\n",                     # another version
    _dcm_text(_PYRAMID).rsplit("\n", 3)[0],                   # truncated in the last primitive
    _dcm_text(_PYRAMID) + "7\n",                              # a token after the last primitive
    _dcm_text([("FAN", [0, 1, 4])]),                          # unknown primitive
    _dcm_text([("TRIANGLES", [0, 1, 5])]),                    # index out of range
    _dcm_text([("TRIANGLES", [0, 1])]),                       # not a whole triangle
    _dcm_text([]),                                            # no triangles
    "DCM 0100\n5\n0 0 0\n",                                   # vertex block cut short
])
def test_read_dcm_refuses_wrong_input(tmp_path: Path, text: str) -> None:
    (tmp_path / "bad.dcm").write_text(text)
    with pytest.raises(ValueError):
        read_dcm(tmp_path / "bad.dcm")


def test_dreamchess_source_keeps_the_3d_pieces(tmp_path: Path) -> None:
    """The file rule on stand-in files: the six pieces of the 3D sets stay, the boards and the 2D sets' flat
    quads do not; a converted piece (a tall box) stands +Z up with its set's white.png (not black.png)."""
    assert DEFAULT_SPLITS["dreamchess-data"] == "train"
    source = SOURCES["dreamchess-data"]
    kept = [f"{s}/{p}.dcm" for s in ("classic", "elements") for p in ("pawn", "knight", "bishop", "rook", "queen",
                                                                       "king")]
    dropped = ["sketch/flat.dcm", "figurine/flat.dcm", "classic/selector.dcm", "../boards/classic/board.dcm"]
    root = tmp_path / "pieces"
    for rel in kept + dropped:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(_dcm_text(_PYRAMID))
    found = {rel for rel, _, _ in _iter_files(dataclasses.replace(source, roots=(str(root),)), tmp_path / "x")}
    assert found == set(kept)
    Image.fromarray(np.full((8, 8, 3), (200, 150, 60), np.uint8)).save(root / "classic/white.png")
    Image.fromarray(np.full((16, 16, 3), (20, 20, 20), np.uint8)).save(root / "classic/black.png")
    piece = trimesh.creation.box(extents=(0.5, 0.5, 2.0))  # 12 triangles: enough for the near-empty rule
    piece.apply_translation((0.0, 0.0, 1.0))
    (root / "classic/pawn.dcm").write_text(_dcm_text([("TRIANGLES", piece.faces.reshape(-1).tolist())],
                                                     piece.vertices.tolist(), [(0.5, 0.5)] * len(piece.vertices)))
    mesh = convert_object(root / "classic/pawn.dcm", up_axis=source.up_axis, reader=source.reader)
    extents = mesh.bounds[1] - mesh.bounds[0]
    np.testing.assert_allclose(extents, [0.25, 0.25, 1.0], atol=1e-6)
    texels = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).reshape(-1, 3).astype(int)
    assert (np.abs(texels - [200, 150, 60]).sum(axis=1) < 12).all()
