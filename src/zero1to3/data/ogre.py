"""Ogre3D's binary ``.mesh`` files and ``.material`` scripts, read into trimesh (rest pose, one mesh per submesh).

Why: ``openclonk-data`` ships ~150 hand-made objects (tools, weapons, animals, buildings, vehicles, plants), all
as Ogre binary meshes, which neither trimesh nor assimp (Debian 12) reads. The layout below is the public
description of Ogre's ``MeshSerializer`` chunks (facts only; this is our own code), checked on every ``.mesh``
file of the Debian 12 package (8.1-3: versions 1.41 and 1.8): each parses to exactly its byte length.

Layout (the byte order of the whole file is given by how the first uint16 reads: 0x1000 little-endian):

- ``M_HEADER`` 0x1000: a uint16 id and a version string ended by ``\\n`` (``[MeshSerializer_v1.8]``); no length.
- Every other chunk: uint16 id, uint32 length (header included). **The stored lengths are not reliable** (the
  files of the package have M_MESH and M_SUBMESH lengths a few bytes off, as Ogre's own writer computes them),
  so the chunks this reader needs (and the submesh name table, whose length is off too) are parsed field by
  field, as Ogre's loader does; only chunks it does not need (bounds, edge lists, LODs, poses, animations,
  extremes) are skipped by their length. In the package only bounds and edge lists occur, which hold no
  strings, and their lengths are right (every file ends exactly at its last chunk).
- ``M_MESH`` 0x3000: bool skeletally-animated (1 byte), then chunks: ``M_GEOMETRY`` 0x5000 (the shared vertices),
  ``M_SUBMESH`` 0x4000, ``M_MESH_SKELETON_LINK`` 0x6000 (a string), ``M_MESH_BONE_ASSIGNMENT`` 0x7000 (uint32
  vertex, uint16 bone, float32 weight), ``M_MESH_LOD`` 0x8000, ``M_MESH_BOUNDS`` 0x9000, ``M_SUBMESH_NAME_TABLE``
  0xA000, ``M_EDGE_LISTS`` 0xB000, ``M_POSES`` 0xC000, ``M_ANIMATIONS`` 0xD000, ``M_TABLE_EXTREMES`` 0xE000.
- ``M_SUBMESH``: material name (string), bool uses-shared-vertices, uint32 index count, bool 32-bit indices, the
  indices (uint16 or uint32); its own ``M_GEOMETRY`` unless it uses the shared one; then any of
  ``M_SUBMESH_OPERATION`` 0x4010 (uint16: 4 triangle list (the default), 5 strip, 6 fan; 1-3 points and lines),
  ``M_SUBMESH_BONE_ASSIGNMENT`` 0x4100 (as 0x7000), ``M_SUBMESH_TEXTURE_ALIAS`` 0x4200 (two strings).
- ``M_GEOMETRY``: uint32 vertex count, then ``M_GEOMETRY_VERTEX_DECLARATION`` 0x5100 holding one
  ``M_GEOMETRY_VERTEX_ELEMENT`` 0x5110 per element (uint16 source buffer, type, semantic, byte offset, index)
  and per buffer ``M_GEOMETRY_VERTEX_BUFFER`` 0x5200 (uint16 bind index, uint16 vertex size) followed by
  ``M_GEOMETRY_VERTEX_BUFFER_DATA`` 0x5210 (vertex count x vertex size bytes). Types read here: FLOAT1..4 (0-3),
  SHORT1..4 (5-8), UBYTE4 (9), colours (4, 10, 11: 4 bytes); semantics: 1 position, 4 normal, 5 diffuse colour,
  7 texture coordinates.

Axes: Ogre is right-handed, **+Y up** (the glTF frame), so vertices are returned as stored. UVs have the
top-left origin (DirectX style); they are returned with v flipped (``1 - v``), the OpenGL/trimesh convention.
Skinned meshes are read in their stored (bind) pose, the mesh as modelled; skeletons and animations are not
applied.

Material scripts (``material NAME [: PARENT] { technique { pass { diffuse r g b [a] texture_unit [NAME] {
texture FILE } } } }``): :func:`parse_material_script` gives per material the colour texture (the first
texture of the first pass, skipping normal-map units and OpenClonk's player-colour ``Overlay`` masks) and the
diffuse colour; a child inherits what it does not set from its parent.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from zero1to3.data.bytecursor import ByteCursor

__all__ = ["OgreGeometry", "OgreSubMesh", "OgreMesh", "OgreMaterial", "parse_mesh", "read_mesh",
           "parse_material_script", "resolve_materials", "MESH_VERSIONS"]

#: Serializer versions read (the two the Debian package holds; others are refused rather than guessed at).
MESH_VERSIONS = ("[MeshSerializer_v1.41]", "[MeshSerializer_v1.8]")

M_HEADER, M_MESH, M_SUBMESH, M_SUBMESH_OPERATION = 0x1000, 0x3000, 0x4000, 0x4010
M_SUBMESH_BONE_ASSIGNMENT, M_SUBMESH_TEXTURE_ALIAS = 0x4100, 0x4200
M_GEOMETRY, M_VERTEX_DECLARATION, M_VERTEX_ELEMENT = 0x5000, 0x5100, 0x5110
M_VERTEX_BUFFER, M_VERTEX_BUFFER_DATA = 0x5200, 0x5210
M_SKELETON_LINK, M_BONE_ASSIGNMENT = 0x6000, 0x7000
M_SUBMESH_NAME_TABLE, M_SUBMESH_NAME_ENTRY = 0xA000, 0xA100
#: mesh-level chunks skipped by their stored length: LOD, bounds, edge lists, poses, animations, extremes (the
#: package's files hold only bounds and edge lists, whose lengths are right: no strings, which the writer miscounts)
_SKIPPED = {0x8000, 0x9000, 0xB000, 0xC000, 0xD000, 0xE000}
_SUBMESH_CHILDREN = {M_SUBMESH_OPERATION, M_SUBMESH_BONE_ASSIGNMENT, M_SUBMESH_TEXTURE_ALIAS}
#: vertex element type -> (numpy dtype of one component, component count)
_ELEMENT_TYPES = {0: ("f4", 1), 1: ("f4", 2), 2: ("f4", 3), 3: ("f4", 4), 4: ("u1", 4), 5: ("i2", 1),
                  6: ("i2", 2), 7: ("i2", 3), 8: ("i2", 4), 9: ("u1", 4), 10: ("u1", 4), 11: ("u1", 4)}
SEM_POSITION, SEM_NORMAL, SEM_DIFFUSE, SEM_TEXCOORD = 1, 4, 5, 7
OT_TRIANGLE_LIST, OT_TRIANGLE_STRIP, OT_TRIANGLE_FAN = 4, 5, 6


@dataclass
class OgreGeometry:
    """One vertex set: the arrays this reader keeps, as stored (file axes, v not flipped)."""

    positions: np.ndarray  # float32 [n, 3]
    uv: np.ndarray | None = None  # float32 [n, 2] (first texture coordinate set), top-left origin
    colours: np.ndarray | None = None  # uint8 [n, 4] as stored (ARGB or ABGR packing not decoded)


@dataclass
class OgreSubMesh:
    material: str
    indices: np.ndarray  # int64 [m], as stored (see ``operation``)
    operation: int = OT_TRIANGLE_LIST
    geometry: OgreGeometry | None = None  # None: uses the mesh's shared geometry

    def triangles(self) -> np.ndarray:
        """[k, 3] triangles of a list, strip or fan (strips alternate winding; degenerate ones dropped)."""
        idx = self.indices
        if self.operation == OT_TRIANGLE_LIST:
            if len(idx) % 3:
                raise ValueError(f"triangle list of {len(idx)} indices (not a multiple of 3)")
            tris = idx.reshape(-1, 3)
        elif self.operation == OT_TRIANGLE_STRIP:
            tris = np.array([(idx[i], idx[i + 1], idx[i + 2]) if i % 2 == 0 else (idx[i + 1], idx[i], idx[i + 2])
                             for i in range(len(idx) - 2)], np.int64).reshape(-1, 3)
        elif self.operation == OT_TRIANGLE_FAN:
            tris = np.array([(idx[0], idx[i], idx[i + 1]) for i in range(1, len(idx) - 1)], np.int64).reshape(-1, 3)
        else:
            return np.zeros((0, 3), np.int64)  # points and lines draw no surface
        keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
        return tris[keep]


@dataclass
class OgreMesh:
    version: str
    skeletal: bool
    submeshes: list[OgreSubMesh] = field(default_factory=list)
    shared: OgreGeometry | None = None
    skeleton: str = ""


class _Cursor(ByteCursor):
    """Ogre's reads in the file's byte order: strings end with a newline; chunks have a header."""

    def __init__(self, data: bytes, order: str) -> None:
        super().__init__(data, order, "Ogre mesh")

    def string(self) -> str:
        end = self.data.find(b"\n", self.offset)
        if end < 0:
            raise self.truncated(f"unterminated string at byte {self.offset} of {len(self.data)}")
        text = self.data[self.offset:end].decode("utf-8", "replace")
        self.offset = end + 1
        return text

    def peek_chunk(self) -> int | None:
        """The id of the next chunk (None at the end), without moving."""
        if self.offset + 2 > len(self.data):
            return None
        return struct.unpack_from(self.order + "H", self.data, self.offset)[0]

    def chunk(self) -> tuple[int, int, int]:
        """(id, stored length, start offset) of the next chunk header, moving past the header."""
        start = self.offset
        cid, length = self.unpack("HI")
        return cid, length, start

    def skip_chunk(self, cid: int, length: int, start: int) -> None:
        if length < 6 or start + length > len(self.data):
            raise self.truncated(f"chunk 0x{cid:04x} at byte {start} claims {length} bytes of "
                                 f"{len(self.data) - start} left")
        self.offset = start + length


def _read_geometry(cur: _Cursor) -> OgreGeometry:
    (count,) = cur.unpack("I")
    elements: list[tuple[int, int, int, int, int]] = []
    buffers: dict[int, tuple[int, bytes]] = {}
    while cur.peek_chunk() in (M_VERTEX_DECLARATION, M_VERTEX_BUFFER):
        cid, _, _ = cur.chunk()
        if cid == M_VERTEX_DECLARATION:
            while cur.peek_chunk() == M_VERTEX_ELEMENT:
                cur.chunk()
                elements.append(cur.unpack("5H"))  # source, type, semantic, offset, index
        else:
            bind, size = cur.unpack("HH")
            data_id, _, data_at = cur.chunk()
            if data_id != M_VERTEX_BUFFER_DATA:
                raise ValueError(f"vertex buffer without data (chunk 0x{data_id:04x} at byte {data_at})")
            buffers[bind] = (size, cur.take(count * size))

    def element(semantic: int, index: int = 0) -> np.ndarray | None:
        for source, etype, sem, offset, eindex in elements:
            if sem != semantic or eindex != index:
                continue
            if etype not in _ELEMENT_TYPES:
                raise ValueError(f"vertex element type {etype} is not read")
            if source not in buffers:
                raise ValueError(f"vertex element reads buffer {source}, which the geometry does not hold")
            dtype, width = _ELEMENT_TYPES[etype]
            stride, raw = buffers[source]
            item = np.dtype(cur.order + dtype)
            if offset + item.itemsize * width > stride:
                raise ValueError(f"vertex element at offset {offset} overruns the {stride}-byte vertex")
            rows = np.frombuffer(raw, np.uint8).reshape(count, stride)[:, offset:offset + item.itemsize * width]
            return np.ascontiguousarray(rows).view(item).reshape(count, width)
        return None

    positions = element(SEM_POSITION)
    if positions is None or positions.shape[1] < 3:
        raise ValueError("geometry without 3D positions")
    uv = element(SEM_TEXCOORD)
    colours = element(SEM_DIFFUSE)
    return OgreGeometry(positions[:, :3].astype(np.float32),
                        uv[:, :2].astype(np.float32) if uv is not None and uv.shape[1] >= 2 else None,
                        colours.astype(np.uint8) if colours is not None and colours.dtype.kind == "u" else None)


def _read_submesh(cur: _Cursor) -> OgreSubMesh:
    material = cur.string()
    shared, count, wide = cur.unpack("?I?")
    dtype = np.dtype(cur.order + ("u4" if wide else "u2"))
    indices = np.frombuffer(cur.take(count * dtype.itemsize), dtype).astype(np.int64)
    sub = OgreSubMesh(material, indices)
    if not shared:
        cid, _, start = cur.chunk()
        if cid != M_GEOMETRY:
            raise ValueError(f"submesh {material!r} has no geometry (chunk 0x{cid:04x} at byte {start})")
        sub.geometry = _read_geometry(cur)
    while cur.peek_chunk() in _SUBMESH_CHILDREN:
        cid, _, _ = cur.chunk()
        if cid == M_SUBMESH_OPERATION:
            (sub.operation,) = cur.unpack("H")
        elif cid == M_SUBMESH_BONE_ASSIGNMENT:
            cur.take(10)
        else:
            cur.string(), cur.string()
    return sub


def parse_mesh(data: bytes) -> OgreMesh:
    """Everything an Ogre binary mesh holds that a static reader needs. Raises ValueError for anything else:
    another header or serializer version, a read past the end, an unknown chunk, or bytes left over after the
    last chunk (the whole file must be accounted for)."""
    data = bytes(data)
    if len(data) < 3 or data[:2] not in (b"\x00\x10", b"\x10\x00"):
        raise ValueError("not an Ogre binary mesh (no M_HEADER 0x1000 chunk)")
    cur = _Cursor(data, "<" if data[:2] == b"\x00\x10" else ">")
    cur.offset = 2
    version = cur.string()
    if version not in MESH_VERSIONS:
        raise ValueError(f"Ogre mesh version {version[:40]!r} is not read (only {', '.join(MESH_VERSIONS)})")
    mesh: OgreMesh | None = None
    while not cur.at_end():
        cid, length, start = cur.chunk()
        if cid != M_MESH or mesh is not None:
            raise ValueError(f"unexpected Ogre chunk 0x{cid:04x} at byte {start} (one M_MESH expected)")
        (skeletal,) = cur.unpack("?")
        mesh = OgreMesh(version, skeletal)
        while not cur.at_end():
            cid, length, start = cur.chunk()
            if cid == M_GEOMETRY:
                mesh.shared = _read_geometry(cur)
            elif cid == M_SUBMESH:
                mesh.submeshes.append(_read_submesh(cur))
            elif cid == M_SKELETON_LINK:
                mesh.skeleton = cur.string()
            elif cid == M_BONE_ASSIGNMENT:
                cur.take(10)
            elif cid == M_SUBMESH_NAME_TABLE:
                while cur.peek_chunk() == M_SUBMESH_NAME_ENTRY:
                    cur.chunk()
                    cur.unpack("H")
                    cur.string()
            elif cid in _SKIPPED:
                cur.skip_chunk(cid, length, start)
            else:
                raise ValueError(f"unknown Ogre mesh chunk 0x{cid:04x} at byte {start}")
    if mesh is None:
        raise ValueError("Ogre file holds no M_MESH chunk")
    for sub in mesh.submeshes:
        geometry = sub.geometry or mesh.shared
        if geometry is None:
            raise ValueError(f"submesh {sub.material!r} uses shared vertices, but the mesh has none")
        if len(sub.indices) and int(sub.indices.max()) >= len(geometry.positions):
            raise ValueError(f"submesh {sub.material!r}: index {int(sub.indices.max())} out of range "
                             f"({len(geometry.positions)} vertices)")
    return mesh


def read_mesh(path: Path | str | bytes) -> list[tuple[trimesh.Trimesh, str]]:
    """(mesh, material name) per submesh with triangles, in the file's +Y-up axes. Each mesh keeps only the
    vertices its triangles use; vertices with UVs carry them (v flipped to the OpenGL convention) with a
    ``SimpleMaterial`` named after the Ogre material. ``mesh.metadata['name']`` is the material name."""
    data = path if isinstance(path, (bytes, bytearray)) else Path(path).read_bytes()
    model = parse_mesh(data)
    out = []
    for sub in model.submeshes:
        geometry = sub.geometry or model.shared
        tris = sub.triangles()
        if len(tris) == 0:
            continue
        used, faces = np.unique(tris, return_inverse=True)
        faces = faces.reshape(-1, 3)
        mesh = trimesh.Trimesh(geometry.positions[used].astype(np.float64), faces, process=False)
        material = trimesh.visual.material.SimpleMaterial(name=sub.material)
        if geometry.uv is not None:
            uv = geometry.uv[used].astype(np.float64)
            uv[:, 1] = 1.0 - uv[:, 1]
            mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        mesh.metadata.update(name=sub.material, ogre_skeleton=model.skeleton)
        out.append((mesh, sub.material))
    if not out:
        raise ValueError("Ogre mesh has no triangles")
    return out


# --------------------------------------------------------------------------------------------- materials
@dataclass
class OgreMaterial:
    """What a static reader takes from a material script: the colour texture and the diffuse colour."""

    name: str
    parent: str = ""
    texture: str = ""  # file name as written, "" when none
    diffuse: tuple[float, float, float, float] | None = None  # 0..1


_TOKEN = re.compile(r'"[^"\n]*"|[{}]|[^\s{}]+')
#: texture units that are not the colour texture: normal maps and OpenClonk's player-colour overlay masks
_NOT_COLOUR_UNIT = re.compile(r"^(normal|overlay|light|bump|spec|gloss)", re.I)
_NOT_COLOUR_FILE = re.compile(r"(normal|_n$|_nm$|bump|overlay|spec|gloss)", re.I)


@dataclass
class _Block:
    kind: str
    args: list[str]
    items: list = field(default_factory=list)  # statements (lists of words) and nested blocks, in order

    def blocks(self, kind: str) -> list[_Block]:
        return [b for b in self.items if isinstance(b, _Block) and b.kind == kind]

    def statements(self, first: str) -> list[list[str]]:
        return [s for s in self.items if isinstance(s, list) and s and s[0] == first]


def _parse_blocks(text: str) -> _Block:
    """The script as nested blocks: a block's header is the statement before its ``{`` (on the same line or
    the line above); comments (``//``) removed; an unmatched ``}`` is ignored, unclosed blocks end at the end."""
    root = _Block("", [])
    stack = [root]
    for line in text.splitlines():
        words = [w.strip('"') for w in _TOKEN.findall(line.split("//", 1)[0])]
        while words:
            if words[0] == "{":
                items = stack[-1].items
                header = items.pop() if items and isinstance(items[-1], list) else []
                block = _Block(header[0] if header else "", header[1:])
                stack[-1].items.append(block)
                stack.append(block)
                words = words[1:]
            elif words[0] == "}":
                if len(stack) > 1:
                    stack.pop()
                words = words[1:]
            else:
                end = next((i for i, w in enumerate(words) if w in ("{", "}")), len(words))
                stack[-1].items.append(words[:end])
                words = words[end:]
    return root


def _colour_texture(unit_blocks: list[_Block]) -> str:
    """The first texture of the units that is not a normal map or a player-colour overlay mask."""
    for unit in unit_blocks:
        if unit.args and _NOT_COLOUR_UNIT.match(unit.args[0]):
            continue
        if any("src_player_colour" in s for s in unit.statements("colour_op_ex")):
            continue
        for statement in unit.statements("texture"):
            if len(statement) >= 2 and not _NOT_COLOUR_FILE.search(Path(statement[1]).stem):
                return statement[1]
    return ""


def parse_material_script(text: str) -> dict[str, OgreMaterial]:
    """Materials of one Ogre ``.material`` script by name (see the module notes for what is kept; the first
    definition of a name wins). Only the first technique and its first pass are read; other top-level blocks
    (shader programs) are skipped."""
    out: dict[str, OgreMaterial] = {}
    for block in _parse_blocks(text).blocks("material"):
        name, _, parent = " ".join(block.args).partition(":")
        material = OgreMaterial(name.strip(), parent.strip())
        techniques = block.blocks("technique")
        passes = techniques[0].blocks("pass") if techniques else []
        if passes:
            for statement in passes[0].statements("diffuse"):
                try:
                    rgba = [float(w) for w in statement[1:5]]
                except ValueError:
                    continue
                if len(rgba) >= 3:
                    material.diffuse = tuple((rgba + [1.0])[:4])
            material.texture = _colour_texture(passes[0].blocks("texture_unit"))
        if material.name:
            out.setdefault(material.name, material)
    return out


def resolve_materials(materials: dict[str, OgreMaterial]) -> dict[str, OgreMaterial]:
    """Copies with what a material does not set (texture, diffuse) taken from its parent chain."""
    resolved: dict[str, OgreMaterial] = {}
    for name, material in materials.items():
        texture, diffuse, seen, parent = material.texture, material.diffuse, {name}, material.parent
        while parent and parent in materials and parent not in seen and (not texture or diffuse is None):
            seen.add(parent)
            texture = texture or materials[parent].texture
            diffuse = diffuse if diffuse is not None else materials[parent].diffuse
            parent = materials[parent].parent
        resolved[name] = OgreMaterial(name, material.parent, texture, diffuse)
    return resolved
