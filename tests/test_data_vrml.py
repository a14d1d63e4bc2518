"""VRML 2.0 reader (formats.read_vrml) on hand-written files, and the kicad-packages3d source on stand-in files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zero1to3.data import corpus
from zero1to3.data.formats import read_vrml

TWO_SHAPES = """#VRML V2.0 utf8
#kicad StepUp wrl exported
# a comment with { braces } and [ brackets ]
Shape {
    appearance Appearance {material DEF BODY-01 Material {
        ambientIntensity 0.2
        diffuseColor 0.1 0.2 0.3
        specularColor 0.5 0.5 0.5
        emissiveColor 0.0 0.0 0.0
        transparency 0.25
        shininess 0.3
        }
    }
}
Shape {
    geometry IndexedFaceSet
    { creaseAngle 0.50
    coordIndex [0,1,2,3,-1]
    coord Coordinate { point [0 0 0, 1 0 0, 1 1 0, 0 1 0] }
}
    appearance Appearance{material USE BODY-01 }
}
Shape {
    geometry IndexedFaceSet { coordIndex [0 1 2 -1 0 2 3]
        coord Coordinate { point [0 0 1 2 0 1 2 2 1 0 2 1] } }
    appearance Appearance { material Material { diffuseColor 1 0.5 0 } }
}
"""


def _write(tmp_path, text, name="part.wrl"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_vrml_two_shapes_def_use_and_quads(tmp_path):
    parts = read_vrml(_write(tmp_path, TWO_SHAPES))
    assert len(parts) == 2  # the appearance-only first shape only defines the material
    (quad, c1), (pair, c2) = parts
    np.testing.assert_array_equal(quad.faces, [[0, 1, 2], [0, 2, 3]])  # one quad -> two triangles (fan)
    np.testing.assert_allclose(quad.vertices[2], [1, 1, 0])
    np.testing.assert_allclose(c1, [0.1, 0.2, 0.3, 0.75])  # USE of BODY-01; alpha = 1 - transparency
    np.testing.assert_array_equal(pair.faces, [[0, 1, 2], [0, 2, 3]])  # no trailing -1 on the last polygon
    np.testing.assert_allclose(pair.vertices[:, 2], 1.0)
    np.testing.assert_allclose(c2, [1, 0.5, 0, 1])
    assert quad.area == pytest.approx(1.0) and pair.area == pytest.approx(4.0)


def test_read_vrml_transform_group_and_ccw(tmp_path):
    text = """#VRML V2.0 utf8
DEF T1 Transform { translation 10 0 0 rotation 0 0 1 1.5707963 scale 2 2 2
  children [ Group { children [ Shape { geometry IndexedFaceSet { ccw FALSE solid FALSE
     coord DEF C Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1 2 -1] } } ] } ] }
Shape { geometry IndexedFaceSet { coord USE C coordIndex [0 1 2 -1] } }
"""
    (moved, colour), (plain, _) = read_vrml(_write(tmp_path, text))
    np.testing.assert_allclose(moved.vertices, [[10, 0, 0], [10, 2, 0], [8, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(moved.faces, [[2, 1, 0]])  # ccw FALSE: winding flipped
    np.testing.assert_allclose(colour, [0.8, 0.8, 0.8, 1.0])  # no material: light grey
    np.testing.assert_allclose(plain.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize("text, message", [
    ("#VRML V1.0 ascii\nSeparator { }", "not a VRML 2.0"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0] }"
     " coordIndex [0 1 5 -1] } }", "out of range"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1] }"
     " coordIndex [0 1 2 -1] } }", "multiple of 3"),
    ("#VRML V2.0 utf8\nShape { geometry Box { size 1 1 1 } }", "Box"),
    ("#VRML V2.0 utf8\nShape { appearance Appearance { material USE NOPE } }", "undefined"),
    ("#VRML V2.0 utf8\nShape { appearance Appearance { texture ImageTexture { url \"a.png\" } } }",
     "ImageTexture"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0] }"
     " coordIndex [0 1 2 -1] texCoordIndex [0 1 2 -1] } }", "texCoordIndex"),
    ("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0]",
     "end of file"),
    ("#VRML V2.0 utf8\nInline { url \"x.wrl\" }", "Inline"),
    ("#VRML V2.0 utf8\nShape { appearance Appearance { material Material { diffuseColor 1 0 0 } } }",
     "no faces"),
])
def test_read_vrml_refuses(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_vrml(_write(tmp_path, text))


def _box_vrml(size=(1.0, 1.0, 1.0), colour=(0.9, 0.1, 0.1)) -> str:
    sx, sy, sz = size
    points = ", ".join(f"{x * sx} {y * sy} {z * sz}" for z in (0, 1) for y in (0, 1) for x in (0, 1))
    quads = "0 2 3 1 -1 4 5 7 6 -1 0 1 5 4 -1 2 6 7 3 -1 0 4 6 2 -1 1 3 7 5 -1"
    return ("#VRML V2.0 utf8\nShape { appearance Appearance { material DEF M Material { diffuseColor "
            f"{colour[0]} {colour[1]} {colour[2]} }} }} }}\n"
            f"Shape {{ geometry IndexedFaceSet {{ coord Coordinate {{ point [{points}] }} coordIndex [{quads}] }}"
            " appearance Appearance { material USE M } }\n"
            # the same box again in another material (a second colour part)
            f"Shape {{ geometry IndexedFaceSet {{ coord Coordinate {{ point [{points}] }}"
            f" coordIndex [{quads}] }} appearance Appearance {{ material Material {{ diffuseColor 0 0 1 }} }} }}\n")


def test_kicad_source_converts_coloured_wrl_and_caps_folders(tmp_path):
    root = tmp_path / "3dmodels"
    for library, count in (("Relay_THT.3dshapes", 7), ("TestPoint.3dshapes", 2),
                           ("Connector_PinHeader_1.27mm.3dshapes", 2), ("Connector_PinHeader_2.54mm.3dshapes", 2)):
        (root / library).mkdir(parents=True)
        for i in range(count):
            _write(root / library, _box_vrml((1.0, 0.5 + 0.01 * i, 0.4)), f"Part_{i:02d}.wrl")
    (root / "Relay_THT.3dshapes" / "Part_00.step").write_text("ISO-10303-21;")
    source = dataclasses.replace(corpus.SOURCES["kicad-packages3d"], roots=(str(root),), max_per_folder=3)
    rels = [rel for rel, _, _ in corpus._iter_files(source, tmp_path / "extract")]
    # 3 of 7 relays, evenly spaced; other-pitch headers and test points left out; STEP files not read
    header = "Connector_PinHeader_2.54mm.3dshapes"
    assert rels == [f"{header}/Part_00.wrl", f"{header}/Part_01.wrl",
                    "Relay_THT.3dshapes/Part_01.wrl", "Relay_THT.3dshapes/Part_03.wrl", "Relay_THT.3dshapes/Part_05.wrl"]
    assert corpus.DEFAULT_SPLITS["kicad-packages3d"] == "train"
    mesh = corpus.convert_object(root / "Relay_THT.3dshapes" / "Part_01.wrl", up_axis="z", min_side_ratio=0.08)
    assert len(mesh.faces) == 24 and max(mesh.extents) == pytest.approx(1.0)
    colours = {tuple(c) for c in np.asarray(mesh.visual.vertex_colors)[:, :3].tolist()}
    assert colours == {(230, 26, 26), (0, 0, 255)}  # one colour per material
    # +Z stays up: the box is 0.4 tall of 1.0 long
    assert mesh.extents[2] == pytest.approx(0.4)


def test_spread_is_even_and_deterministic():
    assert corpus._spread(list(range(10)), 3) == [1, 5, 8]
    assert corpus._spread(list(range(3)), 5) == [0, 1, 2]
    assert corpus._spread(list(range(100)), 20) == corpus._spread(list(range(100)), 20)
