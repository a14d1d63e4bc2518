"""A corpus of real, third-party 3D objects from installable packages (Debian game/asset data, folders).

Why: a model only learns what it sees. These packages ship thousands of objects made by other people,
with textures and licences stated, and they install with the ordinary clients (nothing is fetched at run
time). Each object is normalised like the reference (bounding box centred at the origin, largest side 1),
its texture downsized to <= 512 px, and written as ``OUT/objects/<package>/<id>.glb``.

GLB convention: the stored mesh is **+Y up** (the glTF convention), so
:func:`zero1to3.data.render.load_mesh` (which turns .glb from +Y up into the renderer's +Z up, as
Blender's importer does) shows it upright. Sources are read in their own up-axis (see :data:`SOURCES`).

The manifest (``OUT/manifest.json``) records per object the source package and version, path inside it,
licence as stated in ``/usr/share/doc/PKG/copyright``, triangle/vertex counts, textured or not, sha256 of
the GLB, a category where the source's folders give one, a near-duplicate group and the split. Splits are
by whole source package, so held-out numbers measure generalisation to other makers' objects; a
near-duplicate group never straddles splits (held-out copies of a training object are excluded).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import trimesh
from trimesh.transformations import euler_matrix

from zero1to3.data.formats import read_dcm, read_g3d, read_md2, read_pie, read_pmd, read_solid, read_vrml
from zero1to3.data.procedural import normalize_mesh
from zero1to3.data.sources import (DEFAULT_EXCLUDE, DEFAULT_SPLITS, LUGARU_SKINS, NPM_PREFIX_ENV,  # noqa: F401
                                   RESERVED_SOURCES, SOURCES, ReservedSourceError, Source, _OC_SKIP_MATERIALS,
                                   check_not_reserved, install_command, located, npm_prefix, package_licence,
                                   package_root, package_version, registry_licence)

logger = logging.getLogger(__name__)

__all__ = ["RESERVED_SOURCES", "Source", "SOURCES", "DEFAULT_SPLITS", "ObjectRecord", "ReservedSourceError",
           "check_not_reserved", "build_corpus", "convert_object", "near_duplicate_groups", "assign_splits",
           "load_manifest", "split_files", "limit_group_members", "MAX_TEXTURE_SIZE", "MESH_FILE_EXTENSIONS",
           "read_minetest_obj", "lua_mesh_tiles", "minetest_mesh_tiles", "ogre_material", "install_command",
           "package_root", "located", "npm_prefix", "registry_licence", "NPM_PREFIX_ENV"]

MAX_TEXTURE_SIZE = 512
#: Objects below/above these sizes are dropped (near-empty / too heavy for dataset rendering).
MIN_FACES, MAX_FACES = 12, 200_000
#: Formats trimesh reads itself; the rest go through Debian's ``assimp`` command-line tool.
TRIMESH_FORMATS = (".obj", ".dae", ".glb", ".gltf", ".ply", ".stl", ".off")
ASSIMP_FORMATS = (".md2", ".md3", ".md5mesh", ".iqm", ".ase", ".ac", ".acc", ".b3d", ".3ds", ".x", ".ms3d",
                  ".lwo", ".fbx", ".blend")
#: What a folder source (your own meshes) reads.
MESH_FILE_EXTENSIONS = TRIMESH_FORMATS + ASSIMP_FORMATS
#: OpenClonk's packed groups (definitions, scenario folders, other groups), unpacked into ``OUT/.extract``
C4GROUP_SUFFIXES = (".ocd", ".ocf", ".ocg", ".ocs")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tga", ".bmp", ".dds", ".rgb", ".sgi")
_NON_ALBEDO = re.compile(r"(normal|_n$|_nm$|bump|mask|spec|_s$|gloss|glow|_g$|emissive|height|rough|metal|"
                         r"_ao$|ambient|lightmap|shadow|_local$|_norm$)", re.I)


def _spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (all of them when there are no more than ``count``)."""
    if count <= 0 or len(items) <= count:
        return list(items)
    return [items[int((i + 0.5) * len(items) / count)] for i in range(count)]


@dataclass
class ObjectRecord:
    """One manifest row."""

    id: str
    package: str
    version: str
    source_path: str
    licence: str
    file: str
    faces: int
    vertices: int
    textured: bool
    vertex_colours: bool
    sha256: str
    geometry_hash: str
    category: str
    main_part_span: float = 1.0
    group: str = ""
    split: str = ""
    note: str = ""


# --------------------------------------------------------------------------------------------- discovery
def _iter_files(source: Source, extract_dir: Path) -> Iterator[tuple[str, Path, Path]]:
    """(path relative to its root, local file, root) for every candidate mesh; archives are extracted."""
    exclude = re.compile(source.exclude, re.I) if source.exclude else None
    keep = re.compile(source.path_filter, re.I) if source.path_filter else None
    if source.reader == "0ad-actors":
        yield from _iter_0ad_actors(source, exclude)
        return
    if source.reader == "stk-nodes":
        yield from _iter_stk(source, exclude, keep)
        return
    if source.reader == "blend-nodes":
        yield from _iter_blend_nodes(source, exclude, keep, extract_dir)
        return
    taken = _model_file_names(source.names_taken_by, source.extensions)
    for root_name in source.roots:
        root = Path(root_name)
        if root.is_file() and root.suffix.lower() in (".zip", ".pk3", ".wz"):
            target = extract_dir / source.name / root.stem
            if not (target / ".done").is_file():
                with zipfile.ZipFile(root) as archive:
                    members = [m for m in archive.namelist()
                               if Path(m).suffix.lower() in source.extensions + IMAGE_EXTENSIONS + (".mtl",)]
                    archive.extractall(target, members)
                (target / ".done").write_text("ok")
            root = target
        elif root.is_file() and root.suffix.lower() in C4GROUP_SUFFIXES:
            target = extract_dir / source.name / root.name
            if not (target / ".done").is_file():
                from zero1to3.data.c4group import extract_group

                extract_group(root, target, keep=source.extensions + IMAGE_EXTENSIONS + (".material",))
                (target / ".done").write_text("ok")
            root = target
        if not root.is_dir():
            continue
        found: list[tuple[str, Path]] = []
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in source.extensions or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if (exclude and exclude.search(rel)) or (keep and not keep.search(rel)):
                continue
            if path.name.lower() in taken:
                continue
            if source.unique_file_names:
                taken.add(path.name.lower())
            found.append((rel, path))
        if source.max_per_folder > 0:
            by_folder: dict[str, list[tuple[str, Path]]] = {}
            for rel, path in found:
                by_folder.setdefault(rel.rpartition("/")[0], []).append((rel, path))
            chosen = {rel for items in by_folder.values() for rel, _ in _spread(items, source.max_per_folder)}
            found = [(rel, path) for rel, path in found if rel in chosen]
        for rel, path in found:
            yield rel, path, root


def _texture_path_roots(source: Source, extract_dir: Path) -> list[Path]:
    """``source.texture_path_roots`` as local folders: an archive becomes its extracted copy (as
    :func:`_iter_files` writes it; an archive that is also a root is extracted there, images included)."""
    roots = []
    for name in source.texture_path_roots:
        root = Path(name)
        roots.append(extract_dir / source.name / root.stem if root.suffix.lower() in (".zip", ".pk3", ".wz")
                     else root)
    return roots


def _model_file_names(folders: Iterable[str], extensions: tuple[str, ...]) -> set[str]:
    """Lower-case names of the model files (``extensions``) anywhere under ``folders``."""
    names: set[str] = set()
    for folder in folders:
        if Path(folder).is_dir():
            names.update(p.name.lower() for p in Path(folder).rglob("*") if p.suffix.lower() in extensions)
    return names


# --------------------------------------------------------------------------------------------- .blend scenes
def blend_top_nodes(scene: trimesh.Scene) -> dict[str, list[str]]:
    """Geometry nodes of a scene grouped by their top-level object (a child of the scene's single root
    node, as assimp writes a .blend: ``<BlenderRoot>`` holds one node per Blender object; else a root
    itself), in first-seen order. Why: one .blend holds a whole prop collection (MORSE's furniture file
    holds 50 pieces), and each top-level object is one prop with its child parts."""
    graph = scene.graph
    parents = graph.transforms.parents
    roots = [n for n in graph.transforms.children.get(graph.base_frame, [])]
    top_level = set(graph.transforms.children.get(roots[0], [])) if len(roots) == 1 else set(roots)
    groups: dict[str, list[str]] = {}
    for node in graph.nodes_geometry:
        top = node
        while top not in top_level and top in parents and parents[top] != graph.base_frame:
            top = parents[top]
        if top in top_level:
            groups.setdefault(top, []).append(node)
    return groups


def blend_node_parts(scene: trimesh.Scene, top: str) -> list[trimesh.Trimesh]:
    """The meshes under one top-level object, each in scene (world) coordinates, so the object keeps the
    rotation its file gives it (upright)."""
    nodes = blend_top_nodes(scene).get(top)
    if not nodes:
        raise ValueError(f"no object {top!r} with a mesh in the scene")
    parts = []
    for node in nodes:
        transform, geometry = scene.graph[node]
        mesh = scene.geometry.get(geometry)
        if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces):
            mesh = mesh.copy()
            mesh.apply_transform(transform)
            mesh.metadata["name"] = str(geometry)
            mesh.metadata["node"] = str(node)
            parts.append(mesh)
    return parts


def _blend_glb(blend: Path, target: Path) -> Path | None:
    """``blend`` converted once by assimp into ``target`` (a GLB with plain materials; the material ->
    texture names beside it as JSON); None when assimp cannot read it."""
    names_file = target.with_suffix(".textures.json")
    if target.is_file() and names_file.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="z123blend_") as tmp:
        try:
            converted = _assimp_to_glb(blend, Path(tmp))
        except (ValueError, subprocess.TimeoutExpired) as exc:
            logger.warning("%s: %s", blend, exc)
            return None
        names = _simplify_glb(converted)
        shutil.move(str(converted), target)
    names_file.write_text(json.dumps({material or str(i): uri for i, (material, uri) in enumerate(names) if uri}))
    return target


def _iter_blend_nodes(source: Source, exclude, keep, extract_dir: Path) -> Iterator[tuple[str, Path, Path]]:
    """One object per top-level object of every .blend file (converted once into ``extract_dir``); the
    relative path is ``<file>.blend/<object>`` so ``exclude`` can name objects, and the local path
    ``<converted>.glb/<object>`` tells :func:`convert_object` which one to take."""
    for root_name in source.roots:
        root = Path(root_name)
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.blend")):
            rel = path.relative_to(root).as_posix()
            if (exclude and exclude.search(rel)) or (keep and not keep.search(rel)):
                continue
            glb = _blend_glb(path, extract_dir / source.name / (rel + ".glb"))
            if glb is None:
                continue
            for top in blend_top_nodes(trimesh.load(str(glb), force="scene", process=False)):
                obj_rel = f"{rel}/{top}"
                if "/" in top or (exclude and exclude.search(obj_rel)):
                    continue
                yield obj_rel, Path(f"{glb}/{top}"), root


def _load_blend_parts(path: Path, textures: dict[str, str]) -> list[trimesh.Trimesh]:
    glb, _, top = str(path).partition(".glb/")
    names_file = Path(glb + ".textures.json")
    if names_file.is_file():
        textures.update(json.loads(names_file.read_text()))
    return blend_node_parts(trimesh.load(glb + ".glb", force="scene", process=False), top)


# --------------------------------------------------------------------------------------------- SuperTuxKart
#: library node folders that are not props: visual effects (``gfx_*``: flames, sparks, light flashes, screens)
#: and a landscape strip seen from a train (``meta_railLandscape_a``)
_STK_SKIP_NODES = re.compile(r"^(gfx_|meta_railLandscape)", re.I)
#: standalone item files that are not objects of their own: the low-detail copies (``*-low.spm``), the
#: swatter's animation-only copy and the translucent bubble-gum shields
_STK_SKIP_MODELS = re.compile(r"(-low\.spm$|^swatter_anim\.spm$|^bubblegum_shield)", re.I)


def _stk_vector(text: str | None, default: float) -> np.ndarray:
    values = [float(v) for v in (text or "").replace(",", " ").split()]
    return np.array(values[:3] if len(values) >= 3 else [default] * 3, np.float64)


def stk_placement(xyz: str | None, hpr: str | None = None, scale: str | None = None) -> np.ndarray:
    """4x4 placement of a SuperTuxKart scene node in the files' own (left-handed) axes: scale, then the
    Irrlicht rotation (``hpr`` is Irrlicht's rotation vector in degrees, applied about X, then Y, then Z), then
    the translation ``xyz``, as Irrlicht's ``ISceneNode::getRelativeTransformation`` builds it."""
    matrix = euler_matrix(*np.radians(_stk_vector(hpr, 0.0)), axes="sxyz")  # Rz @ Ry @ Rx
    matrix[:3, :3] = matrix[:3, :3] @ np.diag(_stk_vector(scale, 1.0))
    matrix[:3, 3] = _stk_vector(xyz, 0.0)
    return matrix


def stk_node_models(folder: Path, depth: int = 0) -> list[tuple[Path, np.ndarray]]:
    """(``.spm`` file, placement in file axes) of every drawn model of a SuperTuxKart library node
    (``folder/node.xml``). Kept: ``<object>`` nodes with a model (an ``lod_instance`` takes its LOD group's most
    detailed model, the smallest ``lod_distance``), and nested ``<library>`` nodes (recursively, placed by their
    own transform). Left out: ``interaction="physicsonly"`` collision hulls, lights, particle emitters, cameras,
    LOD groups nothing instantiates, and files that are missing. Animated nodes are placed at their rest
    transform (``xyz``/``hpr``/``scale``; the curves are not played)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(folder / "node.xml").getroot()
    except (OSError, ET.ParseError):
        return []
    lod_models: dict[str, str] = {}
    for group in root.iter("group"):
        best: tuple[float, str] | None = None
        for entry in group.iter("static-object"):
            if entry.get("interaction") == "physicsonly" or not entry.get("model"):
                continue
            try:
                distance = float(entry.get("lod_distance", "inf"))
            except ValueError:
                distance = float("inf")
            if best is None or distance < best[0]:
                best = (distance, entry.get("model"))
        if best is not None:
            lod_models[group.get("name", "")] = best[1]
    out: list[tuple[Path, np.ndarray]] = []
    for node in root:
        placement = stk_placement(node.get("xyz"), node.get("hpr"), node.get("scale"))
        if node.tag == "library":
            if depth < 3 and node.get("name"):
                out += [(f, placement @ m) for f, m in stk_node_models(folder.parent / node.get("name"), depth + 1)]
            continue
        if node.tag != "object" or node.get("interaction") == "physicsonly":
            continue
        if node.get("lod_instance") == "true":
            model = lod_models.get(node.get("lod_group", ""), "")
        else:
            model = node.get("model", "")
        if model and (folder / model).is_file():
            out.append((folder / model, placement))
    return out


def stk_kart_models(kart_xml: Path) -> list[tuple[Path, np.ndarray]]:
    """(``.spm`` file, placement in file axes) of a SuperTuxKart kart: the body (``model-file``), the four
    wheels at their ``position`` and the speed-weighted objects placed relative to the kart (no bone, or the
    root bone). Left out: headlights (light cones), the hat slot, objects on other bones (their place
    depends on the skeleton's pose), nitro and exhaust emitters."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(kart_xml).getroot()
    except (OSError, ET.ParseError):
        return []
    folder = kart_xml.parent
    body = root.get("model-file", "")
    out = [(folder / body, np.eye(4))] if body and (folder / body).is_file() else []
    if not out:
        return []
    for wheels in root.iter("wheels"):
        for wheel in wheels:
            model = wheel.get("model", "")
            if model and (folder / model).is_file():
                out.append((folder / model, stk_placement(wheel.get("position"))))
    for group in root.iter("speed-weighted-objects"):
        for node in group.iter("object"):
            model = node.get("model", "")
            if model and node.get("bone") in (None, "", "root") and (folder / model).is_file():
                out.append((folder / model, stk_placement(node.get("position"), node.get("rotation"),
                                                          node.get("scale"))))
    return out


def _iter_stk(source: Source, exclude, keep) -> Iterator[tuple[str, Path, Path]]:
    """SuperTuxKart's standalone objects: one per ``library/<node>/node.xml`` (effects and the rail landscape
    left out), per ``karts/<kart>/kart.xml`` and per ``models/*.spm`` item (LOD copies, the swatter's
    animation copy and the bubble-gum shields left out); ``tracks/`` is scenery and never read."""
    for root_name in source.roots:
        root = Path(root_name)
        if not root.is_dir():
            continue
        candidates = [p for p in sorted((root / "library").glob("*/node.xml"))
                      if not _STK_SKIP_NODES.search(p.parent.name)]
        candidates += sorted((root / "karts").glob("*/kart.xml"))
        candidates += [p for p in sorted((root / "models").glob("*.spm")) if not _STK_SKIP_MODELS.search(p.name)]
        for path in candidates:
            rel = path.relative_to(root).as_posix()
            if (exclude and exclude.search(rel)) or (keep and not keep.search(rel)):
                continue
            yield rel, path, root


_MIRROR_X = np.diag([-1.0, 1.0, 1.0, 1.0])


def _load_stk_parts(path: Path, textures: dict[str, str], folders: list[Path]) -> list[trimesh.Trimesh]:
    """The parts of one SuperTuxKart object (``node.xml``, ``kart.xml`` or a lone ``.spm``), each placed and
    turned into read_spm's right-handed +Y-up frame; ``textures`` gets each part's texture file name and
    ``folders`` the folders of the model files (a nested library node keeps its textures in its own)."""
    from zero1to3.data.spm import read_spm

    if path.name == "node.xml":
        models = stk_node_models(path.parent)
    elif path.name == "kart.xml":
        models = stk_kart_models(path)
    else:
        models = [(path, np.eye(4))]
    parts: list[trimesh.Trimesh] = []
    for file, placement in models:
        # the placement is in the files' left-handed axes; read_spm mirrors X, so mirror the placement too
        matrix = _MIRROR_X @ placement @ _MIRROR_X
        if file.parent not in folders:
            folders.append(file.parent)
        for mesh, texture in read_spm(file):
            if texture:
                textures[texture] = texture
            if not np.allclose(matrix, np.eye(4)):
                mesh.apply_transform(matrix)
            parts.append(mesh)
    if not parts:
        raise ValueError("no SPM models in it")
    return parts


# --------------------------------------------------------------------------------------------- OpenClonk (Ogre)
def _group_top(folder: Path) -> Path:
    """The outermost folder of an unpacked group holding ``folder`` (``.../Objects.ocd``)."""
    top = folder
    for parent in folder.parents:
        if parent.suffix.lower() not in C4GROUP_SUFFIXES:
            break
        top = parent
    return top if top.suffix.lower() in C4GROUP_SUFFIXES else folder


@functools.lru_cache(maxsize=8)
def _ogre_scripts(folder: str, recursive: bool) -> tuple[tuple[str, dict], ...]:
    """(folder, materials) of every ``.material`` script in ``folder`` (and below it when ``recursive``), in
    sorted path order."""
    from zero1to3.data.ogre import parse_material_script

    root = Path(folder)
    files = sorted(root.rglob("*.material") if recursive else root.glob("*.material"))
    return tuple((str(f.parent), parse_material_script(f.read_text(errors="replace"))) for f in files)


def ogre_material(name: str, folder: Path, group_root: Path | None = None) -> tuple[str, Path | None, tuple | None]:
    """(texture file name, folder of the script that names it, diffuse RGBA 0..1) of an Ogre material as
    OpenClonk finds it: the scripts of the mesh's own folder first, then of its enclosing groups (nearest
    first), then every script under ``group_root`` (OpenClonk loads all definitions' materials into one
    table); a material inherits what it does not set from its parent (``material A : B``)."""
    scopes = [folder, *[p for p in folder.parents if p.suffix.lower() in C4GROUP_SUFFIXES]]

    def lookup(key: str):
        for scope in scopes:
            for where, materials in _ogre_scripts(str(scope), False):
                if key in materials:
                    return materials[key], Path(where)
        if group_root is not None:
            for where, materials in _ogre_scripts(str(group_root), True):
                if key in materials:
                    return materials[key], Path(where)
        return None, None

    texture, texture_folder, diffuse, seen = "", None, None, set()
    while name and name not in seen:
        seen.add(name)
        material, where = lookup(name)
        if material is None:
            break
        if not texture and material.texture:
            texture, texture_folder = material.texture, where
        if diffuse is None and material.diffuse is not None:
            diffuse = material.diffuse
        if texture and diffuse is not None:
            break
        name = material.parent
    return texture, texture_folder, diffuse


def _load_ogre_parts(path: Path) -> list[trimesh.Trimesh]:
    """The submeshes of an Ogre ``.mesh`` (rest pose, +Y up), each textured with its material's colour texture
    (looked up by :func:`ogre_material`, opened here), else coloured with the material's diffuse colour (light
    grey when the material is not found); a one-colour texture times the diffuse colour is a plain colour too.
    Effect submeshes (``_OC_SKIP_MATERIALS``) are left out."""
    from zero1to3.data.ogre import read_mesh

    top = _group_top(path.parent)
    parts = []
    for mesh, material_name in read_mesh(path):
        if _OC_SKIP_MATERIALS.search(material_name):
            continue
        texture, where, diffuse = ogre_material(material_name, path.parent, top.parent)
        found = _find_image(texture, [where, path.parent]) if texture and where is not None else None
        image = _open_image(found, cutout=False) if found is not None else None
        colour = np.array([200.0, 200.0, 200.0]) if diffuse is None else np.asarray(diffuse[:3], np.float64) * 255
        if image is not None and np.ptp(np.asarray(image.convert("RGB"), np.int16), axis=(0, 1)).max() <= 8:
            # a one-colour placeholder texture (the hat's 16 x 16 white): Ogre modulates it with the diffuse
            colour = _mean_texture_colour(image)[:3] * colour / 255.0
            image = None
        if image is not None and isinstance(mesh.visual, trimesh.visual.TextureVisuals):
            part = _textured(mesh, mesh.visual.uv, image)
        else:
            rgba = np.append(np.clip(np.round(colour), 0, 255), 255).astype(np.uint8)
            part = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False, vertex_colors=rgba)
        part.metadata.update(mesh.metadata)
        parts.append(part)
    return parts


# --------------------------------------------------------------------------------------------- Minetest mods
#: ``mesh = "a.obj"``, or a concatenation of string literals and names (``"pump"..polys..".obj"``: names read as
#: empty strings, which gives the mod's default mesh where the name is a suffix such as ``polys = "_lowpoly"``)
_LUA_MESH = re.compile(r"""\bmesh\s*=\s*((?:(?:"[^"\n]*"|'[^'\n]*'|[A-Za-z_][A-Za-z0-9_.]*)\s*\.\.\s*)*"""
                       r"""(?:"[^"\n]*\.(?:obj|b3d|x)"|'[^'\n]*\.(?:obj|b3d|x)'))""")
_LUA_TILES = re.compile(r"\btiles\s*=\s*\{")
_LUA_STRING = re.compile(r"""^(["'])([^"'\n]*)\1$""")
_LUA_TEXTURE = re.compile(r"^\(*([A-Za-z0-9_.-]+\.(?:png|jpg|jpeg|tga))", re.I)


def _lua_strip_comments(text: str) -> str:
    """Lua source without ``--[[ ... ]]`` block comments and ``--`` line comments (outside string literals)."""
    out, i, n, quote = [], 0, len(text), ""
    while i < n:
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == quote or c == "\n":
                quote = ""
            i += 1
        elif c in "\"'":
            quote = c
            out.append(c)
            i += 1
        elif text.startswith("--", i):
            block = re.match(r"--\[(=*)\[", text[i:i + 16])
            if block:
                end = text.find("]" + block.group(1) + "]", i)
                i = n if end < 0 else end + len(block.group(1)) + 2
            else:
                end = text.find("\n", i)
                i = n if end < 0 else end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _lua_code(text: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(index, character) of ``text`` from ``start`` outside string literals (quotes and escapes skipped; a
    string ends at its closing quote or the line's end): where braces and separators count."""
    i, quote = start, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote or c == "\n":
                quote = ""
        elif c in "\"'":
            quote = c
        else:
            yield i, c
        i += 1


def _lua_matching_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start`` (string literals skipped); -1 if unbalanced."""
    depth = 0
    for i, c in _lua_code(text, start):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _lua_enclosing_brace(text: str, pos: int) -> int:
    """Index of the ``{`` of the innermost table constructor around ``pos`` (-1 if none); braces in strings are
    rare enough in node definitions to be ignored here."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        if text[i] == "}":
            depth += 1
        elif text[i] == "{":
            if depth == 0:
                return i
            depth -= 1
    return -1


def _lua_items(body: str) -> list[str]:
    """The top-level comma/semicolon-separated items of a table constructor's body."""
    cuts, depth = [-1], 0
    for i, c in _lua_code(body):
        if c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
        elif c in ",;" and depth == 0:
            cuts.append(i)
    cuts.append(len(body))
    return [item for item in (body[a + 1:b].strip() for a, b in zip(cuts, cuts[1:])) if item]


def _lua_tile_texture(item: str) -> str | None:
    """The base texture file of one ``tiles`` entry: ``"a.png"``, ``"a.png^[colorize:..."`` or
    ``{name = "a.png", ...}`` give ``a.png``; generated textures (``[combine`` ...), variables and string
    concatenations give None."""
    item = item.strip()
    if item.startswith("{"):
        named = re.search(r"""\bname\s*=\s*(["'][^"'\n]*["'])\s*(?:[,;}]|$)""", item)
        inner = _lua_items(item[1:-1]) if item.endswith("}") else []
        item = named.group(1) if named else (inner[0] if inner and "=" not in inner[0] else "")
    literal = _LUA_STRING.match(item.strip())
    if not literal:
        return None
    found = _LUA_TEXTURE.match(literal.group(2).strip())
    return found.group(1) if found else None


def lua_mesh_tiles(text: str) -> dict[str, list[str | None]]:
    """Mesh file name -> texture file per material of the first table constructor in this Lua source that sets
    ``mesh = "<file>"`` (a string literal) and ``tiles = {...}``: ``tiles[i]`` textures the i-th material group
    of the model (Minetest's rule); None where an entry is not a plain texture name."""
    text = _lua_strip_comments(text)
    out: dict[str, list[str | None]] = {}
    for found in _LUA_MESH.finditer(text):
        name = "".join(re.findall(r"""["']([^"'\n]*)["']""", found.group(1)))
        if name in out:
            continue
        start = _lua_enclosing_brace(text, found.start())
        end = _lua_matching_brace(text, start) if start >= 0 else -1
        if end < 0:
            continue
        table = text[start:end + 1]
        for tiles in _LUA_TILES.finditer(table):
            if table[:tiles.start()].count("{") - table[:tiles.start()].count("}") != 1:
                continue  # a tiles field of a nested table, not of this definition
            close = _lua_matching_brace(table, tiles.end() - 1)
            if close < 0:
                break
            textures = [_lua_tile_texture(item) for item in _lua_items(table[tiles.end():close])]
            if any(textures):
                out[name] = textures
            break
    return out


def minetest_mesh_tiles(roots: Sequence[str]) -> dict[str, list[str | None]]:
    """Mesh file name -> tile textures from every ``.lua`` file under ``roots`` (sorted paths; the first
    definition that names a mesh with a usable ``tiles`` table wins). Cached per process."""
    return _mesh_tiles_under(tuple(str(r) for r in roots))


@functools.lru_cache(maxsize=None)
def _mesh_tiles_under(roots: tuple[str, ...]) -> dict[str, list[str | None]]:
    table: dict[str, list[str | None]] = {}
    for root in roots:
        for lua in sorted(Path(root).rglob("*.lua")) if Path(root).is_dir() else []:
            for name, tiles in lua_mesh_tiles(lua.read_text(errors="replace")).items():
                table.setdefault(name, tiles)
    return table


@functools.lru_cache(maxsize=None)
def _minetest_texture_dirs(roots: tuple[str, ...]) -> list[Path]:
    """Every ``textures`` folder under ``roots`` (in root order, then sorted), where tile textures are found.
    Cached per process."""
    dirs: list[Path] = []
    for root in roots:
        if Path(root).is_dir():
            dirs += [d for d in sorted(Path(root).rglob("textures")) if d.is_dir() and d not in dirs]
    return dirs


def read_minetest_obj(path: Path) -> list[trimesh.Trimesh]:
    """A Minetest mod's OBJ as one mesh per material group, in the order Minetest (Irrlicht's OBJ loader) makes
    its mesh buffers, which ``tiles[i]`` texture: one buffer per (``usemtl``, ``g``) pair in order of first use,
    faces before any ``g``/``usemtl`` in the first; empty ones skipped. Polygons are fanned into triangles;
    UVs are kept as written (OBJ convention). Part ``metadata["name"]`` is ``"tile<i>"``."""
    positions: list[list[float]] = []
    uvs: list[list[float]] = []
    groups: dict[tuple[str, str], list[list[tuple[int, int]]]] = {("", ""): []}
    material, group = "", ""
    for line in Path(path).read_text(errors="replace").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "v" and len(words) >= 4:
            positions.append([float(w) for w in words[1:4]])
        elif words[0] == "vt" and len(words) >= 3:
            uvs.append([float(w) for w in words[1:3]])
        elif words[0] == "usemtl":
            material = " ".join(words[1:])
        elif words[0] == "g":
            group = " ".join(words[1:])
        elif words[0] == "f" and len(words) >= 4:
            corners = []
            for word in words[1:]:
                refs = word.split("/")
                v = int(refs[0])
                t = int(refs[1]) if len(refs) > 1 and refs[1] else 0
                corners.append((v - 1 if v > 0 else len(positions) + v,
                                (t - 1 if t > 0 else len(uvs) + t) if t else -1))
            groups.setdefault((material, group), []).append(corners)
    if not positions:
        raise ValueError("no vertices")
    points = np.asarray(positions, np.float64)
    coords = np.asarray(uvs, np.float64) if uvs else np.zeros((0, 2))
    parts: list[trimesh.Trimesh] = []
    for polygons in groups.values():
        if not polygons:
            continue
        index: dict[tuple[int, int], int] = {}
        faces = []
        for corners in polygons:
            ids = [index.setdefault(c, len(index)) for c in corners]
            faces += [[ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1)]
        keys = list(index)
        vertices = points[[v for v, _ in keys]]
        uv = np.array([coords[t] if 0 <= t < len(coords) else (0.0, 0.0) for _, t in keys], np.float64)
        mesh = trimesh.Trimesh(vertices, np.asarray(faces, np.int64).reshape(-1, 3), process=False)
        mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.SimpleMaterial(
            name=f"tile{len(parts)}"))
        mesh.metadata["name"] = f"tile{len(parts)}"
        parts.append(mesh)
    return parts


def _load_minetest_parts(path: Path, textures: dict[str, str], lua_roots: Sequence[str]) -> list[trimesh.Trimesh]:
    """The parts of one Minetest mod model with ``textures`` mapping each part's material to the tile texture
    the mod's Lua definition gives it (the last tile repeats for further groups, as in Minetest). OBJ through
    :func:`read_minetest_obj`; B3D through assimp, its parts keeping a texture the file itself names and
    otherwise taking the tiles in order."""
    tiles = minetest_mesh_tiles(lua_roots).get(path.name, [])
    if path.suffix.lower() == ".obj":
        parts = read_minetest_obj(path)
    else:
        parts = _load_file_parts(path, textures)
        if textures:
            return parts
        for i, part in enumerate(parts):
            material = getattr(part.visual, "material", None)
            if material is not None and not getattr(material, "name", ""):
                material.name = f"tile{i}"
    for i, part in enumerate(parts):
        material = str(getattr(getattr(part.visual, "material", None), "name", "") or "")
        texture = tiles[min(i, len(tiles) - 1)] if tiles else None
        if texture and material:
            textures[material] = texture
    return parts


# --------------------------------------------------------------------------------------------- 0 A.D.
_ZIPS: dict[str, zipfile.ZipFile] = {}


def _zip(path: str) -> zipfile.ZipFile:
    if path not in _ZIPS:
        _ZIPS[path] = zipfile.ZipFile(path)
    return _ZIPS[path]


def _actor_parts(archive: zipfile.ZipFile, name: str, depth: int = 0) -> list[tuple[str, str, bool]]:
    """(mesh, colour texture, alpha is cut-out) triples of a 0 A.D. actor: its main mesh plus the props it attaches at the
    root (identity placement), recursively; decals, effects and garrison flags are left out."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(archive.read(name))
    except (KeyError, ET.ParseError):
        return []
    mesh = next((m.text.strip() for m in root.iter("mesh") if m.text and m.text.strip()), "")
    material = next((m.text.strip() for m in root.iter("material") if m.text), "")
    cutout = "trans" in material and "player" not in material  # else alpha is a player-colour mask
    texture = ""
    for t in root.iter("texture"):
        if t.get("name") in (None, "baseTex") and t.get("file"):
            texture = t.get("file")
            break
    parts = [(mesh, texture, cutout)] if mesh else []
    if depth < 2:
        groups = root.findall("group")
        variant = groups[0].find("variant") if groups else None
        for prop in (variant.iter("prop") if variant is not None else []):
            actor = prop.get("actor", "")
            if prop.get("attachpoint") == "root" and actor and not re.search(
                    r"decal|dust|smoke|fire|particle|garrison|destruct|flag|shadow|rubble|ao_", actor, re.I):
                parts += _actor_parts(archive, "art/actors/" + actor, depth + 1)
    return parts


def _iter_0ad_actors(source: Source, exclude) -> Iterator[tuple[str, Path, Path]]:
    """One object per actor whose main mesh is a static (non-skeletal) mesh; one actor per main mesh."""
    archive_path = source.roots[0]
    if not Path(archive_path).is_file():
        return
    archive = _zip(archive_path)
    names = set(archive.namelist())
    seen_meshes: set[str] = set()
    for name in sorted(n for n in names if n.startswith("art/actors/") and n.endswith(".xml")):
        rel = name[len("art/actors/"):]
        if exclude and exclude.search(rel):
            continue
        parts = _actor_parts(archive, name)
        if not parts or parts[0][0].startswith("skeletal/") or parts[0][0] in seen_meshes:
            continue
        if f"art/meshes/{parts[0][0]}.cached.pmd" not in names:
            continue
        seen_meshes.add(parts[0][0])
        yield rel, Path(archive_path) / name, Path(archive_path)


def _texture_0ad(names: set[str], file: str) -> str | None:
    stem = "art/textures/skins/" + file.rsplit(".", 1)[0]
    for ext in (".dds", ".png", ".tga"):
        if stem + ext + ".cached.dds" in names:
            return stem + ext + ".cached.dds"
    return None


def _load_0ad_parts(archive_path: str, actor: str) -> list[trimesh.Trimesh]:
    from PIL import Image

    archive = _zip(archive_path)
    names = set(archive.namelist()) if not hasattr(archive, "_name_set") else archive._name_set
    archive._name_set = names  # type: ignore[attr-defined]
    parts = []
    for mesh_name, texture_file, cutout in _actor_parts(archive, actor):
        key = f"art/meshes/{mesh_name}.cached.pmd"
        if key not in names:
            continue
        mesh = read_pmd(archive.read(key))
        texture = _texture_0ad(names, texture_file) if texture_file else None
        if texture is not None:
            try:
                image = Image.open(io.BytesIO(archive.read(texture)))
                image.load()
                image = image.convert("RGBA")
                if not cutout:
                    image.putalpha(255)
                mesh = _textured(mesh, mesh.visual.uv, image)
            except Exception:  # undecodable texture: keep the geometry, grey
                pass
        parts.append(mesh)
    return parts


def _category(rel: str, levels: Sequence[int]) -> str:
    parts = rel.split("/")[:-1]
    return "/".join(parts[i] for i in levels if i < len(parts))


def object_id(package: str, rel: str, extensions: Sequence[str] | None = None) -> str:
    """A file-name-safe unique id: package short name + path without extension. With ``extensions``, only
    one of those is taken off the end: an object inside a file (``props/furnitures.blend/Chair.001``) keeps
    its whole name, so ``Chair`` and ``Chair.001`` stay two objects."""
    if extensions is None:
        base = rel.rsplit(".", 1)[0]
    else:
        base = next((rel[:-len(e)] for e in extensions if rel.lower().endswith(e.lower())), rel)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_")
    return f"{package.removesuffix('-data')}__{stem}"[:150]


# --------------------------------------------------------------------------------------------- loading
def _find_image(name: str, folders: Iterable[Path]) -> Path | None:
    """An image called ``name`` (any image extension, case-insensitive) in one of ``folders``."""
    stem = Path(name.replace("\\", "/")).stem.lower()
    if not stem:
        return None
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.stem.lower() == stem:
                return f
    return None


def _find_image_under(name: str, roots: Iterable[Path]) -> Path | None:
    """An image named by a path from a game's data root (``textures/pickups`` with any image extension) in
    the first of ``roots`` that has it; None for a bare name (no folder part) or when none has it."""
    parts = PurePosixPath(name.replace("\\", "/").lstrip("/")).parts
    while parts and parts[0] in ("..", "."):  # ``..\textures\x.tga``: the map compiler's relative path
        parts = parts[1:]
    rel = PurePosixPath(*parts) if parts else PurePosixPath()
    if len(rel.parts) < 2 or ".." in rel.parts:
        return None
    return _find_image(rel.name, [Path(root, *rel.parent.parts) for root in roots])


def _guess_albedo(mesh_path: Path) -> Path | None:
    """The colour texture of a model whose file does not name one: an image next to it named like the
    model, 'diffuse', 'skin' or 'texture', else the largest image that is not a normal/mask/specular map."""
    folder = mesh_path.parent
    if not folder.is_dir():
        return None
    images = [f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]
    albedo = [f for f in images if not _NON_ALBEDO.search(f.stem)]
    if not albedo:
        return None
    for preferred in (mesh_path.stem.lower(), "diffuse", "skin", "texture", "tex", "colour", "color"):
        for f in albedo:
            if f.stem.lower() == preferred:
                return f
    return max(albedo, key=lambda f: f.stat().st_size)


def _open_image(path: Path, cutout: bool = True):
    from PIL import Image

    image = Image.open(path)
    image.load()
    image = image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image
    return _alpha_as_cutout(image) if cutout else image


def _alpha_as_cutout(image):
    """Keep a texture's alpha only where it looks like cut-out coverage (>= 10% fully transparent texels,
    as in leaves and fences); game textures often use alpha for gloss or team-colour masks instead."""
    if image.mode != "RGBA":
        return image
    alpha = np.asarray(image.getchannel("A"))
    if np.mean(alpha < 16) >= 0.10:
        return image
    opaque = image.copy()
    opaque.putalpha(255)
    return opaque


def _mtl_textures(obj_path: Path) -> dict[str, str]:
    """material name -> texture name from the .mtl files an OBJ references (names as written)."""
    out: dict[str, str] = {}
    try:
        text = obj_path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("mtllib"):
            mtl = obj_path.parent / line.split(None, 1)[1].strip()
            if mtl.is_file():
                current = None
                for mline in mtl.read_text(errors="replace").splitlines():
                    words = mline.strip().split(None, 1)
                    if len(words) == 2 and words[0] == "newmtl":
                        current = words[1].strip()
                    elif len(words) == 2 and words[0].lower() == "map_kd" and current is not None:
                        out[current] = words[1].strip().split()[-1]
    return out


def _assimp_to_glb(path: Path, workdir: Path) -> Path:
    """Convert a game format to glTF binary with Debian's ``assimp`` tool (assimp-utils); textures stay
    external references, resolved next to the source file."""
    out = workdir / "converted.glb"
    if shutil.which("assimp") is None:
        raise RuntimeError("the assimp tool is missing (apt-get install -y assimp-utils)")
    done = subprocess.run(["assimp", "export", str(path), str(out), "-fglb2"], capture_output=True, text=True,
                          timeout=120, cwd=path.parent)
    if done.returncode != 0 or not out.is_file():
        message = (done.stdout + done.stderr).strip().splitlines()
        raise ValueError(f"assimp could not read it ({message[-1] if message else 'no output'})")
    return out


def _simplify_glb(path: Path) -> list[tuple[str, str]]:
    """Rewrite an assimp-written GLB in place with plain metallic-roughness materials, and return the
    (material name, image URI of its colour texture) of each material (material index order).

    assimp writes KHR_materials_pbrSpecularGlossiness, which trimesh converts per pixel (seconds per
    material); the diffuse texture is all the renderer uses, so it becomes the base colour texture.
    """
    data = path.read_bytes()
    if data[:4] != b"glTF":
        return []
    length = int.from_bytes(data[12:16], "little")
    # assimp copies names byte for byte (AC3D files hold Latin-1 names): decode leniently, rewrite as UTF-8
    doc = json.loads(data[20:20 + length].decode("utf-8", "replace"))
    images = [img.get("uri", "") for img in doc.get("images", [])]
    textures = [images[t["source"]] if t.get("source", len(images)) < len(images) else ""
                for t in doc.get("textures", [])]
    names = []
    for material in doc.get("materials", []):
        gloss = material.pop("extensions", {}).get("KHR_materials_pbrSpecularGlossiness", {})
        pbr = material.setdefault("pbrMetallicRoughness", {})
        if "baseColorTexture" not in pbr and "diffuseTexture" in gloss:
            pbr["baseColorTexture"] = gloss["diffuseTexture"]
        if "baseColorFactor" not in pbr and "diffuseFactor" in gloss:
            pbr["baseColorFactor"] = gloss["diffuseFactor"]
        index = pbr.get("baseColorTexture", {}).get("index")
        names.append((str(material.get("name", "")),
                      textures[index] if index is not None and index < len(textures) else ""))
    for key in ("extensionsUsed", "extensionsRequired"):
        doc.pop(key, None)
    chunk = json.dumps(doc).encode()
    chunk += b" " * (-len(chunk) % 4)
    rest = data[20 + length:]
    body = len(chunk).to_bytes(4, "little") + b"JSON" + chunk + rest
    path.write_bytes(data[:8] + (12 + len(body)).to_bytes(4, "little") + body)
    return names


def _dae_up_axis(path: Path) -> str:
    head = path.read_bytes()[:4000].decode("utf-8", "replace")
    match = re.search(r"<up_axis>\s*([XYZ])_UP\s*</up_axis>", head)
    return (match.group(1).lower() if match else "y")


def _parts(loaded) -> list[trimesh.Trimesh]:
    if isinstance(loaded, trimesh.Trimesh):
        return [loaded]
    if isinstance(loaded, trimesh.Scene):
        return [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    return []


def _image_of(mesh: trimesh.Trimesh):
    """The colour texture of a mesh (PIL) or None; trimesh's 2x2 placeholder (OBJ without .mtl) is None."""
    visual = mesh.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals) or visual.uv is None or len(visual.uv) == 0:
        return None
    material = visual.material
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if image is None or max(image.size) <= 2:
        return None
    return image


def _has_own_colour(mesh: trimesh.Trimesh) -> bool:
    """Whether a part carries colour of its own (a texture, or vertex / face colours), which a material colour
    given from outside (URDF) must not replace."""
    visual = mesh.visual
    return (isinstance(visual, trimesh.visual.TextureVisuals)
            or (isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind is not None))


def _has_image(mesh: trimesh.Trimesh) -> bool:
    return _image_of(mesh) is not None


def _textured(mesh: trimesh.Trimesh, uv: np.ndarray, image) -> trimesh.Trimesh:
    """A copy with one material holding ``image`` and no colour factor (glTF's default white: source colour
    factors are ignored when a texture is present, as Blender's OBJ importer does: they often darken the
    albedo). No explicit factor: trimesh's texture packing (parts with different images) multiplies the
    texels by the uint8 factor without scaling, so [255, 255, 255, 255] would turn every colour x into -x
    mod 256 (inverted colours). The texture's alpha is marked as blended so that the packing keeps it (it
    makes the alpha of unmarked materials opaque); the renderer draws texels with alpha >= 0.5."""
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image,
                                                   alphaMode="BLEND" if "A" in image.mode else None)
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=np.asarray(uv)[:, :2], material=material))


def _solid_texture(mesh: trimesh.Trimesh, colour: Sequence[float]) -> trimesh.Trimesh:
    """A copy whose visual is a 4x4 single-colour texture (so untextured parts can join textured ones)."""
    from PIL import Image

    rgba = np.clip(np.asarray(colour, np.float64)[:4], 0, 255).astype(np.uint8)
    rgba[3] = 255
    image = Image.fromarray(np.tile(rgba, (4, 4, 1)), "RGBA")
    return _textured(mesh, np.full((len(mesh.vertices), 2), 0.5), image)


def _part_colour(mesh: trimesh.Trimesh) -> np.ndarray:
    visual = mesh.visual
    try:
        if isinstance(visual, trimesh.visual.TextureVisuals):
            material = visual.material
            colour = getattr(material, "main_color", None)
            if colour is None:
                colour = getattr(material, "baseColorFactor", None)
            if colour is not None:
                c = np.asarray(colour, np.float64)
                return c * (255.0 if c.max() <= 1.0 else 1.0)
            return np.array([200, 200, 200, 255.0])
        return np.asarray(visual.vertex_colors, np.float64).mean(axis=0)
    except Exception:  # odd visuals: fall back to light grey
        return np.array([200, 200, 200, 255.0])


def _coloured(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Untextured part with per-vertex colours (its own, or its material colour)."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind == "vertex":
        colours = np.asarray(visual.vertex_colors, np.uint8)
    else:
        colours = np.tile(np.clip(_part_colour(mesh), 0, 255).astype(np.uint8), (len(mesh.vertices), 1))
    colours = colours.copy()
    colours[:, 3] = 255
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False, vertex_colors=colours)


def _mean_texture_colour(image) -> np.ndarray:
    """Mean RGBA of a texture, its colour weighted by alpha (transparent texels, black in many files, do not
    darken it: cut-out leaves on tiling UVs would otherwise turn black)."""
    rgba = np.asarray(image.convert("RGBA").resize((16, 16), 0), np.float64).reshape(-1, 4)
    weight = rgba[:, 3] + 1e-6
    return np.append((rgba[:, :3] * weight[:, None]).sum(axis=0) / weight.sum(), 255.0)


def _wrap_uv_per_face(mesh: trimesh.Trimesh) -> trimesh.Trimesh | None:
    """A copy of a part with tiling UVs whose every triangle lies within one repeat of the texture (leaf
    cards, planks): each triangle gets its own corners, shifted by whole repeats into [0, 1]. None when a
    triangle spans a repeat's edge (a wall tiled across one quad keeps its mean colour instead)."""
    uv = np.asarray(mesh.visual.uv, np.float64)[:, :2][mesh.faces]  # [faces, 3, 2]
    low = np.floor(uv.min(axis=1) + 1e-4)
    if np.any(uv.max(axis=1) - low > 1.0 + 1e-4):
        return None
    shifted = np.clip(uv - low[:, None, :], 0.0, 1.0).reshape(-1, 2)
    vertices = np.asarray(mesh.vertices)[mesh.faces].reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    return _textured(trimesh.Trimesh(vertices, faces, process=False), shifted, _image_of(mesh))


def _limit_texture(mesh: trimesh.Trimesh, max_size: int, keep_coverage: bool = False) -> None:
    """Shrink the mesh's texture to at most ``max_size`` px. ``keep_coverage`` (a packed atlas): a texel
    stays opaque where any texel it covers was, so small images and one-colour patches do not fade into
    the atlas's transparent padding (their colour is the average of the opaque texels, as PIL resizes
    premultiplied)."""
    from PIL import ImageFilter

    material = mesh.visual.material
    for attr in ("baseColorTexture", "image"):
        image = getattr(material, attr, None)
        if image is not None:
            if max(image.size) > max_size:
                scale = max_size / max(image.size)
                size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
                small = image.resize(size)
                if keep_coverage and image.mode == "RGBA":
                    reach = 2 * int(np.ceil(0.5 / scale)) + 1
                    alpha = image.getchannel("A").filter(ImageFilter.MaxFilter(reach)).resize(size, 0)
                    small.putalpha(alpha)
                image = small
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA")
            setattr(material, attr, image)


def _limit_part_textures(parts: list[trimesh.Trimesh], max_size: int) -> None:
    """Shrink the parts' textures before they are packed into one atlas, so that their total area is at most
    ``max_size``^2 (each image at most ``max_size`` px). Without it, an object with many textures packs into
    an atlas of several thousand pixels (often long and thin, e.g. 1024 x 4096) that the final ``max_size``
    limit shrinks 8x or more: small images and the 4 x 4 one-colour patches of tiling parts then blend into
    the atlas's transparent padding and those parts are not drawn. One image, or a total area within the
    budget, is limited as before."""
    images = {id(image): image for image in (_image_of(p) for p in parts) if image is not None}
    area = float(sum(image.size[0] * image.size[1] for image in images.values()))
    scale = min(1.0, max_size / np.sqrt(area)) if len(images) > 1 and area > 0 else 1.0
    for p in parts:
        image = _image_of(p)
        limit = max_size if image is None or scale >= 1.0 else max(4, int(max(image.size) * scale))
        _limit_texture(p, min(limit, max_size))


def convert_object(path: Path, up_axis: str = "z", name_filter: str = DEFAULT_EXCLUDE,
                   max_texture: int = MAX_TEXTURE_SIZE, reader: str = "files",
                   min_side_ratio: float = 0.0, keep_texture_alpha: bool = False,
                   texture_folders: Sequence[str] = (), lua_roots: Sequence[str] = (),
                   texture_roots: Sequence[str] = (),
                   texture_path_roots: Sequence[str | os.PathLike] = ()) -> trimesh.Trimesh:
    """Load one source model as a single normalised **+Z up** mesh (textures kept, <= ``max_texture`` px).

    Scene parts named like terrain/sky/particles/shadows are dropped; untextured parts of a textured model
    get a one-colour texture so the whole object keeps one material. Raises ValueError for unusable models
    (also for thin ones: second-largest side < ``min_side_ratio`` x the largest). ``keep_texture_alpha``:
    texture alpha is transparency as it is (else kept only where it looks like cut-out coverage).
    ``texture_folders``: glob patterns, relative to the folder above the model's, of more folders where the
    model's named textures are looked for (after the usual ones). ``lua_roots`` / ``texture_roots`` (reader
    ``minetest-mods``): where the mod's Lua node definitions, and the ``textures/`` folders, are searched.
    ``texture_path_roots``: folders against which a texture name holding a path is resolved first.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    folders = [path.parent, path.parent.parent, path.parent.parent / "texpages",
               path.parent.parent.parent / "base" / "texpages"]
    for pattern in texture_folders:
        folders += sorted(f for f in path.parent.parent.glob(pattern) if f.is_dir())
    textures: dict[str, str] = {}
    if reader == "0ad-actors":
        archive, actor = str(path).split(".zip/", 1)
        parts = _load_0ad_parts(archive + ".zip", actor)
        folders = []
    elif reader == "stk-nodes":
        folders = [path.parent]
        parts = _load_stk_parts(path, textures, folders)
        folders.append((path.parents[1] if suffix == ".spm" else path.parents[2]) / "textures")
    elif reader == "ogre":
        parts = _load_ogre_parts(path)
        folders = [path.parent]
    elif reader == "blend-nodes":
        parts = _load_blend_parts(path, textures)
        folders = [Path(f) for f in texture_roots]
    elif reader == "urdf":
        parts = _load_urdf_parts(path)
        folders = []
    elif reader == "minetest-mods":
        parts = _load_minetest_parts(path, textures, lua_roots)
        folders = list(_minetest_texture_dirs(tuple(str(r) for r in (*lua_roots, *texture_roots))))
    else:
        parts = _load_file_parts(path, textures)
    return _assemble(parts, path, textures, folders, up_axis, name_filter, max_texture,
                     reader_alpha_check=reader != "0ad-actors" and not keep_texture_alpha,
                     min_side_ratio=min_side_ratio, path_roots=[Path(r) for r in texture_path_roots])


#: a URDF robot over ``MAX_FACES`` triangles once assembled is brought to about this many by decimating its heavy
#: link meshes (Unitree's and Centauro's CAD exports hold 0.2-0.8 M triangles; a 64 px view needs far fewer)
URDF_FACE_BUDGET = 120_000
#: link meshes with at most this many triangles are never decimated (small parts would lose their shape)
URDF_DECIMATE_MIN = 2_000


def decimate_mesh(mesh: trimesh.Trimesh, face_count: int) -> trimesh.Trimesh:
    """``mesh`` simplified to about ``face_count`` triangles (quadric decimation, trimesh +
    ``fast_simplification``), its vertices welded first (STL links come as triangle soup, which cannot be
    decimated) and split again after (flat shading, as the undecimated STL links render). Its colour, if it has
    one of its own, becomes one colour (the part's mean or material colour); a colourless part stays colourless,
    so the URDF material colour still applies. Raises ImportError with one line when the package is absent."""
    try:
        import fast_simplification  # noqa: F401  (trimesh's decimation backend)
    except ImportError:
        raise ImportError("decimating heavy URDF link meshes needs fast_simplification: "
                          "pip install 'zero1to3[corpus]'") from None
    welded = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    welded.merge_vertices()
    simple = welded.simplify_quadric_decimation(face_count=int(face_count))
    out = trimesh.Trimesh(simple.vertices, simple.faces, process=False)
    out.unmerge_vertices()
    if _has_own_colour(mesh):
        colour = np.clip(_part_colour(mesh), 0, 255).astype(np.uint8)
        out.visual = trimesh.visual.ColorVisuals(out, vertex_colors=colour)
    out.metadata.update(mesh.metadata)
    return out


def _decimate_links(cache: dict[str, list[trimesh.Trimesh]], uses: dict[str, int], budget: int) -> None:
    """For a robot over ``MAX_FACES`` triangles: decimate, in place, the link meshes of ``cache`` (each used
    ``uses[key]`` times in the robot) with more than ``URDF_DECIMATE_MIN`` triangles and no texture image, all by
    one ratio, so that the robot holds about ``budget`` triangles (no part below ``URDF_DECIMATE_MIN``). A link
    used several times (four legs) is decimated once, so its copies stay alike. Lighter robots stay as they are."""
    total = sum(len(m.faces) * uses[key] for key, meshes in cache.items() for m in meshes)
    heavy = {(key, i): len(m.faces) * uses[key] for key, meshes in cache.items() for i, m in enumerate(meshes)
             if len(m.faces) > URDF_DECIMATE_MIN and not _has_image(m)}
    if total <= MAX_FACES or not heavy:
        return
    light = total - sum(heavy.values())
    ratio = max(budget - light, 0) / sum(heavy.values())
    for key, i in heavy:
        mesh = cache[key][i]
        target = max(URDF_DECIMATE_MIN, int(len(mesh.faces) * ratio))
        if target < len(mesh.faces):
            cache[key][i] = decimate_mesh(mesh, target)


def _load_urdf_parts(path: Path) -> list[trimesh.Trimesh]:
    """A URDF robot's link meshes (and box / cylinder / sphere visuals) placed at zero joint positions
    (:func:`zero1to3.data.urdf.read_urdf`). A part without colours of its own (STL, OBJ without a material)
    takes the URDF material colour, else light grey; textured and coloured meshes (COLLADA, OBJ + MTL) keep
    theirs, as robot viewers show them. Visuals under 2 mm (placeholder boxes of sensor frames) are skipped.
    A robot whose link meshes add up to more than ``MAX_FACES`` triangles has its heavy links decimated to
    about ``URDF_FACE_BUDGET`` in all (:func:`_decimate_links`); lighter robots are read as they are."""
    from zero1to3.data.urdf import read_urdf

    parts: list[trimesh.Trimesh] = []
    cache: dict[str, list[trimesh.Trimesh]] = {}
    visuals = read_urdf(path)
    uses: dict[str, int] = {}
    for visual in visuals:
        if visual.mesh is not None:
            key = str(visual.mesh)
            if key not in cache:
                if not visual.mesh.is_file():
                    raise ValueError(f"missing mesh file {visual.mesh.name}")
                resolver = trimesh.resolvers.FilePathResolver(str(visual.mesh))
                cache[key] = _parts(trimesh.load(str(visual.mesh), process=False, resolver=resolver))
            uses[key] = uses.get(key, 0) + 1
    _decimate_links(cache, uses, URDF_FACE_BUDGET)
    for visual in visuals:
        if visual.mesh is not None:
            loaded = [m.copy() for m in cache[str(visual.mesh)]]
            scale = np.diag([*visual.scale, 1.0])
        else:
            size = visual.size
            if not size or max(size) < 0.002:
                continue
            if visual.primitive == "box":
                loaded = [trimesh.creation.box(extents=size)]
            elif visual.primitive == "cylinder":
                loaded = [trimesh.creation.cylinder(radius=size[0], height=size[1], sections=24)]
            else:
                loaded = [trimesh.creation.icosphere(subdivisions=2, radius=size[0])]
            scale = np.eye(4)
        for mesh in loaded:
            if max(np.asarray(mesh.extents) * np.abs(visual.scale)) < 0.002:
                continue
            if not _has_own_colour(mesh):
                rgba = np.asarray(visual.rgba if visual.rgba is not None else (0.8, 0.8, 0.8, 1.0)) * 255
                mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.clip(rgba, 0, 255).astype(np.uint8))
            mesh.apply_transform(visual.transform @ scale)
            parts.append(mesh)
    return parts


def _load_file_parts(path: Path, textures: dict[str, str]) -> list[trimesh.Trimesh]:
    suffix = path.suffix.lower()
    with tempfile.TemporaryDirectory(prefix="z123corpus_") as tmp:
        if suffix == ".pie":
            mesh, texture = read_pie(path)
            if texture:
                textures[""] = texture
            return [mesh]
        if suffix == ".g3d":
            parts = read_g3d(path)
            textures.update({name: name for _, name in parts if name})
            return [mesh for mesh, _ in parts]
        if suffix == ".wrl":
            return _vrml_parts(path)
        if suffix == ".solid":
            textures[""] = LUGARU_SKINS.get(path.stem.lower(), path.stem)
            return [read_solid(path)]
        if suffix == ".dcm":  # the game textures a set's pieces with its white.png or black.png (set.cfg)
            textures[""] = "white"
            return [read_dcm(path)]
        if suffix == ".md2":
            mesh, skins = read_md2(path)
            for skin in skins:
                textures[""] = skin.replace("\\", "/").split("/")[-1].lstrip(".")
                break
            return [mesh]
        if suffix in TRIMESH_FORMATS:
            load_path = path
            textures.update(_mtl_textures(path) if suffix == ".obj" else {})
        else:
            load_path = _assimp_to_glb(path, Path(tmp))
            # keyed by material name where there is one, so each part finds its own texture when the loader
            # cannot open the URI itself (MD3 names the texture without its extension)
            textures.update({material or str(i): uri for i, (material, uri) in enumerate(_simplify_glb(load_path))
                             if uri})
        resolver = trimesh.resolvers.FilePathResolver(str(path))
        try:
            loaded = trimesh.load(str(load_path), process=False, resolver=resolver)
        except Exception as exc:
            raise ValueError(f"trimesh could not read it ({type(exc).__name__}: {str(exc)[:120]})") from exc
        return _parts(loaded)


def _vrml_parts(path: Path) -> list[trimesh.Trimesh]:
    """A VRML file's shapes as one vertex-coloured mesh per material colour (KiCad's files hold thousands of
    small shapes in a handful of colours)."""
    by_colour: dict[tuple, list[trimesh.Trimesh]] = {}
    for mesh, colour in read_vrml(path):
        by_colour.setdefault(tuple(np.round(colour * 255).astype(int).tolist()), []).append(mesh)
    parts = []
    for colour, meshes in by_colour.items():
        merged = trimesh.util.concatenate(meshes)
        parts.append(trimesh.Trimesh(merged.vertices, merged.faces, process=False,
                                     vertex_colors=np.array([*colour[:3], 255], np.uint8)))
    return parts


def _concatenate(parts: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """One mesh from parts; parts sharing one texture keep it as is (trimesh would atlas copies of it)."""
    images = {id(_image_of(p)) for p in parts}
    if len(images) == 1 and _has_image(parts[0]):
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        vertices = np.concatenate([p.vertices for p in parts])
        faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets)])
        uv = np.concatenate([np.asarray(p.visual.uv)[:, :2] for p in parts])
        return _textured(trimesh.Trimesh(vertices, faces, process=False), uv, _image_of(parts[0]))
    return trimesh.util.concatenate(parts)


def _assemble(parts: list[trimesh.Trimesh], path: Path, textures: dict[str, str], folders: list[Path],
              up_axis: str, name_filter: str, max_texture: int, reader_alpha_check: bool = True,
              min_side_ratio: float = 0.0, path_roots: Sequence[Path] = ()) -> trimesh.Trimesh:
    suffix = path.suffix.lower()
    exclude = re.compile(name_filter, re.I) if name_filter else None
    kept: list[trimesh.Trimesh] = []
    for part in parts:
        label = str(part.metadata.get("name", "") or "") + " " + str(part.metadata.get("node", "") or "")
        material_name = str(getattr(getattr(part.visual, "material", None), "name", "") or "")
        if exclude and exclude.search((label + " " + material_name).strip().lower()):
            continue
        if len(part.faces) == 0:
            continue
        kept.append(part)
    if not kept:
        raise ValueError("no usable mesh parts")
    # Textures the loader did not find (game formats name skins loosely): resolve by name, then guess.
    guessed: list = []
    cache: dict = {}
    for i, part in enumerate(kept):
        visual = part.visual
        has_uv = isinstance(visual, trimesh.visual.TextureVisuals) and visual.uv is not None and len(visual.uv)
        if not has_uv:
            continue
        image = _image_of(part)
        if image is None:
            material_name = str(getattr(visual.material, "name", "") or "")
            named = textures.get(material_name, "")
            found = _find_image_under(named, path_roots) if named else None
            found = found or (_find_image(named, folders) if named else None)
            if found is None and len(textures) == 1:
                found = _find_image(next(iter(textures.values())), folders)
            if found is None:
                if not guessed:
                    guessed.append(_guess_albedo(path))
                found = guessed[0]
            if found is not None:
                if str(found) not in cache:
                    cache[str(found)] = _open_image(found, cutout=reader_alpha_check)
                image = cache[str(found)]
        elif reader_alpha_check:
            if id(image) not in cache:
                cache[id(image)] = _alpha_as_cutout(image)
            image = cache[id(image)]
        if image is not None:
            kept[i] = _textured(part, visual.uv, image)
    images = {id(_image_of(p)) for p in kept if _has_image(p)}
    if images:
        single = len(images) == 1 and all(_has_image(p) for p in kept)
        fixed = []
        for p in kept:
            uv = np.asarray(p.visual.uv) if _has_image(p) else None
            if uv is not None and (single or (uv.min() > -0.01 and uv.max() < 1.01)):
                fixed.append(p)
            elif uv is not None and (wrapped := _wrap_uv_per_face(p)) is not None:
                fixed.append(wrapped)  # every triangle within one repeat of the texture: shifted into [0, 1]
            else:  # tiling UVs cannot share an atlas: the part keeps its mean texture colour
                fixed.append(_solid_texture(p, _mean_texture_colour(_image_of(p)) if uv is not None
                                            else _part_colour(p)))
        kept = fixed
        _limit_part_textures(kept, max_texture)
        packed = len({id(_image_of(p)) for p in kept}) > 1
    else:
        kept = [_coloured(p) for p in kept]
        packed = False
    mesh = kept[0] if len(kept) == 1 else _concatenate(kept)
    if _has_image(mesh):
        mesh = _textured(mesh, mesh.visual.uv, _image_of(mesh))
        _limit_texture(mesh, max_texture, keep_coverage=packed)
    if len(mesh.faces) < MIN_FACES:
        raise ValueError(f"near-empty ({len(mesh.faces)} triangles)")
    if len(mesh.faces) > MAX_FACES:
        raise ValueError(f"too heavy ({len(mesh.faces)} triangles)")
    vertices = np.asarray(mesh.vertices, np.float64)
    if not np.all(np.isfinite(vertices)):
        raise ValueError("non-finite vertices")
    if up_axis == "dae":
        up_axis = _dae_up_axis(path) if suffix == ".dae" else "y"
    if up_axis == "y":
        mesh.apply_transform(_Y_TO_Z)
    elif up_axis == "x":
        mesh.apply_transform(_X_TO_Z)
    elif up_axis == "-y":
        mesh.apply_transform(_NEG_Y_TO_Z)
    elif up_axis != "z":
        raise ValueError(f"unknown up axis {up_axis!r}")
    extents = np.sort(np.asarray(mesh.extents, np.float64))
    if extents[2] <= 0 or extents[1] / extents[2] < 0.02:
        raise ValueError("degenerate (a line or a point)")
    if extents[1] / extents[2] < min_side_ratio:
        raise ValueError(f"thin (second side {extents[1] / extents[2]:.3f} of the largest < {min_side_ratio})")
    if float(mesh.area) <= 1e-9 * extents[2] ** 2:
        raise ValueError("degenerate (no area)")
    return normalize_mesh(mesh)


_Y_TO_Z = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], np.float64)
_Z_TO_Y = np.linalg.inv(_Y_TO_Z)
_X_TO_Z = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float64)
#: a turn of -90 degrees about X: -Y becomes +Z (Lugaru's models hang head down along -Y)
_NEG_Y_TO_Z = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], np.float64)


def geometry_hash(mesh: trimesh.Trimesh) -> str:
    """Hash of the normalised vertex set (rounded, order-free): equal for exact copies in two packages."""
    rounded = np.round(np.asarray(mesh.vertices, np.float64), 3) + 0.0
    rows = np.unique(rounded, axis=0)
    return hashlib.sha256(rows.astype(np.float32).tobytes()).hexdigest()[:16]


#: Bumped when :func:`shape_signature` or :func:`main_part_span` change, so cached objects get them
#: recomputed.
SIGNATURE_VERSION = 3
#: Objects whose largest connected piece spans less than this share of the object are dropped: they are
#: scattered groups (a heap of separate small props) that render as specks once normalised.
MIN_MAIN_PART_SPAN = 0.6


def main_part_span(mesh: trimesh.Trimesh, grid: int = 16, samples: int = 20000) -> float:
    """Largest side of the biggest connected blob of surface voxels (``grid``^3 over the bounding box),
    as a share of the object's largest side: ~1 for one object (even with separate parts that touch or
    overlap, like leaves), small for a scatter of separate pieces."""
    from scipy import ndimage

    bounds = np.asarray(mesh.bounds, np.float64)
    extent = float(np.max(bounds[1] - bounds[0]))
    if extent <= 0:
        return 0.0
    points, _ = trimesh.sample.sample_surface(mesh, samples, seed=0)
    cells = np.clip(((points - bounds[0]) / extent * grid).astype(int), 0, grid - 1)
    occupied = np.zeros((grid, grid, grid), bool)
    occupied[tuple(cells.T)] = True
    labels, count = ndimage.label(occupied, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return 0.0
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    idx = np.argwhere(labels == largest)
    return float((idx.max(axis=0) - idx.min(axis=0) + 1).max() / grid)


def shape_signature(mesh: trimesh.Trimesh) -> tuple:
    """A shape key for near-duplicates across packages (re-exports, re-textured copies): triangle count,
    sorted extents to 0.02 and area to 5%. Coarser keys join unrelated simple shapes (balls, crates)."""
    extents = tuple(np.round(np.sort(np.asarray(mesh.extents)) / 0.02).astype(int).tolist())
    area = int(round(np.log(max(float(mesh.area), 1e-9)) / np.log(1.05)))
    return (len(mesh.faces),) + extents + (area,)


def write_glb(mesh: trimesh.Trimesh, path: Path) -> bytes:
    """Write a normalised +Z-up mesh as a +Y-up GLB atomically; returns the bytes written."""
    y_up = mesh.copy()
    y_up.apply_transform(_Z_TO_Y)
    data = y_up.export(file_type="glb")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


# --------------------------------------------------------------------------------------------- grouping
def near_duplicate_groups(records: Sequence[ObjectRecord], signatures: dict[str, tuple]) -> dict[str, str]:
    """Object id -> group id. Joined: exact geometry copies; objects with the same coarse shape signature;
    and, within a package, files in one folder whose names differ only by digits/LOD/variant suffixes."""
    parent = {r.id: r.id for r in records}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    keys: dict[tuple, str] = {}
    for r in records:
        stem = Path(r.source_path).stem.lower()
        base = re.sub(r"([_ .-]?(lod\d*|low|high|hi|lo|var\d*|v\d+|\d+[a-z]?|[a-d]))+$", "", stem)
        for key in (("geometry", r.geometry_hash), ("shape",) + tuple(signatures.get(r.id, (r.id,))),
                    ("name", r.package, str(Path(r.source_path).parent).lower(), base or stem)):
            if key in keys:
                union(r.id, keys[key])
            else:
                keys[key] = r.id
    return {r.id: "g_" + hashlib.sha1(find(r.id).encode()).hexdigest()[:10] for r in records}


def assign_splits(records: list[ObjectRecord], splits: dict[str, str]) -> None:
    """Split by package; a held-out object whose near-duplicate group has a member in an earlier split
    (train before val before test) is marked ``excluded`` so no group straddles splits. Exact geometry
    copies within one split keep their first member only."""
    order = {"train": 0, "val": 1, "test": 2}
    for r in records:
        r.split = splits.get(r.package, _hash_split(r.package))
    for r in records:
        if r.main_part_span < MIN_MAIN_PART_SPAN:
            r.split, r.note = "excluded", f"scattered pieces (main part spans {r.main_part_span:.2f})"
    first_split: dict[str, int] = {}
    for r in records:
        if r.split == "excluded":
            continue
        first_split[r.group] = min(first_split.get(r.group, 9), order[r.split])
    seen_geometry: set[tuple[str, str]] = set()
    for r in records:
        if r.split == "excluded":
            continue
        if order[r.split] > first_split[r.group]:
            r.note = f"near-duplicate of a {[k for k, v in order.items() if v == first_split[r.group]][0]} object"
            r.split = "excluded"
        elif (r.split, r.geometry_hash) in seen_geometry:
            r.note = "exact copy of another object in this split"
            r.split = "excluded"
        else:
            seen_geometry.add((r.split, r.geometry_hash))


def limit_group_members(records: list[ObjectRecord], limits: dict[str, int]) -> None:
    """Keep at most ``limits[package]`` objects of one near-duplicate group per split (the first ones in
    record order, i.e. sorted source paths); the rest are ``excluded``. Packages not in ``limits`` keep all."""
    seen: Counter = Counter()
    for r in records:
        limit = limits.get(r.package, 0)
        if limit <= 0 or r.split not in ("train", "val", "test"):
            continue
        key = (r.package, r.split, r.group)
        if seen[key] >= limit:
            r.split, r.note = "excluded", f"near-copy: its group already has {limit} objects in this split"
        else:
            seen[key] += 1


def cap_package_share(records: list[ObjectRecord], max_share: float) -> None:
    """Move a package's objects beyond ``max_share`` of the kept total to ``<split>_extra`` (stable choice
    by id hash), so no single maker dominates a split's main part."""
    if not 0.0 < max_share < 1.0:
        return
    kept = [r for r in records if r.split in ("train", "val", "test")]
    counts = Counter(r.package for r in kept)
    for package, count in counts.most_common():
        others = len(kept) - count
        allowed = int(max_share * others / (1.0 - max_share))
        if count <= allowed or others == 0:
            continue
        members = sorted((r for r in kept if r.package == package),
                         key=lambda r: hashlib.sha1(r.id.encode()).hexdigest())
        for r in members[allowed:]:
            r.split, r.note = f"{r.split}_extra", f"over the {max_share:.0%} per-package share"
        kept = [r for r in kept if r.split in ("train", "val", "test")]


def _hash_split(package: str) -> str:
    """Unknown packages: a stable split from the name (70/15/15)."""
    value = int(hashlib.sha1(package.encode()).hexdigest()[:8], 16) % 100
    return "train" if value < 70 else ("val" if value < 85 else "test")


# --------------------------------------------------------------------------------------------- build
@dataclass
class BuildSummary:
    manifest: Path
    objects: int = 0
    per_package: dict[str, int] = field(default_factory=dict)
    per_split: dict[str, int] = field(default_factory=dict)
    skipped_packages: dict[str, str] = field(default_factory=dict)
    failed: int = 0


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _readable_input(source: Source, path: Path, rel: str, extract_root: Path) -> tuple[Path, str]:
    """The file and reader :func:`convert_object` takes for one object of ``source``. Program sources
    (reader "openscad") are evaluated once by their tool into ``extract_root`` and then read as mesh files;
    every other source's file is read as it is."""
    if source.reader == "openscad":
        from zero1to3.data.openscad import scad_to_ply

        return scad_to_ply(path, extract_root / source.name / Path(rel).with_suffix(".ply")), "files"
    return path, source.reader


def _convert_job(args: tuple) -> tuple[dict | None, tuple | None, str | None]:
    source, rel, path, out_file, category, version, licence, overwrite = args
    oid = Path(out_file).stem
    sidecar = Path(out_file).with_suffix(".json")
    try:
        if not overwrite and sidecar.is_file() and Path(out_file).is_file():
            cached = json.loads(sidecar.read_text())
            if cached.get("signature_version") != SIGNATURE_VERSION:  # keys changed: recompute from the GLB
                mesh = trimesh.load(out_file, force="mesh", process=False)
                cached["signature"] = list(shape_signature(mesh))
                cached["record"]["main_part_span"] = round(main_part_span(mesh), 4)
                cached["signature_version"] = SIGNATURE_VERSION
                _write_json(sidecar, cached)
            return cached["record"], tuple(cached["signature"]), None
        path, reader = _readable_input(source, Path(path), rel, Path(out_file).parents[2] / ".extract")
        mesh = convert_object(path, source.up_axis, reader=reader,
                              name_filter=DEFAULT_EXCLUDE + (f"|{source.part_exclude}" if source.part_exclude else ""),
                              min_side_ratio=source.min_side_ratio, keep_texture_alpha=source.keep_texture_alpha,
                              texture_folders=source.texture_folders, lua_roots=source.roots,
                              texture_roots=source.texture_roots,
                              texture_path_roots=_texture_path_roots(source, Path(out_file).parents[2] / ".extract"))
        data = write_glb(mesh, Path(out_file))
        textured = _has_image(mesh)
        record = ObjectRecord(
            id=oid, package=source.name, version=version, source_path=rel, licence=licence,
            file=str(Path(out_file).relative_to(Path(out_file).parents[2])), faces=int(len(mesh.faces)),
            vertices=int(len(mesh.vertices)), textured=bool(textured),
            vertex_colours=bool(not textured and isinstance(mesh.visual, trimesh.visual.ColorVisuals)),
            sha256=hashlib.sha256(data).hexdigest(), geometry_hash=geometry_hash(mesh), category=category,
            main_part_span=round(main_part_span(mesh), 4))
        signature = shape_signature(mesh)
        _write_json(sidecar, {"record": asdict(record), "signature": list(signature),
                              "signature_version": SIGNATURE_VERSION})
        return asdict(record), signature, None
    except Exception as exc:  # one broken model must not stop the build
        return None, None, f"{rel}: {type(exc).__name__}: {str(exc)[:200]}"


def build_corpus(out_dir: str | os.PathLike, sources: Sequence[Source] | None = None,
                 splits: dict[str, str] | None = None, limit_per_source: int | None = None,
                 workers: int = 1, overwrite: bool = False, progress: bool = True,
                 note: Callable[[str], None] = print, max_share: float = 0.5,
                 keep_others: bool = False) -> BuildSummary:
    """Convert every object of every installed source into ``out_dir/objects`` and write the manifest.

    Missing packages are skipped with a one-line note naming the install command; reserved sources raise
    :class:`ReservedSourceError` before any work. Re-running reuses converted objects (per-object
    sidecar JSON) unless ``overwrite``. No package holds more than ``max_share`` of the objects: the
    excess of a larger one (a stable pseudo-random choice) goes to split ``<split>_extra``, still usable.

    ``keep_others``: the objects of packages that ``OUT/manifest.json`` already holds but this build does not
    convert (not among ``sources``, or not installed here) stay in the manifest with their records as they were
    (split, note, group, ...), and ``failed.txt`` keeps its earlier lines. Why: two people adding packages to
    one shared corpus from branches that each know only their own new source must not drop each other's.
    """
    from tqdm import tqdm

    sources = list(SOURCES.values()) if sources is None else list(sources)
    for source in sources:
        check_not_reserved(source.registry_name, source.roots[0] if source.kind == "folder" else None)
        check_not_reserved(source.name)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    out = Path(out_dir)
    (out / "objects").mkdir(parents=True, exist_ok=True)
    summary = BuildSummary(out / "manifest.json")
    jobs = []
    for source in sources:
        version = package_version(source)
        if version is None:
            message = f"skip {source.name}: not installed ({install_command(source)})"
            summary.skipped_packages[source.name] = "not installed"
            note(message)
            continue
        if source.pin and version != source.pin:
            note(f"skip {source.name}: {version} installed, {source.pin} pinned ({install_command(source)})")
            summary.skipped_packages[source.name] = f"version {version}, not {source.pin}"
            continue
        if source.kind in ("pip", "npm"):
            source = located(source)
            for root in source.roots:  # a package may re-ship a reserved one's files (pybullet_data/...)
                check_not_reserved(source.name, root)
        licence = source.licence or (package_licence(source.name) if source.kind == "deb" else
                                     registry_licence(source) if source.kind in ("pip", "npm")
                                     else "as stated by the folder's owner")
        count = 0
        ids: set[str] = set()
        for rel, path, _root in _iter_files(source, out / ".extract"):
            oid = object_id(source.name, rel, source.extensions if source.reader == "blend-nodes" else None)
            if oid in ids:
                continue
            ids.add(oid)
            out_file = out / "objects" / source.name / f"{oid}.glb"
            jobs.append((source, rel, str(path), str(out_file), _category(rel, source.category_levels), version,
                         licence, overwrite))
            count += 1
            if limit_per_source and count >= limit_per_source:
                break
        if count == 0:
            note(f"skip {source.name}: no model files found under {', '.join(source.roots)}")
            summary.skipped_packages[source.name] = "no files"
    records: list[ObjectRecord] = []
    signatures: dict[str, tuple] = {}
    failures: list[str] = []
    bar = tqdm(total=len(jobs), desc="convert", unit="obj", disable=not progress)
    try:
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                results = pool.imap(_convert_job, jobs, chunksize=4)
                for result in results:
                    _collect(result, records, signatures, failures)
                    bar.update()
        else:
            for job in jobs:
                _collect(_convert_job(job), records, signatures, failures)
                bar.update()
    finally:
        bar.close()
    earlier = load_manifest(out) if keep_others and (out / "manifest.json").is_file() else {"objects": []}
    built = {r.package for r in records} | {s.name for s in sources}
    kept_before = _records_of_other_packages(out, earlier, built, signatures)
    records = kept_before + records
    before = {r.id: (r.split, r.note, r.group) for r in kept_before}  # as the manifest had them
    groups = near_duplicate_groups(records, signatures)
    for r in records:
        r.group = groups[r.id]
    if kept_before:  # a kept package takes part in the split rules under the split the manifest gave it
        splits.update({p: v for p, v in earlier.get("splits", {}).items()
                       if p in {r.package for r in kept_before}})
    assign_splits(records, splits)
    limit_group_members(records, {s.name: s.max_per_group for s in sources if s.max_per_group > 0})
    cap_package_share(records, max_share)
    for r in records:  # kept packages: their records exactly as the manifest had them
        if r.id in before:
            r.split, r.note, r.group = before[r.id]
    _exclude_near_kept_held_out(records, set(before), groups)
    if keep_others:  # rows the manifest had keep their places (cameras are drawn in manifest order); new ones after
        place = {row["id"]: i for i, row in enumerate(earlier["objects"])}
        records.sort(key=lambda r: place.get(r.id, len(place)))
    if keep_others and (out / "failed.txt").is_file():
        earlier_failures = [line for line in (out / "failed.txt").read_text().splitlines() if line]
        failures = earlier_failures + [line for line in failures if line not in set(earlier_failures)]
    (out / "failed.txt").write_text("\n".join(failures) + ("\n" if failures else ""))
    summary.failed = len(failures)
    kept = [r for r in records if r.split in ("train", "val", "test")]
    summary.objects = len(kept)
    summary.per_package = dict(Counter(r.package for r in kept))
    summary.per_split = dict(Counter(r.split for r in kept))
    manifest = {
        "format": "zero1to3 corpus manifest v1",
        "up_axis": "+Y up in the GLB files (glTF convention); zero1to3.data.render.load_mesh turns it to +Z up",
        "normalisation": "bounding box centred at the origin, largest side 1",
        "max_texture_px": MAX_TEXTURE_SIZE,
        "splits": {p: splits.get(p, _hash_split(p)) for p in sorted({r.package for r in records})},
        "packages": {p: {"version": next(r.version for r in records if r.package == p),
                         "licence": next(r.licence for r in records if r.package == p),
                         "objects": summary.per_package.get(p, 0)} for p in sorted({r.package for r in records})},
        "counts": {"objects": summary.objects, "per_split": summary.per_split,
                   "extra": dict(Counter(r.split for r in records if r.split.endswith("_extra"))),
                   "excluded": sum(r.split == "excluded" for r in records),
                   "failed": len(failures), "textured": sum(r.textured for r in kept)},
        "objects": [asdict(r) for r in records],
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")
    return summary


def _exclude_near_kept_held_out(records: list[ObjectRecord], kept: set[str], groups: dict[str, str]) -> None:
    """A converted object whose near-duplicate group holds a kept object of a later split (a train object
    near a kept val/test one) is excluded: the kept object cannot move, and no group may straddle splits."""
    order = {"train": 0, "val": 1, "test": 2}
    latest: dict[str, int] = {}
    for r in records:
        if r.id in kept and r.split in order:
            latest[groups[r.id]] = max(latest.get(groups[r.id], -1), order[r.split])
    for r in records:
        if r.id not in kept and r.split in order and latest.get(groups[r.id], -1) > order[r.split]:
            r.split, r.note = "excluded", "near-duplicate of a kept held-out object"


def _records_of_other_packages(out: Path, manifest: dict, built: set[str],
                               signatures: dict[str, tuple]) -> list[ObjectRecord]:
    """The records of ``manifest`` (the corpus's earlier one) of packages not in ``built``, as they are, each
    with its shape signature read from its sidecar JSON (so it still takes part in near-duplicate grouping). A
    record whose GLB or sidecar is gone is dropped with a warning."""
    kept = []
    for row in manifest["objects"]:
        if row["package"] in built:
            continue
        sidecar = (out / row["file"]).with_suffix(".json")
        try:
            signatures[row["id"]] = tuple(json.loads(sidecar.read_text())["signature"])
        except (OSError, ValueError, KeyError):
            logger.warning("kept package %s: %s has no readable sidecar; left out", row["package"], row["id"])
            continue
        kept.append(ObjectRecord(**row))
    return kept


def _collect(result, records, signatures, failures) -> None:
    record, signature, error = result
    if error is not None:
        failures.append(error)
        return
    r = ObjectRecord(**record)
    records.append(r)
    signatures[r.id] = tuple(signature)


def load_manifest(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"corpus manifest not found: {path}")
    return json.loads(path.read_text())


def split_files(manifest_path: str | os.PathLike, split: str) -> list[tuple[str, Path]]:
    """(object id, GLB path) of one split, in manifest order."""
    path = Path(manifest_path)
    root = path if path.is_dir() else path.parent
    manifest = load_manifest(path)
    rows = [(o["id"], root / o["file"]) for o in manifest["objects"] if o["split"] == split]
    if not rows:
        raise ValueError(f"split {split!r} is empty in {path}")
    return rows
