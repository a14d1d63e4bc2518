"""SuperTuxKart's binary ``.spm`` meshes, read into trimesh (first/bind pose, one mesh per section).

Why: ``supertuxkart-data`` ships several hundred hand-made props, karts and items, and every mesh in it is in
STK's own SPM format, which neither trimesh nor assimp reads. The layout below was learnt from the game's
public loader and Blender add-on (facts only; this is our own code) and checked on every ``.spm`` file of
the Debian 12 package (1.4+dfsg-2): each parses to exactly its byte length.

Layout (little-endian):

- ``b"SP"``; one byte ``version << 3 | kind`` (version 1; kind 0 = space-partitioned "SPMS", never shipped and
  refused here; 1 = skinned "SPMA"; 2 = static "SPMN"); one flag byte (bit 0 normals, bit 1 vertex colours,
  bit 2 tangents are stored per vertex); a bounding box of 6 float32 (min xyz, max xyz).
- uint16 material count; per material two strings (uint8 length + bytes): the colour texture's file name and
  a second texture's (e.g. a decal or lightmap on a second UV set), either may be empty.
- uint16 sector count (1 in every shipped file); per sector a uint16 section count, and per section: uint32
  vertex count, uint32 index count, uint16 material index, then the vertices and the triangle indices.
- A vertex: 3 float32 position; packed normal (uint32) if flagged; if colours are flagged a byte that is 128
  for white, else followed by 3 bytes RGB; if the material names a first texture, 2 half-float UVs, then 2 more
  if it names a second one, then a packed tangent (uint32) if flagged; if skinned, 4 int16 joint indices and
  4 half-float weights. Indices are uint8 when the section has <= 255 vertices, else uint16 (uint32 past
  65535 in the Blender add-on; the game refuses those).
- Skinned files end with the animation: uint8 armature count, uint16 bind frame, and per armature uint16
  joints used, uint16 joint count, joint names (uint8 length + bytes), one 40-byte loc/rot/scale record
  (10 float32) per joint, one int16 parent per joint, uint16 frame count and per frame a uint16 frame number
  and a 40-byte record per joint.

Axes: the files are **+Y up** (STK: X right, Y up, Z forward; checked on the karts: wheels at the lowest Y).
The game's frame is left-handed, so a right-handed reader must mirror one axis or every object comes out
mirror-imaged (text on textures reversed). Read as right-handed numbers, the stored triangles wind
counter-clockwise seen from outside (positive volume for 298 of the 309 closed sections in the package), which
is the game's clockwise front face in its left-handed frame. :func:`read_spm` therefore negates X by default
(``right_handed=True``: X left, Y up, Z forward, the glTF frame) and swaps two corners of every triangle, so
faces stay outward-wound for a counter-clockwise-front renderer; ``right_handed=False`` gives the raw numbers.
UVs use the top-left texture origin (DirectX/Irrlicht); they are returned with v flipped (``1 - v``), the
OpenGL/trimesh convention. Skinned files are read in their stored pose, the mesh as modelled, which is how the
game's fixed-pipeline path shows them at the bind frame; the animation is parsed (to check the length) but
not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from zero1to3.data.bytecursor import ByteCursor

SPM_VERSION = 1
KIND_NAMES = {0: "SPMS", 1: "SPMA", 2: "SPMN"}
_JOINT_RECORD = 40  # loc (3 float32), rotation quaternion (4), scale (3)


@dataclass
class SpmSection:
    """One drawn buffer of a model: raw per-vertex arrays as stored (file axes, v not flipped)."""

    material: int
    positions: np.ndarray  # float32 [n, 3]
    indices: np.ndarray  # int64 [m] (m a multiple of 3)
    uv: np.ndarray | None = None  # float32 [n, 2], top-left origin
    uv2: np.ndarray | None = None  # float32 [n, 2]
    colors: np.ndarray | None = None  # uint8 [n, 3]
    joints: np.ndarray | None = None  # int16 [n, 4]
    weights: np.ndarray | None = None  # float32 [n, 4]


@dataclass
class SpmArmature:
    """What the reader keeps of a skeleton: enough to report on it, nothing is applied."""

    joints_used: int
    joint_names: list[str]
    parents: list[int]
    frames: list[int]


@dataclass
class SpmModel:
    kind: str  # "SPMA" (skinned) or "SPMN" (static)
    has_normals: bool
    has_colors: bool
    has_tangents: bool
    bbox: np.ndarray  # float32 [2, 3]: min, max
    materials: list[tuple[str, str]]  # (first texture, second texture) file names, "" when none
    sections: list[SpmSection] = field(default_factory=list)
    bind_frame: int = 0
    armatures: list[SpmArmature] = field(default_factory=list)


class _Cursor(ByteCursor):
    """SPM's reads: little-endian, strings with a one-byte length."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data, "<", "SPM file")

    def string(self) -> str:
        (size,) = self.unpack("B")
        return self.take(size).decode("latin-1")


def _vertex_starts(cur: _Cursor, count: int, fixed: int, colour_at: int | None) -> np.ndarray:
    """Byte offsets of ``count`` vertex records of ``fixed`` bytes plus, when colours are stored, a colour of
    1 byte (white marker) or 4 (marker + RGB) at ``colour_at`` within the record."""
    start = cur.offset
    if colour_at is None:
        cur.take(count * fixed)
        return start + fixed * np.arange(count, dtype=np.int64)
    starts = np.empty(count, np.int64)
    data, offset, end = cur.data, start, len(cur.data)
    for i in range(count):
        starts[i] = offset
        if offset + colour_at >= end:
            raise cur.truncated(f"vertex {i} of {count} at byte {offset} of {end}")
        offset += fixed + (1 if data[offset + colour_at] == 128 else 4)
    cur.take(offset - start)
    return starts


def _gather(raw: np.ndarray, starts: np.ndarray, at: np.ndarray | int, size: int, dtype: str,
            width: int) -> np.ndarray:
    """``width`` values of ``dtype`` (``size`` bytes in all) at ``starts + at`` of each vertex."""
    idx = (starts + at)[:, None] + np.arange(size)
    return np.ascontiguousarray(raw[idx]).view(dtype).reshape(len(starts), width)


def _read_section(cur: _Cursor, raw: np.ndarray, model: SpmModel, skinned: bool) -> SpmSection:
    num_vertices, num_indices, material = cur.unpack("IIH")
    if material >= len(model.materials):
        raise ValueError(f"section names material {material} of {len(model.materials)}")
    first, second = model.materials[material]
    has_uv, has_uv2 = bool(first), bool(first) and bool(second)
    normal = 4 if model.has_normals else 0
    # bytes after the colour: UVs (+ second UVs, + tangent) when textured, then skinning
    after = (4 if has_uv else 0) + (4 if has_uv2 else 0) + (4 if has_uv and model.has_tangents else 0) \
        + (16 if skinned else 0)
    colour_at = 12 + normal if model.has_colors else None
    starts = _vertex_starts(cur, num_vertices, 12 + normal + after, colour_at)
    section = SpmSection(material, _gather(raw, starts, 0, 12, "<f4", 3), np.zeros(0, np.int64))
    after_colour: np.ndarray | int = 12 + normal
    if colour_at is not None and num_vertices:
        marker = raw[starts + colour_at]
        white = marker == 128
        rgb = _gather(raw, starts, colour_at + 1, 3, "u1", 3).copy() if not white.all() else \
            np.zeros((num_vertices, 3), np.uint8)
        rgb[white] = 255
        section.colors = rgb
        after_colour = colour_at + np.where(white, 1, 4)
    at = after_colour
    if has_uv:
        section.uv = _gather(raw, starts, at, 4, "<f2", 2).astype(np.float32)
        at = at + 4
        if has_uv2:
            section.uv2 = _gather(raw, starts, at, 4, "<f2", 2).astype(np.float32)
            at = at + 4
        if model.has_tangents:
            at = at + 4
    if skinned:
        section.joints = _gather(raw, starts, at, 8, "<i2", 4)
        section.weights = _gather(raw, starts, at + 8, 8, "<f2", 4).astype(np.float32)
    index_type = "<u1" if num_vertices <= 255 else "<u2" if num_vertices <= 65535 else "<u4"
    size = np.dtype(index_type).itemsize
    section.indices = np.frombuffer(cur.take(num_indices * size), index_type).astype(np.int64)
    if num_indices % 3:
        raise ValueError(f"index count {num_indices} is not a multiple of 3")
    if num_indices and int(section.indices.max()) >= num_vertices:
        raise ValueError(f"index {int(section.indices.max())} out of range ({num_vertices} vertices)")
    return section


def _read_armature(cur: _Cursor) -> SpmArmature:
    joints_used, joint_count = cur.unpack("HH")
    names = [cur.string() for _ in range(joint_count)]
    cur.take(joint_count * _JOINT_RECORD)  # the joints' inverse bind transforms
    parents = list(cur.unpack(f"{joint_count}h"))
    if joint_count and -1 not in parents:
        raise ValueError("armature without a root joint")
    if any(p < -1 or p >= joint_count for p in parents):
        raise ValueError("armature joint parent out of range")
    (frame_count,) = cur.unpack("H")
    frames = []
    for _ in range(frame_count):
        frames.append(cur.unpack("H")[0])
        cur.take(joint_count * _JOINT_RECORD)
    return SpmArmature(joints_used, names, parents, frames)


def parse_spm(data: bytes) -> SpmModel:
    """Everything an SPM file holds that a static reader needs. Raises ValueError for anything else: another
    magic or version, the space-partitioned kind, a read past the end, or bytes left over after the last
    record (the whole file must be accounted for)."""
    data = bytes(data)
    if data[:2] != b"SP" or len(data) < 4:
        raise ValueError("not an SPM file (no 'SP' magic)")
    version, kind = data[2] >> 3, data[2] & 0x07
    if version != SPM_VERSION:
        raise ValueError(f"SPM version {version} (only {SPM_VERSION} is read)")
    if kind not in (1, 2):
        raise ValueError(f"SPM kind {KIND_NAMES.get(kind, kind)} is not read (only SPMA and SPMN)")
    flags = data[3]
    if flags & ~0x07:
        raise ValueError(f"unknown SPM vertex flags 0x{flags:02x}")
    cur = _Cursor(data)
    cur.offset = 4
    bbox = np.array(cur.unpack("6f"), np.float32).reshape(2, 3)
    model = SpmModel(KIND_NAMES[kind], bool(flags & 1), bool(flags & 2), bool(flags & 4), bbox, [])
    (num_materials,) = cur.unpack("H")
    model.materials = [(cur.string(), cur.string()) for _ in range(num_materials)]
    raw = np.frombuffer(data, np.uint8)
    (num_sectors,) = cur.unpack("H")
    skinned = kind == 1
    for _ in range(num_sectors):
        (num_sections,) = cur.unpack("H")
        model.sections += [_read_section(cur, raw, model, skinned) for _ in range(num_sections)]
    if skinned:
        num_armatures, model.bind_frame = cur.unpack("BH")
        model.armatures = [_read_armature(cur) for _ in range(num_armatures)]
    if cur.offset != len(data):
        raise ValueError(f"SPM file parsed to byte {cur.offset} of {len(data)}")
    return model


def read_spm(path: Path | str | bytes, right_handed: bool = True) -> list[tuple[trimesh.Trimesh, str]]:
    """(mesh, colour texture file name or "") per non-empty section of an SPM file, in the file's +Y-up axes
    (X negated when ``right_handed``, see the module notes). Textured sections carry their UVs (v flipped to
    the OpenGL convention) and a ``SimpleMaterial`` named after the texture; untextured sections with stored
    vertex colours carry those. ``mesh.metadata`` has ``spm_second_texture`` and ``spm_kind``."""
    data = path if isinstance(path, (bytes, bytearray)) else Path(path).read_bytes()
    model = parse_spm(data)
    meshes = []
    for section in model.sections:
        if len(section.indices) == 0:
            continue
        vertices = section.positions.astype(np.float64)
        faces = section.indices.reshape(-1, 3)
        if right_handed:  # a mirror turns the winding over: swap two corners to keep faces outward
            vertices[:, 0] *= -1.0
            faces = faces[:, ::-1]
        mesh = trimesh.Trimesh(vertices, np.ascontiguousarray(faces), process=False)
        texture, second = model.materials[section.material]
        if section.uv is not None:
            uv = section.uv.astype(np.float64)
            uv[:, 1] = 1.0 - uv[:, 1]
            material = trimesh.visual.material.SimpleMaterial(name=texture)
            mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
        elif section.colors is not None:
            colours = np.concatenate([section.colors, np.full((len(vertices), 1), 255, np.uint8)], axis=1)
            mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=colours)
        mesh.metadata.update(name=texture, spm_second_texture=second, spm_kind=model.kind)
        meshes.append((mesh, texture))
    if not meshes:
        raise ValueError("SPM file has no triangles")
    return meshes
