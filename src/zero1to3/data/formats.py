"""Game formats read into trimesh: 0 A.D.'s PMD, Quake 2's MD2, Warzone 2100's PIE and MegaGlest's G3D.

Why: these packages ship their models only in their engines' own formats, which neither trimesh nor assimp
reads (or reads without textures). Each reader returns meshes in the file's own axes with UVs in the
OpenGL convention and the texture name the file gives; a file must parse cleanly or is refused with a
ValueError (the corpus records it as failed). SuperTuxKart's SPM lives in :mod:`zero1to3.data.spm`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import trimesh

__all__ = ["read_pmd", "read_md2", "read_pie", "read_g3d"]


def read_pmd(data: bytes) -> trimesh.Trimesh:
    """0 A.D.'s PMD mesh (format documented on the 0 A.D. wiki): positions, normals, first UV set, faces."""
    if data[:4] != b"PSMD":
        raise ValueError("not a PMD mesh")
    version = int.from_bytes(data[4:8], "little")
    offset = 12
    count = int.from_bytes(data[offset:offset + 4], "little")
    offset += 4
    uv_sets = 1
    if version >= 4:
        uv_sets = int.from_bytes(data[offset:offset + 4], "little")
        offset += 4
    stride = 24 + 8 * uv_sets + 20
    vertex_dtype = np.dtype([("pos", "<f4", 3), ("normal", "<f4", 3), ("uv", "<f4", (uv_sets, 2)),
                             ("blend", "V20")])
    assert vertex_dtype.itemsize == stride
    verts = np.frombuffer(data, vertex_dtype, count, offset)
    offset += stride * count
    faces_count = int.from_bytes(data[offset:offset + 4], "little")
    offset += 4
    faces = np.frombuffer(data, "<u2", faces_count * 3, offset).reshape(-1, 3).astype(np.int64)
    if faces.size and faces.max() >= count:
        raise ValueError("corrupt PMD (face index out of range)")
    uv = verts["uv"][:, 0].astype(np.float64) if uv_sets else np.zeros((count, 2))
    uv[:, 1] = 1.0 - uv[:, 1]  # PMD v runs down the image; glTF/trimesh v runs up
    mesh = trimesh.Trimesh(verts["pos"].astype(np.float64), faces, process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    return mesh


def read_md2(path: Path) -> tuple[trimesh.Trimesh, list[str]]:
    """A Quake II MD2 model's first frame (format public since 1997) and its skin names. UFO:AI's MD2s
    carry no GL commands, which assimp rejects; the triangles are all we need."""
    data = Path(path).read_bytes()
    if data[:4] != b"IDP2" or len(data) < 68:
        raise ValueError("not an MD2 model")
    (skin_w, skin_h, _frame_size, n_skins, n_xyz, n_st, n_tris, _n_gl, n_frames, ofs_skins, ofs_st, ofs_tris,
     ofs_frames) = np.frombuffer(data, "<i4", 13, 8).tolist()
    if min(n_xyz, n_st, n_tris, n_frames) <= 0 or ofs_frames + 40 + 4 * n_xyz > len(data):
        raise ValueError("empty or truncated MD2")
    skins = [data[ofs_skins + 64 * i: ofs_skins + 64 * (i + 1)].split(b"\0", 1)[0].decode("latin-1")
             for i in range(n_skins)]
    st = np.frombuffer(data, "<i2", 2 * n_st, ofs_st).reshape(-1, 2).astype(np.float64)
    tris = np.frombuffer(data, "<u2", 6 * n_tris, ofs_tris).reshape(-1, 6).astype(np.int64)
    scale = np.frombuffer(data, "<f4", 3, ofs_frames).astype(np.float64)
    translate = np.frombuffer(data, "<f4", 3, ofs_frames + 12).astype(np.float64)
    packed = np.frombuffer(data, np.uint8, 4 * n_xyz, ofs_frames + 40).reshape(-1, 4)[:, :3]
    xyz = packed.astype(np.float64) * scale + translate
    if tris[:, :3].max() >= n_xyz or tris[:, 3:].max() >= n_st:
        raise ValueError("corrupt MD2 (index out of range)")
    corners = np.stack([tris[:, :3].reshape(-1), tris[:, 3:].reshape(-1)], axis=1)
    unique, inverse = np.unique(corners, axis=0, return_inverse=True)
    uv = st[unique[:, 1]] / [max(skin_w, 1), max(skin_h, 1)]
    uv[:, 1] = 1.0 - uv[:, 1]
    faces = inverse.reshape(-1, 3)[:, ::-1]  # MD2 winds clockwise
    mesh = trimesh.Trimesh(xyz[unique[:, 0]], faces, process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    return mesh, skins


def read_pie(path: Path) -> tuple[trimesh.Trimesh, str]:
    """A Warzone 2100 PIE model (text; PIE 2 pixel or PIE 3 float texture coordinates), first level only,
    and its texture page name. Polygons are fanned into triangles."""
    lines = Path(path).read_text(errors="replace").splitlines()
    if not lines or not lines[0].startswith("PIE"):
        raise ValueError("not a PIE model")
    version = int(lines[0].split()[1])
    texture, size = "", (256.0, 256.0)
    points: list[list[float]] = []
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    i, level = 1, 0
    while i < len(lines):
        words = lines[i].split()
        i += 1
        if not words:
            continue
        if words[0] == "TEXTURE" and len(words) >= 3:
            texture = words[2]
            if len(words) >= 5:
                size = (max(float(words[3]), 1.0), max(float(words[4]), 1.0))
        elif words[0] == "LEVEL":
            level = int(words[1])
            if level > 1:
                break
        elif words[0] == "POINTS":
            points = [[float(x) for x in lines[i + k].split()[:3]] for k in range(int(words[1]))]
            i += int(words[1])
        elif words[0] == "POLYGONS":
            for k in range(int(words[1])):
                values = lines[i + k].split()
                flags, count = int(values[0], 16), int(values[1])
                index = [int(x) for x in values[2:2 + count]]
                rest = values[2 + count:]
                if flags & 0x4000:  # animated texture: frames, rate, width, height precede the coordinates
                    rest = rest[4:]
                coords = np.array([float(x) for x in rest[:2 * count]] + [0.0] * max(0, 2 * count - len(rest)))
                coords = coords.reshape(count, 2)
                if version < 3:
                    coords = coords / size
                base = len(vertices)
                for j, (vi, (u, v)) in enumerate(zip(index, coords)):
                    vertices.append(points[vi])
                    uvs.append([u, 1.0 - v])
                faces += [[base, base + j, base + j + 1] for j in range(1, count - 1)]
            i += int(words[1])
    if not faces:
        raise ValueError("no polygons")
    mesh = trimesh.Trimesh(np.array(vertices), np.array(faces), process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=np.array(uvs))
    return mesh, texture


#: G3D v4 mesh header after the 64-byte name: frames, vertices, indices, diffuse[3], specular[3],
#: specular power, opacity, property flags, texture flags.
_G3D_MESH = struct.Struct("<3I3f3f2f2I")


def read_g3d(path: Path) -> list[tuple[trimesh.Trimesh, str]]:
    """(mesh, diffuse texture name or "") per mesh of a MegaGlest G3D v4 model, first animation frame. The
    format (public with the game): "G3D", version byte, mesh count (uint16), model type (uint8); per mesh a
    64-byte name, the header above, one 64-byte name per texture flag bit (diffuse first), then positions
    and normals (frames x vertices x 3 floats each), texture coordinates (vertices x 2, if textured) and
    uint32 triangle indices. Parsing must end exactly at the end of the file."""
    data = Path(path).read_bytes()
    if data[:3] != b"G3D":
        raise ValueError("not a G3D model")
    if data[3] != 4:
        raise ValueError(f"G3D version {data[3]} (only 4 is read)")
    count = struct.unpack_from("<H", data, 4)[0]
    offset = 7
    meshes = []
    try:
        for _ in range(count):
            offset += 64  # mesh name
            frames, num_vertices, num_indices, *_, textures = _G3D_MESH.unpack_from(data, offset)
            offset += _G3D_MESH.size
            names = []
            for bit in range(8):
                if textures & (1 << bit):
                    names.append(data[offset:offset + 64].split(b"\0")[0].decode("latin-1"))
                    offset += 64
            positions = np.frombuffer(data, "<f4", num_vertices * 3, offset).reshape(-1, 3)  # frame 0
            offset += 2 * frames * num_vertices * 12  # every frame's positions, then normals
            uv = None
            if textures:
                uv = np.frombuffer(data, "<f4", num_vertices * 2, offset).reshape(-1, 2)
                offset += num_vertices * 8
            faces = np.frombuffer(data, "<u4", num_indices, offset).reshape(-1, 3)
            offset += num_indices * 4
            if len(faces) == 0 or int(faces.max()) >= num_vertices:
                continue
            mesh = trimesh.Trimesh(positions.astype(np.float64), faces.astype(np.int64), process=False)
            texture = names[0] if names and textures & 1 else ""
            if uv is not None:
                material = trimesh.visual.material.SimpleMaterial(name=texture or None)
                mesh.visual = trimesh.visual.TextureVisuals(uv=uv.astype(np.float64), material=material)
            meshes.append((mesh, texture))
    except (struct.error, ValueError) as exc:
        raise ValueError(f"truncated G3D model ({exc})") from exc
    if offset != len(data):
        raise ValueError(f"G3D model parsed to byte {offset} of {len(data)}")
    if not meshes:
        raise ValueError("no meshes")
    return meshes
