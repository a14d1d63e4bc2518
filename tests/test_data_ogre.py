"""Ogre .mesh / .material readers and OpenClonk's C4Group unpacker on tiny files written byte by byte here (no
Debian package needed; CPU, ms)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from zero1to3.data.c4group import extract_group, iter_group, read_group
from zero1to3.data.ogre import parse_material_script, parse_mesh, read_mesh, resolve_materials

POSITIONS = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 2.0, 0.5), (1.0, 2.0, 0.5)]
UVS = [(0.0, 0.0), (1.0, 0.0), (0.0, 0.25), (1.0, 0.25)]  # top-left origin, as stored


def _chunk(cid: int, body: bytes, order: str = "<", slack: int = 0) -> bytes:
    """A chunk whose stored length is ``slack`` bytes off (Ogre's writer miscounts strings: the reader must
    not rely on the lengths of the chunks it parses)."""
    return struct.pack(order + "HI", cid, 6 + len(body) + slack) + body


def _geometry(positions, uvs, order: str = "<") -> bytes:
    """M_GEOMETRY with position (float3) in buffer 0 and UVs (float2) in buffer 1."""
    declaration = _chunk(0x5110, struct.pack(order + "5H", 0, 2, 1, 0, 0), order)
    vertex_data = b"".join(struct.pack(order + "3f", *p) for p in positions)
    buffers = _chunk(0x5200, struct.pack(order + "HH", 0, 12) + _chunk(0x5210, vertex_data, order), order)
    if uvs is not None:
        declaration += _chunk(0x5110, struct.pack(order + "5H", 1, 1, 7, 0, 0), order)
        uv_data = b"".join(struct.pack(order + "2f", *uv) for uv in uvs)
        buffers += _chunk(0x5200, struct.pack(order + "HH", 1, 8) + _chunk(0x5210, uv_data, order), order)
    return _chunk(0x5000, struct.pack(order + "I", len(positions)) + _chunk(0x5100, declaration, order) + buffers,
                  order)


def _submesh(material: str, indices, geometry: bytes | None, operation: int | None = None, wide: bool = False,
             order: str = "<") -> bytes:
    body = material.encode() + b"\n" + struct.pack(order + "?I?", geometry is None, len(indices), wide)
    body += np.asarray(indices, order + ("u4" if wide else "u2")).tobytes()
    body += geometry or b""
    if operation is not None:
        body += _chunk(0x4010, struct.pack(order + "H", operation), order)
    body += _chunk(0x4100, struct.pack(order + "IHf", 0, 0, 1.0), order)  # a bone assignment
    return _chunk(0x4000, body, order, slack=3)


def ogre_mesh(submeshes: list[bytes] | None = None, shared: bytes = b"", order: str = "<",
              version: str = "[MeshSerializer_v1.8]") -> bytes:
    """A mesh file: by default one submesh (material ``Crate``, its own geometry, two triangles), a skeleton
    link, bone assignments, bounds, a submesh name table and an edge list (the last two skipped or parsed)."""
    if submeshes is None:
        submeshes = [_submesh("Crate", [0, 1, 2, 2, 1, 3], _geometry(POSITIONS, UVS, order), order=order)]
    body = struct.pack(order + "?", True) + shared + b"".join(submeshes)
    body += _chunk(0x6000, b"Crate.skeleton\n", order, slack=-2)
    body += _chunk(0x7000, struct.pack(order + "IHf", 1, 0, 1.0), order)
    body += _chunk(0x9000, struct.pack(order + "7f", 0, 0, 0, 1, 2, 0.5, 2.3), order)
    body += _chunk(0xA000, _chunk(0xA100, struct.pack(order + "H", 0) + b"Crate\n", order), order, slack=-4)
    body += _chunk(0xB000, b"\x00" * 20, order)
    return struct.pack(order + "H", 0x1000) + version.encode() + b"\n" + _chunk(0x3000, body, order, slack=5)


def test_mesh_vertices_faces_uvs_material():
    [(mesh, material)] = read_mesh(ogre_mesh())
    assert material == "Crate" and mesh.metadata["name"] == "Crate"
    assert mesh.metadata["ogre_skeleton"] == "Crate.skeleton"
    np.testing.assert_allclose(mesh.vertices, POSITIONS)  # +Y up, right-handed: kept as stored
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [2, 1, 3]])
    np.testing.assert_allclose(mesh.visual.uv, [(u, 1.0 - v) for u, v in UVS])  # top-left origin -> GL
    model = parse_mesh(ogre_mesh())
    assert model.skeletal and model.version == "[MeshSerializer_v1.8]"


def test_shared_geometry_strip_fan_and_32_bit_indices():
    """Two submeshes on the shared vertices: a strip (alternate winding) and a fan with 32-bit indices; each
    mesh keeps only the vertices it uses, renumbered."""
    shared = _geometry(POSITIONS, None)
    mesh_bytes = ogre_mesh([_submesh("Strip", [0, 1, 2, 3], None, operation=5),
                            _submesh("Fan", [1, 3, 2], None, operation=6, wide=True),
                            _submesh("Lines", [0, 1], None, operation=2)], shared=shared,
                           version="[MeshSerializer_v1.41]")
    parts = read_mesh(mesh_bytes)
    assert [name for _, name in parts] == ["Strip", "Fan"]  # lines draw no surface
    strip, fan = parts[0][0], parts[1][0]
    np.testing.assert_array_equal(strip.faces, [[0, 1, 2], [2, 1, 3]])
    np.testing.assert_allclose(fan.vertices, [POSITIONS[1], POSITIONS[2], POSITIONS[3]])
    np.testing.assert_array_equal(fan.faces, [[0, 2, 1]])
    assert not hasattr(strip.visual, "uv") or getattr(strip.visual, "uv", None) is None


def test_big_endian_file_reads_the_same():
    [(mesh, material)] = read_mesh(ogre_mesh(order=">"))
    assert material == "Crate"
    np.testing.assert_allclose(mesh.vertices, POSITIONS)
    np.testing.assert_allclose(mesh.visual.uv, [(u, 1.0 - v) for u, v in UVS])


@pytest.mark.parametrize("cut", [1, 5, 30, 200])
def test_truncated_mesh_is_refused(cut):
    data = ogre_mesh()
    with pytest.raises(ValueError, match="truncated"):
        parse_mesh(data[:-cut])


def test_wrong_header_version_and_bad_index_are_refused():
    with pytest.raises(ValueError, match="not an Ogre binary mesh"):
        parse_mesh(b"GLTF" + ogre_mesh()[4:])
    with pytest.raises(ValueError, match="version"):
        parse_mesh(ogre_mesh(version="[MeshSerializer_v1.100]"))
    with pytest.raises(ValueError, match="out of range"):
        parse_mesh(ogre_mesh([_submesh("Crate", [0, 1, 9], _geometry(POSITIONS, UVS))]))
    with pytest.raises(ValueError, match="chunk 0x3000"):  # a second M_MESH
        parse_mesh(ogre_mesh() + _chunk(0x3000, b"\x00"))
    with pytest.raises(ValueError, match="unexpected Ogre chunk 0x4000"):  # a submesh outside M_MESH
        parse_mesh(ogre_mesh()[:24] + _submesh("Crate", [0, 1, 2], _geometry(POSITIONS, UVS)))


MATERIALS = """
// a comment { with a brace
vertex_program normal_map_vertex glsl
{
    source normal_map_vertex.glsl
}
material NormalMap
{
    technique { pass { texture_unit base { } texture_unit normal { } } }
}
material Clonk_Body
{
    technique
    {
        pass
        {
            diffuse 1.0 0.5 0.25 1.0
            texture_unit Overlay
            {
                texture Overlay.png
                colour_op_ex modulate src_texture src_player_colour
            }
            texture_unit Clonk
            {
                texture Clonk.jpg
            }
        }
        pass second { texture_unit { texture Second.png } }
    }
    technique fallback { pass { texture_unit { texture Fallback.png } } }
}
material Guidepost: NormalMap
{
    technique { pass {
        texture_unit base { texture "guide post.png" }
        texture_unit normal { texture guide_normal.png } } }
}
material Black { technique { pass { diffuse 0 0 0 } } }
material Puka2 : Clonk_Body
{
}
"""


def test_material_script_colour_texture_diffuse_and_inheritance():
    materials = parse_material_script(MATERIALS)
    assert set(materials) == {"NormalMap", "Clonk_Body", "Guidepost", "Black", "Puka2"}
    body = materials["Clonk_Body"]
    assert body.texture == "Clonk.jpg"  # the player-colour overlay mask is skipped; only the first pass is read
    assert body.diffuse == (1.0, 0.5, 0.25, 1.0)
    assert materials["Guidepost"].texture == "guide post.png" and materials["Guidepost"].parent == "NormalMap"
    assert materials["Black"].texture == "" and materials["Black"].diffuse == (0.0, 0.0, 0.0, 1.0)
    assert materials["NormalMap"].texture == ""
    assert materials["Puka2"].parent == "Clonk_Body" and materials["Puka2"].texture == ""
    resolved = resolve_materials(materials)
    assert resolved["Puka2"].texture == "Clonk.jpg" and resolved["Puka2"].diffuse == (1.0, 0.5, 0.25, 1.0)


# --------------------------------------------------------------------------------------------- C4Group
def _scramble(header: bytes) -> bytes:
    out = bytearray(b ^ 237 for b in header)
    for i in range(0, len(out) - 2, 3):
        out[i], out[i + 2] = out[i + 2], out[i]
    return bytes(out)


def c4group(members: list[tuple[str, bytes | list]]) -> bytes:
    """An unpacked group: members are (name, bytes) files or (name, [members]) child groups."""
    blobs = [(name, c4group(value) if isinstance(value, list) else value, isinstance(value, list))
             for name, value in members]
    header = b"RedWolf Design GrpFolder".ljust(28, b"\0") + struct.pack("<3i", 1, 2, len(blobs))
    out, data = _scramble(header.ljust(204, b"\0")), b""
    for name, blob, child in blobs:
        entry = name.encode().ljust(260, b"\0") + struct.pack("<5i", 0, int(child), len(blob), 0, len(data))
        out += entry.ljust(316, b"\0")
        data += blob
    return out + data


def packed_group(members) -> bytes:
    """A group file as OpenClonk writes it: gzip with the magic changed to 1e 8c."""
    data = gzip.compress(c4group(members))
    return b"\x1e\x8c" + data[2:]


def test_c4group_files_and_child_groups(tmp_path: Path):
    path = tmp_path / "Objects.ocd"
    path.write_bytes(packed_group([("Title.txt", b"Objects"),
                                   ("Items.ocd", [("Axe.ocd", [("Graphics.mesh", b"MESH"), ("Axe.jpg", b"JPG")])]),
                                   ("Scene.material", b"material A {}")]))
    members = dict(iter_group(read_group(path)))
    assert members == {"Title.txt": b"Objects", "Items.ocd/Axe.ocd/Graphics.mesh": b"MESH",
                       "Items.ocd/Axe.ocd/Axe.jpg": b"JPG", "Scene.material": b"material A {}"}
    assert extract_group(path, tmp_path / "out", keep=(".mesh", ".jpg")) == 2
    assert (tmp_path / "out/Items.ocd/Axe.ocd/Graphics.mesh").read_bytes() == b"MESH"
    assert not (tmp_path / "out/Title.txt").exists()


def test_c4group_refuses_wrong_id_and_truncation():
    good = c4group([("a.txt", b"hello")])
    with pytest.raises(ValueError, match="not a C4Group"):
        list(iter_group(b"\0" * 204 + good[204:]))
    with pytest.raises(ValueError, match="truncated"):
        list(iter_group(good[:-2]))
    with pytest.raises(ValueError, match="truncated"):
        list(iter_group(good[:100]))
    with pytest.raises(ValueError, match="compression"):
        read_group(packed_group([("a.txt", b"hello")])[:-12])


# --------------------------------------------------------------------------------------------- corpus reader
_BOX_FACES = [0, 1, 3, 0, 3, 2, 4, 6, 7, 4, 7, 5, 0, 4, 5, 0, 5, 1, 2, 3, 7, 2, 7, 6, 0, 2, 6, 0, 6, 4,
              1, 5, 7, 1, 7, 3]
_TALL = [(x, y, z) for x in (0.0, 1.0) for y in (0.0, 3.0) for z in (0.0, 1.0)]  # 1 x 3 x 1, long along +Y
_UV = [(0.1, 0.1)] * 8


def _clonk_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "openclonk-data" / "Objects.ocd" / "Items.ocd" / "Axe.ocd"
    folder.mkdir(parents=True)
    (folder.parent / "Wood.material").write_text("material Wood { technique { pass { diffuse 0 0.5 1 } } }\n"
                                                 "material Handle : Wood { }\n")
    return folder


def test_corpus_ogre_textured_from_own_material_upright(tmp_path: Path):
    """The material is defined next to the mesh and its texture read from there; the swoosh effect submesh is
    dropped; the stored +Y-up object stands upright (+Z) after conversion."""
    from PIL import Image

    from zero1to3.data.corpus import convert_object, ogre_material

    folder = _clonk_folder(tmp_path)
    swoosh = [(0, 0, 0), (0, 9, 0), (0, 0, 9)]
    (folder / "Graphics.mesh").write_bytes(ogre_mesh([_submesh("Axe", _BOX_FACES, _geometry(_TALL, _UV)),
                                                      _submesh("Swoosh", [0, 1, 2], _geometry(swoosh, _UV[:3]))]))
    (folder / "Scene.material").write_text("material Axe { technique { pass { diffuse 0.8 0.8 0.8\n"
                                           "texture_unit { texture Axe.png } } } }\n")
    gradient = np.tile((np.arange(8, dtype=np.uint8) * 30)[:, None, None], (1, 8, 3))
    Image.fromarray(gradient).save(folder / "Axe.png")
    assert ogre_material("Axe", folder, tmp_path / "openclonk-data")[:2] == ("Axe.png", folder)

    mesh = convert_object(folder / "Graphics.mesh", up_axis="y", reader="ogre")
    assert len(mesh.faces) == 12  # the box, no swoosh triangle
    extents = mesh.bounds[1] - mesh.bounds[0]
    np.testing.assert_allclose(extents, [1 / 3, 1 / 3, 1.0], atol=1e-9)  # 3 units along +Y -> +Z up
    image = mesh.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), gradient)


def test_corpus_ogre_inherited_diffuse_and_placeholder_texture(tmp_path: Path):
    """A material from an enclosing group's script inheriting its parent's diffuse colour, and a one-colour
    placeholder texture modulated by its diffuse (Ogre's default), both become plain vertex colours."""
    from PIL import Image

    from zero1to3.data.corpus import convert_object, ogre_material

    folder = _clonk_folder(tmp_path)
    handle = [(x + 2, y, z) for x, y, z in _TALL]
    (folder / "Graphics.mesh").write_bytes(ogre_mesh([_submesh("Hat", _BOX_FACES, _geometry(_TALL, _UV)),
                                                      _submesh("Handle", _BOX_FACES, _geometry(handle, _UV))]))
    (folder / "Hat.material").write_text("material Hat { technique { pass { diffuse 0.5 0.25 1.0 1.0\n"
                                         "texture_unit { texture Hat.png } } } }\n")
    Image.new("RGB", (16, 16), (200, 200, 200)).save(folder / "Hat.png")
    assert ogre_material("Handle", folder, tmp_path / "openclonk-data") == ("", None, (0.0, 0.5, 1.0, 1.0))

    mesh = convert_object(folder / "Graphics.mesh", up_axis="y", reader="ogre")
    assert mesh.visual.kind == "vertex"
    colours = {tuple(int(v) for v in c[:3]) for c in mesh.visual.vertex_colors}
    assert colours == {(100, 50, 200), (0, 128, 255)}


def test_openclonk_source_unpacks_groups_and_leaves_out_non_objects(tmp_path: Path):
    """The source's groups are unpacked into the extract folder once; front layers, the tutorial's help arrow and
    the burnt airship are left out by path."""
    from dataclasses import replace

    from zero1to3.data.corpus import SOURCES, _iter_files

    mesh = ogre_mesh()
    group = tmp_path / "Objects.ocd"
    group.write_bytes(packed_group([
        ("Items.ocd", [("Axe.ocd", [("Graphics.mesh", mesh), ("Axe.jpg", b"JPG"), ("Script.c", b"//")]),
                       ("Bow.ocd", [("Arrow.ocd", [("HelpArrow.ocd", [("Graphics.mesh", mesh)])])])]),
        ("Vehicles.ocd", [("Airship.ocd", [("Graphics.mesh", mesh),
                                           ("AirshipBurnt.ocd", [("Graphics.mesh", mesh)])])]),
        ("Structures.ocd", [("Elevator.ocd", [("Case.ocd", [("CaseFront.ocd", [("Graphics.mesh", mesh)]),
                                                            ("CaseBack.ocd", [("Graphics.mesh", mesh)])])])])]))
    source = replace(SOURCES["openclonk-data"], roots=(str(group), str(tmp_path / "missing.ocd")))
    found = [(rel, path) for rel, path, _ in _iter_files(source, tmp_path / "extract")]
    assert [rel for rel, _ in found] == ["Items.ocd/Axe.ocd/Graphics.mesh",
                                         "Structures.ocd/Elevator.ocd/Case.ocd/CaseBack.ocd/Graphics.mesh",
                                         "Vehicles.ocd/Airship.ocd/Graphics.mesh"]
    target = tmp_path / "extract" / "openclonk-data" / "Objects.ocd"
    assert found[0][1] == target / "Items.ocd/Axe.ocd/Graphics.mesh"
    assert (target / "Items.ocd/Axe.ocd/Axe.jpg").is_file() and not (target / "Items.ocd/Axe.ocd/Script.c").exists()
    assert (target / ".done").is_file()
