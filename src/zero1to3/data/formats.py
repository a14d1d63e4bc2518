"""Game formats read into trimesh: 0 A.D.'s PMD, Quake 2's MD2, Warzone 2100's PIE, MegaGlest's G3D and
Lugaru's .solid; and the subset of VRML 2.0 that KiCad's 3D component models use.

Why: these packages ship their models only in their engines' own formats, which neither trimesh nor assimp
reads (or reads without textures). Each reader returns meshes in the file's own axes with UVs in the
OpenGL convention and the texture name the file gives; a file must parse cleanly or is refused with a
ValueError (the corpus records it as failed). SuperTuxKart's SPM lives in :mod:`zero1to3.data.spm`.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import trimesh

__all__ = ["read_pmd", "read_md2", "read_pie", "read_g3d", "read_vrml", "read_solid", "read_dcm"]


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


# --------------------------------------------------------------------------------------------- VRML 2.0
_VRML_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\]|\\.)*"|[{}\[\]]|[^\s,{}\[\]"#]+')
#: node types read, with the fields that matter; any other node type is refused
_VRML_NODES = {"Shape", "Appearance", "Material", "IndexedFaceSet", "Coordinate", "Normal", "Transform", "Group"}
#: fields that are read or safely ignored (shading hints, normals: the renderer computes its own)
_VRML_IGNORED = {"creaseAngle", "solid", "convex", "normalPerVertex", "normalIndex", "normal", "vector",
                 "ambientIntensity", "specularColor", "emissiveColor", "shininess", "bboxCenter", "bboxSize"}


class _VrmlNode(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind


class _VrmlParser:
    def __init__(self, text: str):
        self.tokens = [t for t in _VRML_TOKEN.findall(text) if not t.startswith("#")]
        self.pos = 0
        self.defs: dict[str, _VrmlNode] = {}

    def peek(self, ahead: int = 0) -> str | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise ValueError("VRML: unexpected end of file")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def starts_node(self) -> bool:
        token = self.peek()
        return token in ("DEF", "USE") or (token is not None and token[0].isalpha() and self.peek(1) == "{")

    def node(self) -> _VrmlNode:
        token = self.take()
        if token == "USE":
            name = self.take()
            if name not in self.defs:
                raise ValueError(f"VRML: USE of undefined {name!r}")
            return self.defs[name]
        name = None
        if token == "DEF":
            name, token = self.take(), self.take()
        if token not in _VRML_NODES:
            raise ValueError(f"VRML: node type {token!r} is not read")
        if self.take() != "{":
            raise ValueError(f"VRML: '{{' expected after {token}")
        node = _VrmlNode(token)
        while self.peek() != "}":
            field = self.take()
            if not field[0].isalpha() or field in ("DEF", "USE"):
                raise ValueError(f"VRML: field name expected in {token}, got {field!r}")
            node[field] = self.value()
        self.take()
        if name is not None:
            self.defs[name] = node
        return node

    def value(self):
        if self.peek() == "[":
            self.take()
            items: list = []
            while self.peek() != "]":
                if self.peek() is None:
                    raise ValueError("VRML: unclosed '['")
                items.append(self.node() if self.starts_node() else self.scalar())
            self.take()
            return items
        if self.starts_node():
            return self.node()
        values = []
        while self.peek() is not None and self.peek() not in "{}[]" and not self.peek()[0].isalpha():
            values.append(self.scalar())
        if not values and self.peek() in ("TRUE", "FALSE", "NULL"):
            values.append(self.take())
        if not values:
            raise ValueError(f"VRML: value expected, got {self.peek()!r}")
        return values

    def scalar(self):
        token = self.take()
        if token in ("TRUE", "FALSE") or token.startswith('"'):
            return token
        try:
            return float(token)
        except ValueError:
            raise ValueError(f"VRML: number expected, got {token!r}") from None


def _vrml_floats(value, count: int | None, field: str) -> np.ndarray:
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"VRML: {field} is not numeric") from None
    if array.ndim != 1 or (count is not None and array.size != count):
        raise ValueError(f"VRML: {field} needs {count} numbers")
    return array


def _vrml_transform(node: _VrmlNode) -> np.ndarray:
    """The 4x4 matrix of a Transform: T * C * R * SR * S * SR^-1 * C^-1 (VRML 2.0 spec)."""
    from trimesh import transformations as tf

    def get(field, default):
        return _vrml_floats(node.get(field, default), len(default), f"Transform.{field}")

    translation, center, scale = get("translation", [0, 0, 0]), get("center", [0, 0, 0]), get("scale", [1, 1, 1])
    rotation, orientation = get("rotation", [0, 0, 1, 0]), get("scaleOrientation", [0, 0, 1, 0])
    rot = tf.rotation_matrix(rotation[3], rotation[:3]) if rotation[3] else np.eye(4)
    orient = tf.rotation_matrix(orientation[3], orientation[:3]) if orientation[3] else np.eye(4)
    return (tf.translation_matrix(translation + center) @ rot @ orient @ np.diag([*scale, 1.0])
            @ np.linalg.inv(orient) @ tf.translation_matrix(-center))


def _vrml_shape(shape: _VrmlNode, matrix: np.ndarray) -> tuple[trimesh.Trimesh, np.ndarray] | None:
    for field in shape:
        if field not in ("appearance", "geometry"):
            raise ValueError(f"VRML: Shape field {field!r} is not read")
    geometry = shape.get("geometry")
    if geometry is None:
        return None  # KiCad's files open with appearance-only shapes that DEF the materials
    if geometry.kind != "IndexedFaceSet":
        raise ValueError(f"VRML: geometry {geometry.kind} is not read")
    for field in geometry:
        if field not in ("coord", "coordIndex", "ccw") and field not in _VRML_IGNORED:
            raise ValueError(f"VRML: IndexedFaceSet field {field!r} is not read")
    colour = np.array([0.8, 0.8, 0.8, 1.0])
    appearance = shape.get("appearance")
    if appearance is not None:
        if appearance.kind != "Appearance" or set(appearance) - {"material"}:
            raise ValueError("VRML: appearance other than one Material is not read")
        material = appearance.get("material")
        if material is not None:
            if material.kind != "Material" or set(material) - _VRML_IGNORED - {"diffuseColor", "transparency"}:
                raise ValueError("VRML: unexpected Material")
            colour[:3] = _vrml_floats(material.get("diffuseColor", [0.8, 0.8, 0.8]), 3, "diffuseColor")
            colour[3] = 1.0 - _vrml_floats(material.get("transparency", [0.0]), 1, "transparency")[0]
    coord = geometry.get("coord")
    if coord is None or coord.kind != "Coordinate" or set(coord) != {"point"}:
        raise ValueError("VRML: IndexedFaceSet without a Coordinate point list")
    points = _vrml_floats(coord["point"], None, "point")
    if points.size % 3:
        raise ValueError("VRML: point count is not a multiple of 3")
    points = points.reshape(-1, 3)
    index = _vrml_floats(geometry.get("coordIndex", []), None, "coordIndex")
    if np.any(index != np.round(index)) or np.any(index < -1) or np.any(index >= len(points)):
        raise ValueError("VRML: coordIndex out of range")
    faces = []
    for polygon in np.split(index.astype(np.int64), np.flatnonzero(index == -1)):
        polygon = polygon[polygon >= 0]
        faces += [(polygon[0], polygon[i], polygon[i + 1]) for i in range(1, len(polygon) - 1)]  # fan
    if not faces:
        return None
    faces = np.asarray(faces, np.int64)
    if geometry.get("ccw", ["TRUE"]) == ["FALSE"]:
        faces = faces[:, ::-1]
    mesh = trimesh.Trimesh(points, faces, process=False)
    if not np.allclose(matrix, np.eye(4)):
        mesh.apply_transform(matrix)
    return mesh, np.clip(colour, 0.0, 1.0)


def _vrml_walk(node: _VrmlNode, matrix: np.ndarray, out: list, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("VRML: nodes nested too deep")
    if node.kind == "Shape":
        part = _vrml_shape(node, matrix)
        if part is not None:
            out.append(part)
    elif node.kind in ("Transform", "Group"):
        allowed = {"children", "bboxCenter", "bboxSize"}
        if node.kind == "Transform":
            allowed |= {"translation", "rotation", "scale", "scaleOrientation", "center"}
            matrix = matrix @ _vrml_transform(node)
        if set(node) - allowed:
            raise ValueError(f"VRML: {node.kind} field {sorted(set(node) - allowed)[0]!r} is not read")
        children = node.get("children", [])
        for child in children if isinstance(children, list) else [children]:
            if not isinstance(child, _VrmlNode):
                raise ValueError("VRML: children must be nodes")
            _vrml_walk(child, matrix, out, depth + 1)
    else:
        raise ValueError(f"VRML: {node.kind} at the top level")


def read_vrml(path: Path) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """The shapes of a VRML 2.0 file as (mesh, RGBA colour in 0..1) pairs, in the file's own axes.

    Reads the subset KiCad's 3D models (``kicad-packages3d``) are written in: top-level ``Shape`` nodes (and
    ``Transform`` / ``Group`` around them) with an ``Appearance`` holding one ``Material`` (diffuse colour and
    transparency; DEF/USE references to any node) and an ``IndexedFaceSet`` of ``Coordinate`` points whose
    ``coordIndex`` polygons (separated by -1) are split into triangle fans. Normals and shading hints are
    ignored; textures, colours per vertex, other geometry, PROTOs, Inline and anything else are refused with a
    ValueError, as are broken files."""
    text = Path(path).read_bytes().decode("utf-8", "replace")
    if not text.startswith("#VRML V2.0"):
        raise ValueError("not a VRML 2.0 file")
    parser = _VrmlParser(text)
    out: list[tuple[trimesh.Trimesh, np.ndarray]] = []
    while parser.peek() is not None:
        if parser.peek() in ("PROTO", "EXTERNPROTO", "ROUTE"):
            raise ValueError(f"VRML: {parser.peek()} is not read")
        _vrml_walk(parser.node(), np.eye(4), out)
    if not out:
        raise ValueError("VRML: no faces")
    return out


#: One triangle of a Lugaru .solid file: six big-endian shorts (the corner vertex indices at 0, 2 and 4; the
#: others unused), then the corners' texture coordinates, three u and three v (big-endian floats)
_SOLID_TRIANGLE = np.dtype([("index", ">i2", 6), ("u", ">f4", 3), ("v", ">f4", 3)])


def read_solid(path: Path) -> trimesh.Trimesh:
    """A Lugaru ``.solid`` model: big-endian vertex and triangle counts (shorts), the vertices (three floats
    each), then the triangles (:data:`_SOLID_TRIANGLE`, 36 bytes). The file must be exactly that long. UVs are
    per corner, so each triangle gets its own three vertices; v is flipped into the OpenGL convention (the
    game uploads its images top row first). The skin is not named in the file (the game picks it in code)."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ValueError("not a Lugaru .solid model (shorter than its header)")
    n_vertices, n_triangles = struct.unpack(">hh", data[:4])
    expected = 4 + 12 * n_vertices + _SOLID_TRIANGLE.itemsize * n_triangles
    if n_vertices <= 0 or n_triangles <= 0 or len(data) != expected:
        raise ValueError(f"not a Lugaru .solid model or truncated ({n_vertices} vertices, {n_triangles} "
                         f"triangles need {expected} bytes, the file has {len(data)})")
    xyz = np.frombuffer(data, ">f4", 3 * n_vertices, 4).reshape(-1, 3).astype(np.float64)
    triangles = np.frombuffer(data, _SOLID_TRIANGLE, n_triangles, 4 + 12 * n_vertices)
    corners = triangles["index"][:, ::2].astype(np.int64)
    if corners.min() < 0 or corners.max() >= n_vertices:
        raise ValueError("corrupt .solid model (vertex index out of range)")
    uv = np.stack([triangles["u"].reshape(-1), 1.0 - triangles["v"].reshape(-1)], axis=1).astype(np.float64)
    mesh = trimesh.Trimesh(xyz[corners.reshape(-1)], np.arange(3 * n_triangles).reshape(-1, 3), process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    return mesh


def read_dcm(path: Path) -> trimesh.Trimesh:
    """A DreamChess ``.dcm`` model (text, whitespace-separated): ``DCM 0100``, the vertex count n, the
    vertices (3n floats), their normals (3n), their UVs (2n), the primitive count, then per primitive its
    type (``TRIANGLES`` or ``STRIP``), its index count and the indices. Strips become triangles with every
    second one's winding flipped (degenerate ones dropped). Anything else (another version, a truncated file,
    extra tokens, an index out of range) is refused. The texture is not named in the file (the game picks
    the set's ``white.png`` / ``black.png`` from ``set.cfg``)."""
    tokens = Path(path).read_text(errors="replace").split()
    if tokens[:2] != ["DCM", "0100"] or len(tokens) < 3:
        raise ValueError("not a DreamChess DCM 0100 model")
    try:
        n = int(tokens[2])
        pos = 3 + 8 * n
        if n <= 0 or len(tokens) < pos + 1:
            raise ValueError(f"truncated ({n} vertices)")
        values = np.array(tokens[3:pos], np.float64)
        xyz, uv = values[:3 * n].reshape(-1, 3), values[6 * n:].reshape(-1, 2)
        faces: list[list[int]] = []
        count = int(tokens[pos])
        pos += 1
        for _ in range(count):
            kind, size = tokens[pos], int(tokens[pos + 1])
            index = [int(t) for t in tokens[pos + 2:pos + 2 + size]]
            if len(index) != size:
                raise ValueError("truncated primitive")
            pos += 2 + size
            if kind == "TRIANGLES" and size % 3 == 0:
                faces += [index[i:i + 3] for i in range(0, size, 3)]
            elif kind == "STRIP":
                for i in range(size - 2):
                    a, b, c = index[i:i + 3]
                    if len({a, b, c}) == 3:
                        faces.append([a, b, c] if i % 2 == 0 else [b, a, c])
            else:
                raise ValueError(f"unknown primitive {kind!r} with {size} indices")
    except (IndexError, ValueError) as exc:
        raise ValueError(f"not a DreamChess DCM 0100 model or truncated ({exc})") from exc
    if pos != len(tokens):
        raise ValueError(f"{len(tokens) - pos} tokens after the last primitive")
    face_array = np.array(faces, np.int64).reshape(-1, 3)
    if not len(face_array) or face_array.min() < 0 or face_array.max() >= n:
        raise ValueError("DCM model without triangles or with a vertex index out of range")
    mesh = trimesh.Trimesh(xyz, face_array, process=False)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv)
    return mesh
