"""SPM reader on tiny SuperTuxKart meshes written byte by byte here (no Debian package needed; CPU, ms)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from zero1to3.data.spm import parse_spm, read_spm

POSITIONS = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 2.0, 0.5)]
UVS = [(0.0, 0.0), (1.0, 0.0), (0.0, 0.25)]  # exact in half floats


def _string(text: str) -> bytes:
    return bytes([len(text)]) + text.encode()


def _spm(kind: int = 2, flags: int = 0, colours: list[bytes] | None = None, texture: str = "crate.png",
         version: int = 1) -> bytes:
    """One material, one sector, one three-vertex section; ``kind`` 1 adds one joint per vertex and a
    one-joint, two-frame armature."""
    lo, hi = np.min(POSITIONS, axis=0), np.max(POSITIONS, axis=0)
    out = b"SP" + bytes([version << 3 | kind, flags]) + struct.pack("<6f", *lo, *hi)
    out += struct.pack("<H", 1) + _string(texture) + _string("")
    out += struct.pack("<HH", 1, 1) + struct.pack("<IIH", 3, 3, 0)
    for i, (position, uv) in enumerate(zip(POSITIONS, UVS)):
        out += struct.pack("<3f", *position)
        if flags & 1:
            out += struct.pack("<I", 0x1FF << 10)  # a packed normal
        if flags & 2:
            out += colours[i]
        if texture:
            out += np.array(uv, "<f2").tobytes()
            if flags & 4:
                out += struct.pack("<I", 0)  # a packed tangent
        if kind == 1:
            out += struct.pack("<4h", 0, -1, -1, -1) + np.array([1, 0, 0, 0], "<f2").tobytes()
    out += bytes([0, 1, 2])  # uint8 indices: <= 255 vertices
    if kind == 1:
        record = struct.pack("<10f", 0, 0, 0, 0, 0, 0, 1, 1, 1, 1)  # loc, rotation, scale
        out += struct.pack("<BH", 1, 0) + struct.pack("<HH", 1, 1) + _string("root") + record
        out += struct.pack("<hH", -1, 2) + struct.pack("<H", 0) + record + struct.pack("<H", 10) + record
    return out


def test_static_triangle_vertices_faces_uvs_texture(tmp_path):
    path = tmp_path / "crate.spm"
    path.write_bytes(_spm())
    [(mesh, texture)] = read_spm(path)
    assert texture == "crate.png"
    assert mesh.visual.material.name == "crate.png"
    # +Y up kept; X negated into a right-handed frame, so two corners swap to keep the winding
    np.testing.assert_allclose(mesh.vertices, np.array(POSITIONS) * [-1, 1, 1])
    np.testing.assert_array_equal(mesh.faces, [[2, 1, 0]])
    np.testing.assert_allclose(mesh.visual.uv, [(u, 1.0 - v) for u, v in UVS])  # top-left origin -> GL

    [(raw, _)] = read_spm(path, right_handed=False)
    np.testing.assert_allclose(raw.vertices, POSITIONS)
    np.testing.assert_array_equal(raw.faces, [[0, 1, 2]])
    # the mirror and the corner swap keep the face normal pointing the same way, mirrored
    np.testing.assert_allclose(mesh.face_normals[0], raw.face_normals[0] * [-1, 1, 1], atol=1e-12)


def test_variable_length_vertex_colours_normals_tangents():
    colours = [bytes([128]), bytes([0, 10, 20, 30]), bytes([128])]  # 128 = white, else a marker and RGB
    model = parse_spm(_spm(flags=7, colours=colours))
    [section] = model.sections
    np.testing.assert_array_equal(section.colors, [(255, 255, 255), (10, 20, 30), (255, 255, 255)])
    np.testing.assert_allclose(section.positions, POSITIONS)
    np.testing.assert_allclose(section.uv, UVS)
    assert (model.has_normals, model.has_colors, model.has_tangents) == (True, True, True)


def test_untextured_section_keeps_vertex_colours():
    colours = [bytes([0, 255, 0, 0])] * 3
    [(mesh, texture)] = read_spm(_spm(flags=2, colours=colours, texture=""))
    assert texture == ""
    np.testing.assert_array_equal(mesh.visual.vertex_colors, [(255, 0, 0, 255)] * 3)


def test_skinned_file_reads_stored_pose_and_whole_armature():
    model = parse_spm(_spm(kind=1))
    assert model.kind == "SPMA"
    [armature] = model.armatures
    assert armature.joint_names == ["root"] and armature.parents == [-1] and armature.frames == [0, 10]
    np.testing.assert_allclose(model.sections[0].weights[:, 0], 1.0)
    [(mesh, _)] = read_spm(_spm(kind=1))
    np.testing.assert_allclose(mesh.vertices, np.array(POSITIONS) * [-1, 1, 1])


@pytest.mark.parametrize("cut", [1, 3, 20])
def test_truncated_file_is_refused(cut):
    with pytest.raises(ValueError, match="truncated"):
        read_spm(_spm()[:-cut])
    with pytest.raises(ValueError, match="truncated"):
        read_spm(_spm(kind=1)[:-cut])


def test_unknown_version_kind_and_trailing_bytes_are_refused():
    with pytest.raises(ValueError, match="version 2"):
        read_spm(_spm(version=2))
    with pytest.raises(ValueError, match="SPMS"):
        read_spm(_spm(kind=0))
    with pytest.raises(ValueError, match="parsed to byte"):
        read_spm(_spm() + b"\0")
    with pytest.raises(ValueError, match="not an SPM"):
        read_spm(b"GLTF" + _spm()[4:])


def spm_from_sections(sections: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]]) -> bytes:
    """A static SPM file from (positions [n, 3], triangles [m, 3], UVs [n, 2] as stored (top-left origin) or
    None, texture name) per section, one material per section (also used by the corpus tests)."""
    positions = np.concatenate([np.asarray(p, np.float32) for p, _, _, _ in sections])
    out = b"SP" + bytes([1 << 3 | 2, 0]) + struct.pack("<6f", *positions.min(0), *positions.max(0))
    out += struct.pack("<H", len(sections)) + b"".join(_string(t) + _string("") for _, _, _, t in sections)
    out += struct.pack("<HH", 1, len(sections))
    for index, (points, faces, uv, texture) in enumerate(sections):
        points, faces = np.asarray(points, np.float32), np.asarray(faces)
        out += struct.pack("<IIH", len(points), faces.size, index)
        for i, point in enumerate(points):
            out += struct.pack("<3f", *point)
            if texture:
                out += np.asarray(uv[i], "<f2").tobytes()
        out += faces.astype("<u1" if len(points) <= 255 else "<u2").tobytes()
    return out


def test_multi_section_writer_round_trip():
    box = np.array([[x, y, z] for x in (0, 1) for y in (0, 2) for z in (0, 3)], np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2]])
    uv = np.array([[0.25, 0.5]] * 8)
    parts = read_spm(spm_from_sections([(box, faces, uv, "a.png"), (box + 5, faces, None, "")]),
                     right_handed=False)
    assert [t for _, t in parts] == ["a.png", ""]
    np.testing.assert_allclose(parts[1][0].vertices, box + 5)
    np.testing.assert_allclose(parts[0][0].visual.uv, [[0.25, 0.5]] * 8)
