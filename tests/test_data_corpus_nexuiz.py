"""Nexuiz (``nexuiz-data``) in the corpus: its file rules, textures named by a path from the game's data root
(``Source.texture_path_roots``, resolved by ``_find_image_under``), and the parts dropped by
``Source.part_exclude`` (the map compiler's origin brush). Hand-built fixtures; CPU, seconds."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from zero1to3.data.corpus import DEFAULT_EXCLUDE, DEFAULT_SPLITS, SOURCES, convert_object
from zero1to3.data.corpus import _find_image_under, _iter_files, _texture_path_roots

from test_data_corpus import _md3_bytes

NEXUIZ = SOURCES["nexuiz-data"]


def test_nexuiz_source_is_train_and_filters_files(tmp_path: Path) -> None:
    """The path rules, run by the real discovery on stand-in archives: ground weapons, items, office props,
    assembled turrets, the undamaged generator, flags and the desert-factory furniture stay; view models,
    turret parts and gibs, damaged generators, trees, players, map pieces and the train do not; the texture
    archive holds no model but its images are unpacked."""
    assert DEFAULT_SPLITS["nexuiz-data"] == "train"
    kept = ["models/weapons/g_nex.md3", "models/items/a_cells.md3", "models/items/g_h100.md3", "models/it/chair.md3",
            "models/map/forklift.md3", "models/turrets/radiant/tesla.md3", "models/onslaught/generator.md3",
            "models/ctf/flag_red.md3", "models/nexball/ball.md3", "models/keyhunt/key.md3",
            "models/desertfactory/objects_metal/barrel01.ase", "models/desertfactory/objects_wood/chair01.ase",
            "models/desertfactory/structure_wood/toilethut01.ase", "models/mapobjects/morphed_tele/telepad.ase",
            "models/aircraft/a.ase"]
    dropped = ["models/weapons/v_nex.md3", "models/weapons/h_nex.dpm", "models/weapons/w_nex.zym",
               "models/turrets/tesla_head.md3", "models/turrets/head-gib1.md3", "models/onslaught/generator_dmg3.md3",
               "models/onslaught/gen_gib1.md3", "models/mtree01.md3", "models/player/marine.zym",
               "models/gibs/robo.md3", "models/ctf/flags.md3", "models/desertfactory/structure_metal/pipes01.ase",
               "models/desertfactory/structure_metal/lamp01.ase", "models/desertfactory/objects_plants/grass01.ase",
               "models/desertfactory/structure_stone/floor02.ase", "models/train.ase", "models/race/racetrack.ase",
               "models/mapobjects/nx01_ceilpart1.ase", "models/items/jetpack.blend"]
    with zipfile.ZipFile(tmp_path / "data.pk3", "w") as archive:
        for name in kept + dropped + ["models/it/chair.jpg"]:
            archive.writestr(name, b"stand-in")
    with zipfile.ZipFile(tmp_path / "textures.pk3", "w") as archive:
        archive.writestr("textures/pickups.tga", b"stand-in")
        archive.writestr("models/weapons/g_decoy.md3", b"stand-in")  # a model in the texture archive would count
    source = dataclasses.replace(NEXUIZ, roots=(str(tmp_path / "data.pk3"), str(tmp_path / "textures.pk3")))
    found = [rel for rel, _, _ in _iter_files(source, tmp_path / "x")]
    assert sorted(found) == sorted(kept + ["models/weapons/g_decoy.md3"])
    assert (tmp_path / "x/nexuiz-data/textures/textures/pickups.tga").is_file()
    assert (tmp_path / "x/nexuiz-data/data/models/it/chair.jpg").is_file()
    assert _texture_path_roots(source, tmp_path / "x") == [tmp_path / "x/nexuiz-data/data",
                                                          tmp_path / "x/nexuiz-data/textures"]
    assert _texture_path_roots(dataclasses.replace(source, texture_path_roots=("/a/b",)), tmp_path) == [Path("/a/b")]


def test_find_image_under_resolves_paths_from_the_data_root(tmp_path: Path) -> None:
    """A texture name with a folder part is looked up under each root in order (any image extension, any case,
    the map compiler's leading ``..\\`` dropped); bare names, names leaving the root and missing files give
    None."""
    first, second = tmp_path / "data", tmp_path / "textures"
    for root, name in ((first, "models/turrets/base.tga"), (second, "textures/pickups.tga"),
                       (second, "models/turrets/base.jpg"), (second, "textures/desert/Barrel01.PNG")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    roots = [first, second]
    assert _find_image_under("models/turrets/base", roots) == first / "models/turrets/base.tga"
    assert _find_image_under("models/turrets/base", roots[::-1]) == second / "models/turrets/base.jpg"
    assert _find_image_under("textures/pickups.tga", roots) == second / "textures/pickups.tga"
    assert _find_image_under("..\\textures\\desert\\barrel01.tga", roots) == second / "textures/desert/Barrel01.PNG"
    assert _find_image_under("/textures/pickups.jpg", roots) == second / "textures/pickups.tga"
    assert _find_image_under("pickups.tga", roots) is None
    assert _find_image_under("textures/../textures/pickups.tga", roots) is None
    assert _find_image_under("textures/missing.tga", roots) is None
    assert _find_image_under("textures/pickups.tga", []) is None


def _ase_text(objects: list[tuple[str, int, trimesh.Trimesh]], materials: list[tuple[str, str]]) -> str:
    """A 3ds Max ASCII export (ASE) as Nexuiz's map models are: materials named like shaders with a bitmap
    path relative to the map compiler's folder, one ``GEOMOBJECT`` (name, material index, mesh) per object;
    every vertex at UV (0.5, 0.5)."""
    lines = ["*3DSMAX_ASCIIEXPORT\t200", "*MATERIAL_LIST {", f"\t*MATERIAL_COUNT {len(materials)}"]
    for index, (name, bitmap) in enumerate(materials):
        lines += [f"\t*MATERIAL {index} {{", f'\t\t*MATERIAL_NAME "{name}"', '\t\t*MATERIAL_CLASS "Standard"',
                  "\t\t*MAP_DIFFUSE {", '\t\t\t*MAP_CLASS "Bitmap"', f'\t\t\t*BITMAP "{bitmap}"', "\t\t}", "\t}"]
    lines.append("}")
    for name, material, mesh in objects:
        v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        lines += ["*GEOMOBJECT {", f'\t*NODE_NAME "{name}"', "\t*MESH {", "\t\t*TIMEVALUE 0",
                  f"\t\t*MESH_NUMVERTEX {len(v)}", f"\t\t*MESH_NUMFACES {len(f)}", "\t\t*MESH_VERTEX_LIST {"]
        lines += [f"\t\t\t*MESH_VERTEX {i}\t{x:.4f}\t{y:.4f}\t{z:.4f}" for i, (x, y, z) in enumerate(v)]
        lines += ["\t\t}", "\t\t*MESH_FACE_LIST {"]
        lines += [f"\t\t\t*MESH_FACE {i}: A: {a} B: {b} C: {c} AB: 1 BC: 1 CA: 1 *MESH_SMOOTHING 1 *MESH_MTLID 0"
                  for i, (a, b, c) in enumerate(f)]
        lines += ["\t\t}", "\t\t*MESH_NUMTVERTEX 1", "\t\t*MESH_TVERTLIST {", "\t\t\t*MESH_TVERT 0\t0.5\t0.5\t0.0",
                  "\t\t}", f"\t\t*MESH_NUMTVFACES {len(f)}", "\t\t*MESH_TFACELIST {"]
        lines += [f"\t\t\t*MESH_TFACE {i}\t0\t0\t0" for i in range(len(f))]
        lines += ["\t\t}", "\t}", f"\t*MATERIAL_REF {material}", "}"]
    return "\n".join(lines) + "\n"


def _red_and_blue(tmp_path: Path, model: Path) -> tuple[Path, Path]:
    """The red ``textures/pickups.tga`` under the texture root only, and a blue decoy next to the model (what
    the guess would take); returns the two roots."""
    Image.fromarray(np.full((8, 8, 3), (30, 60, 210), np.uint8)).save(model.parent / "decoy.png")
    (tmp_path / "textures/textures").mkdir(parents=True)
    Image.fromarray(np.full((8, 8, 3), (220, 40, 30), np.uint8)).save(tmp_path / "textures/textures/pickups.tga")
    return tmp_path / "data", tmp_path / "textures"


def _has_colour(mesh: trimesh.Trimesh, rgb: tuple[int, int, int]) -> bool:
    texels = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).reshape(-1, 3).astype(int)
    return bool((np.abs(texels - rgb).sum(axis=1) < 12).any())


@pytest.mark.skipif(shutil.which("assimp") is None, reason="needs assimp-utils")
def test_md3_texture_from_the_data_root(tmp_path: Path) -> None:
    """A hand-built MD3 naming ``textures/pickups.tga`` (kept only in the texture archive's copy): with the
    source's roots it gets the red image, without them the blue decoy the guess takes; +Z up as written."""
    body = trimesh.creation.box(extents=(1.0, 1.0, 3.0))
    model = tmp_path / "data/models/items/g_test.md3"
    model.parent.mkdir(parents=True)
    model.write_bytes(_md3_bytes([("body", "textures/pickups.tga", body, np.full((8, 2), 0.5))]))
    roots = _red_and_blue(tmp_path, model)
    mesh = convert_object(model, up_axis=NEXUIZ.up_axis, texture_path_roots=roots)
    extents = mesh.bounds[1] - mesh.bounds[0]
    assert np.argmax(extents) == 2 and extents.max() == pytest.approx(1.0)
    assert _has_colour(mesh, (220, 40, 30)) and not _has_colour(mesh, (30, 60, 210))
    assert _has_colour(convert_object(model, up_axis=NEXUIZ.up_axis), (30, 60, 210))


@pytest.mark.skipif(shutil.which("assimp") is None, reason="needs assimp-utils")
def test_ase_map_model_drops_the_origin_brush(tmp_path: Path) -> None:
    """A hand-built ASE map model (+Z up in the file) with a small ``textures/common/origin`` cube below its
    body: the source's part rule drops the cube (12 of 24 triangles; the default rules keep it), the body's
    ``..\\textures\\pickups.tga`` is found under the texture root, and with the source's up axis the body
    stands +Z up."""
    body = trimesh.creation.box(extents=(1.0, 1.0, 3.0))
    origin = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    origin.apply_translation((2.0, 0.0, -3.0))
    model = tmp_path / "data/models/desertfactory/objects_metal/barrel09.ase"
    model.parent.mkdir(parents=True)
    model.write_text(_ase_text([("body", 0, body), ("origin", 1, origin)],
                               [("textures/desert/barrel", "..\\textures\\pickups.tga"),
                                ("textures/common/origin", "..\\textures\\common\\origin.tga")]))
    roots = _red_and_blue(tmp_path, model)
    part_rule = DEFAULT_EXCLUDE + "|" + NEXUIZ.part_exclude
    mesh = convert_object(model, up_axis=NEXUIZ.up_axis, name_filter=part_rule, texture_path_roots=roots)
    assert mesh.faces.shape == (12, 3)
    extents = mesh.bounds[1] - mesh.bounds[0]
    assert np.argmax(extents) == 2 and extents.max() == pytest.approx(1.0)
    assert extents[0] == pytest.approx(1.0 / 3.0, abs=1e-3)
    assert _has_colour(mesh, (220, 40, 30))
    assert convert_object(model, up_axis=NEXUIZ.up_axis, texture_path_roots=roots).faces.shape == (24, 3)
