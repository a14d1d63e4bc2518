"""Corpus sources added in the sixth session (MORSE, OpenCity, GL-117, CRRCsim): their file filters, the
``blend-nodes`` reader (one object per top-level object of a converted .blend scene), object ids of objects
inside a file, and ``build_corpus(keep_others=True)`` (a shared corpus built from branches that each know only
some packages). Hand-built fixtures; CPU, seconds."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from zero1to3.data.corpus import (DEFAULT_SPLITS, SOURCES, Source, blend_node_parts, blend_top_nodes, build_corpus,
                                  convert_object, object_id)
from zero1to3.data.corpus import _iter_files

NEW = ("morse-simulator-data", "opencity-data", "gl-117-data", "crrcsim-data")


def _found(source: Source, root: Path, rels: list[str], extract: Path) -> set[str]:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("stand-in\n")
    return {rel for rel, _, _ in _iter_files(dataclasses.replace(source, roots=(str(root),)), extract)}


def test_new_sources_are_train_and_filter_files(tmp_path: Path) -> None:
    """The path rules, run by the real file discovery on stand-in files: buildings, vehicles, trees, aircraft
    and props stay; road and power-line tiles, zone markers, flying-site terrain, chaff, flares, missiles,
    walls and the title logo do not."""
    assert all(DEFAULT_SPLITS[name] == "train" for name in NEW)
    kept = ["commercial/hotel/hotel.ac", "electricity/coal/coal.ac", "vehicle/fire/fire.ac", "tree/tree007/tree007.ac"]
    dropped = ["path/road/road_n_e/road_n_e.ac", "electricity/line_n_e/line_n_e.ac", "commercial/c_zone/c_zone.ac",
               "residential/r_zone/r_zone.ac", "industrial/waste_ground/waste_ground.ac", "commercial/hotel/hotel.xml"]
    assert _found(SOURCES["opencity-data"], tmp_path / "oc", kept + dropped, tmp_path / "x") == set(kept)
    kept = ["gl-14.3ds", "gl-14b.3ds", "tank1.3ds", "house1.3ds", "oilrig.3ds", "aster1.3ds"]
    dropped = ["chaff1.3ds", "flare1.3ds", "rubble.3ds", "wall.3ds", "barrier.3ds", "missile7.3ds", "gl-117.3ds"]
    assert _found(SOURCES["gl-117-data"], tmp_path / "gl", kept + dropped, tmp_path / "x") == set(kept)
    kept = ["Angel_S30E.ac", "biplane2.ac", "outhouse.ac", "populus_nigra_H.ac", "trashcan.ac"]
    dropped = ["woods_terrain.ac", "davis.ac", "cape_cod.ac", "small.ac", "freqboard.ac", "populus_nigra_L.ac"]
    assert _found(SOURCES["crrcsim-data"], tmp_path / "cr", kept + dropped, tmp_path / "x") == set(kept)
    assert SOURCES["gl-117-data"].texture_folders == SOURCES["crrcsim-data"].texture_folders == ("textures",)


def _blend_scene() -> trimesh.Scene:
    """What assimp makes of a .blend: one root node holding one node per Blender object. ``Chair.001`` is a
    box moved up by 2 with a child box (moved by 1 along X under it); ``Chair`` a second object; ``Lamp`` a
    node without a mesh; ``DRAGOR_carpet`` a flat object the MORSE rules leave out."""
    scene = trimesh.Scene()
    scene.graph.update(frame_from=scene.graph.base_frame, frame_to="<BlenderRoot>")
    seat = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    scene.add_geometry(seat, node_name="Chair.001", geom_name="seat", parent_node_name="<BlenderRoot>",
                       transform=trimesh.transformations.translation_matrix((0.0, 0.0, 2.0)))
    scene.add_geometry(trimesh.creation.box(extents=(1.0, 1.0, 1.0)), node_name="Chair.001_leg", geom_name="leg",
                       parent_node_name="Chair.001",
                       transform=trimesh.transformations.translation_matrix((1.0, 0.0, 0.0)))
    scene.add_geometry(trimesh.creation.box(extents=(2.0, 1.0, 3.0)), node_name="Chair", geom_name="chair",
                       parent_node_name="<BlenderRoot>")
    scene.graph.update(frame_from="<BlenderRoot>", frame_to="Lamp")
    scene.add_geometry(trimesh.creation.box(extents=(4.0, 4.0, 0.1)), node_name="DRAGOR_carpet", geom_name="rug",
                       parent_node_name="<BlenderRoot>")
    return scene


def test_blend_top_nodes_group_parts_in_world_coordinates() -> None:
    scene = _blend_scene()
    groups = blend_top_nodes(scene)
    assert {k: sorted(v) for k, v in groups.items()} == {"Chair.001": ["Chair.001", "Chair.001_leg"],
                                                         "Chair": ["Chair"], "DRAGOR_carpet": ["DRAGOR_carpet"]}
    parts = blend_node_parts(scene, "Chair.001")
    bounds = trimesh.util.concatenate(parts).bounds
    np.testing.assert_allclose(bounds, [[-0.5, -0.5, 1.5], [1.5, 0.5, 2.5]])  # parent and child moves applied
    with pytest.raises(ValueError, match="no object"):
        blend_node_parts(scene, "Lamp")


def test_object_ids_of_objects_inside_a_file() -> None:
    """Objects inside one file keep their whole name (``Chair`` and ``Chair.001`` are two objects); plain
    files lose their extension as before."""
    exts = (".blend",)
    assert object_id("morse-simulator-data", "props/f.blend/Chair.001", exts) == \
        "morse-simulator__props_f_blend_Chair_001"
    assert object_id("morse-simulator-data", "props/f.blend/Chair", exts) == "morse-simulator__props_f_blend_Chair"
    assert object_id("opencity-data", "vehicle/fire/fire.ac") == "opencity__vehicle_fire_fire"
    assert object_id("x-data", "a/b.blend", exts) == object_id("x-data", "a/b.blend") == "x__a_b"


def test_morse_source_reads_each_top_level_object(tmp_path: Path) -> None:
    """The MORSE source on a stand-in .blend whose conversion is already cached (as a build leaves it): one
    object per top-level object with a mesh, the carpet left out by name, ids distinct, and each object
    converted alone (normalised: largest side 1)."""
    root, extract = tmp_path / "data", tmp_path / "extract"
    (root / "props").mkdir(parents=True)
    (root / "props" / "room.blend").write_bytes(b"BLENDER-v279 stand-in")
    (root / "environments").mkdir()
    (root / "environments" / "flat.blend").write_bytes(b"BLENDER-v279 stand-in")  # not under props/robots/...
    cached = extract / "morse-simulator-data" / "props" / "room.blend.glb"
    cached.parent.mkdir(parents=True)
    _blend_scene().export(cached)
    cached.with_suffix(".textures.json").write_text("{}")
    source = dataclasses.replace(SOURCES["morse-simulator-data"], roots=(str(root),))
    found = sorted((rel, str(path)) for rel, path, _ in _iter_files(source, extract))
    assert [rel for rel, _ in found] == ["props/room.blend/Chair", "props/room.blend/Chair.001"]
    assert len({object_id(source.name, rel, source.extensions) for rel, _ in found}) == 2
    chair = convert_object(Path(found[1][1]), up_axis=source.up_axis, reader=source.reader)
    np.testing.assert_allclose(chair.extents, (1.0, 0.5, 0.5), atol=1e-6)  # 2 x 1 x 1 before normalising
    assert len(chair.faces) == 24


@pytest.mark.skipif(shutil.which("assimp") is None, reason="needs assimp-utils")
def test_unreadable_blend_is_skipped(tmp_path: Path) -> None:
    """A file assimp cannot read (truncated, or not a .blend) gives no objects and stops nothing."""
    root = tmp_path / "data" / "props"
    root.mkdir(parents=True)
    (root / "broken.blend").write_bytes(b"BLENDER-v279REND\x00\x00")
    source = dataclasses.replace(SOURCES["morse-simulator-data"], roots=(str(tmp_path / "data"),))
    assert list(_iter_files(source, tmp_path / "extract")) == []


def _ply(path: Path, mesh: trimesh.Trimesh) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)


def test_keep_others_keeps_packages_this_build_does_not_convert(tmp_path: Path) -> None:
    """A build that converts only pkg-new keeps pkg-old's rows exactly (order, split, note, group, hash) and
    failed.txt's earlier lines; rebuilding pkg-old then leaves every row in its place; without ``keep_others``
    pkg-old would be dropped. A new training object that is a copy of a kept held-out object is excluded (the
    kept one cannot move)."""
    exts = (".ply",)
    old_root, new_root = tmp_path / "old", tmp_path / "new"
    sphere = trimesh.creation.icosphere(subdivisions=2)
    _ply(old_root / "misc" / "ball.ply", sphere)
    _ply(old_root / "misc" / "ring.ply", trimesh.creation.torus(1.0, 0.3))
    _ply(old_root / "misc" / "leaf.ply", trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]))
    copy = sphere.copy()
    copy.apply_scale(2.0)
    _ply(new_root / "props" / "globe.ply", copy)  # the same shape as the kept test object "ball"
    _ply(new_root / "props" / "crate.ply", trimesh.creation.box(extents=(1.0, 2.0, 3.0)))
    old = Source("pkg-old", (str(old_root),), exts, kind="folder", up_axis="z")
    new = Source("pkg-new", (str(new_root),), exts, kind="folder", up_axis="z")
    splits = {"pkg-old": "test", "pkg-new": "train"}
    out = tmp_path / "corpus"
    build_corpus(out, [old], splits=splits, progress=False, note=lambda _: None, max_share=1.0)
    before = json.loads((out / "manifest.json").read_text())
    failed_before = (out / "failed.txt").read_text()
    assert "leaf" in failed_before and before["counts"]["per_split"] == {"test": 2}

    # the branch that builds pkg-new does not know pkg-old's split: it is taken from the manifest
    summary = build_corpus(out, [new], splits={"pkg-new": "train"}, progress=False, note=lambda _: None,
                           max_share=1.0, keep_others=True)
    after = json.loads((out / "manifest.json").read_text())
    assert after["objects"][:len(before["objects"])] == before["objects"]
    rows = {Path(o["source_path"]).stem: o for o in after["objects"][len(before["objects"]):]}
    assert rows["crate"]["split"] == "train"
    assert rows["globe"]["split"] == "excluded" and rows["globe"]["note"] == "near-duplicate of a kept held-out object"
    assert summary.per_split == {"test": 2, "train": 1} and after["splits"] == {"pkg-new": "train", "pkg-old": "test"}
    assert (out / "failed.txt").read_text().startswith(failed_before)

    # rebuilding a package the manifest already holds (pkg-old, listed first) keeps its rows where they were
    build_corpus(out, [old], splits=splits, progress=False, note=lambda _: None, max_share=1.0, keep_others=True)
    assert [o["id"] for o in json.loads((out / "manifest.json").read_text())["objects"]] == \
        [o["id"] for o in after["objects"]]

    build_corpus(out, [new], splits={"pkg-new": "train"}, progress=False, note=lambda _: None, max_share=1.0)
    assert {o["package"] for o in json.loads((out / "manifest.json").read_text())["objects"]} == {"pkg-new"}


def _solid_bytes(vertices: np.ndarray, corners: np.ndarray, u: np.ndarray, v: np.ndarray) -> bytes:
    """A Lugaru .solid file written by hand: big-endian counts, vertices, then per triangle six shorts (the
    corner indices at 0, 2, 4) and the corners' u and v."""
    import struct

    data = struct.pack(">hh", len(vertices), len(corners))
    data += np.asarray(vertices, ">f4").tobytes()
    for tri, tu, tv in zip(corners, u, v):
        data += struct.pack(">6h", tri[0], 7, tri[1], 7, tri[2], 7)
        data += np.asarray(tu, ">f4").tobytes() + np.asarray(tv, ">f4").tobytes()
    return data


def test_read_solid_hand_built(tmp_path: Path) -> None:
    """Exact vertices, one corner per triangle vertex, UVs with v flipped; truncated, padded, empty and
    out-of-range files are refused."""
    from zero1to3.data.formats import read_solid

    vertices = np.array([[0, 0, 0], [2, 0, 0], [0, -3, 0], [0, 0, 1]], np.float64)
    corners = np.array([[0, 1, 2], [0, 2, 3]])
    u = np.array([[0.0, 1.0, 0.0], [0.25, 0.5, 0.75]])
    v = np.array([[0.0, 0.0, 1.0], [0.1, 0.2, 0.3]])
    data = _solid_bytes(vertices, corners, u, v)
    assert len(data) == 4 + 12 * 4 + 36 * 2
    (tmp_path / "m.solid").write_bytes(data)
    mesh = read_solid(tmp_path / "m.solid")
    np.testing.assert_array_equal(mesh.vertices, vertices[corners.reshape(-1)])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_allclose(mesh.visual.uv, np.stack([u.reshape(-1), 1.0 - v.reshape(-1)], 1), atol=1e-7)
    for bad, message in ((data[:-1], "truncated"), (data + b"\0", "truncated"), (data[:3], "header"),
                         (b"\0\0\0\0", "truncated"),
                         (_solid_bytes(vertices, np.array([[0, 1, 4]]), u[:1], v[:1]), "out of range")):
        (tmp_path / "bad.solid").write_bytes(bad)
        with pytest.raises(ValueError, match=message):
            read_solid(tmp_path / "bad.solid")


def test_lugaru_source_reads_upright_with_its_skin(tmp_path: Path) -> None:
    """The Lugaru source: models hang head down along -Y and come out +Z up; the skin the game sets in code
    is found in ``Textures/`` (the throwing knife's is Knife.png); the other poses, eye parts, boxes and
    billboards are left out; a rod (the staff) is refused as thin."""
    from PIL import Image

    source = SOURCES["lugaru-data"]
    models, textures = tmp_path / "lugaru" / "Models", tmp_path / "lugaru" / "Textures"
    models.mkdir(parents=True)
    textures.mkdir()
    Image.fromarray(np.full((4, 4, 3), (200, 120, 30), np.uint8)).save(textures / "Knife.png")
    box = trimesh.creation.box(extents=(1.0, 4.0, 2.0))  # tallest along Y, hanging below the origin ...
    box.apply_translation((0.0, -2.5, 0.0))
    head = trimesh.creation.box(extents=(0.5, 0.5, 0.5))  # ... with a small head at its lowest end
    head.apply_translation((0.0, -4.75, 0.0))
    knife = trimesh.util.concatenate([box, head])
    uv = np.zeros((len(knife.faces), 3))
    (models / "ThrowingKnife.solid").write_bytes(_solid_bytes(knife.vertices, knife.faces, uv + 0.5, uv + 0.5))
    rod = trimesh.creation.box(extents=(0.1, 4.0, 0.1))
    (models / "Staff.solid").write_bytes(_solid_bytes(rod.vertices, rod.faces, uv[:12], uv[:12]))
    names = ["Body2.solid", "WolfLow.solid", "Iris.solid", "Box.solid", "Bush.solid", "Rabbit.solid",
             "Weird.solid", "Wolf.solid", "Body.solid", "Hawk.solid", "Rock.solid", "Sword.solid"]
    for name in names:
        (models / name).write_bytes(b"")
    found = {rel for rel, _, _ in _iter_files(dataclasses.replace(source, roots=(str(models),)), tmp_path / "x")}
    assert found == {"Wolf.solid", "Body.solid", "Hawk.solid", "Rock.solid", "Sword.solid", "ThrowingKnife.solid",
                     "Staff.solid"}
    mesh = convert_object(models / "ThrowingKnife.solid", up_axis=source.up_axis, min_side_ratio=source.min_side_ratio,
                          texture_folders=source.texture_folders)
    np.testing.assert_allclose(mesh.extents, (1 / 4.5, 2 / 4.5, 1.0), atol=1e-6)  # Y (4.5) became Z, Z became Y
    head_top = mesh.vertices[np.abs(mesh.vertices[:, 1]) < 0.25 / 4.5 + 1e-6][:, 2].max()
    assert head_top == pytest.approx(0.5)  # the head (lowest along Y in the file) is on top
    assert mesh.vertices[:, 2].min() == pytest.approx(-0.5)
    texels = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).reshape(-1, 3)
    assert (texels == (200, 120, 30)).all(axis=1).any()
    with pytest.raises(ValueError, match="thin"):
        convert_object(models / "Staff.solid", up_axis=source.up_axis, min_side_ratio=source.min_side_ratio)


def test_gltron_source_keeps_the_detailed_models(tmp_path: Path) -> None:
    kept = ["lightcycle-high.obj", "recognizer.obj"]
    dropped = ["lightcycle-low.obj", "lightcycle-med.obj", "recognizer_quad.obj", "lightcycle.mtl"]
    assert _found(SOURCES["gltron"], tmp_path / "gl", kept + dropped, tmp_path / "x") == set(kept)
