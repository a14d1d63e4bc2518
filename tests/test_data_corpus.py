"""Corpus builder: normalisation, +Y-up GLBs read upright, split by package, near-duplicate grouping,
the reserved-source refusal (all on tiny fixture folders written by trimesh; CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from zero1to3.cli import main as cli_main
from zero1to3.data.corpus import (SOURCES, ReservedSourceError, Source, build_corpus, check_not_reserved,
                                  convert_object, split_files)
from zero1to3.data.formats import read_g3d, read_md2
from zero1to3.data.render import load_mesh


def _textured_box(extents, colour) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=extents)
    image = Image.fromarray(np.tile(np.array(colour, np.uint8), (16, 16, 1)))
    uv = (box.vertices[:, :2] - box.vertices[:, :2].min(0)) / np.ptp(box.vertices[:, :2], axis=0)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    return box


def _make_packages(root: Path) -> tuple[Path, Path]:
    a, b = root / "pkg-a", root / "pkg-b"
    (a / "furniture").mkdir(parents=True)
    (a / "plants").mkdir(parents=True)
    (b / "misc").mkdir(parents=True)
    tall = _textured_box((0.5, 1.0, 3.0), (200, 30, 30))  # tallest along Z (the sources' up axis here)
    tall.apply_translation((5.0, -2.0, 1.0))
    tall.export(a / "furniture" / "cabinet.obj")
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=2.0)
    sphere.visual.vertex_colors = np.tile([20, 180, 40, 255], (len(sphere.vertices), 1))
    sphere.export(a / "plants" / "bush.ply")
    lod = sphere.copy()
    lod.apply_scale(3.0)  # the same model at another scale: an exact copy once normalised
    lod.export(a / "plants" / "bush_lod.ply")
    trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]]).export(a / "plants" / "leaf.ply")  # near-empty
    copy = sphere.copy()
    copy.apply_translation((9.0, 9.0, 9.0))
    copy.export(b / "misc" / "ball.ply")  # same model shipped by another package
    pebbles = [trimesh.creation.icosphere(subdivisions=1, radius=0.1) for _ in range(4)]
    for i, pebble in enumerate(pebbles):  # four small pieces far apart: a scatter, not one object
        pebble.apply_translation((3.0 * (i % 2), 3.0 * (i // 2), 0.0))
    trimesh.util.concatenate(pebbles).export(a / "plants" / "scatter.ply")
    torus = trimesh.creation.torus(1.0, 0.3)
    torus.export(b / "misc" / "ring.stl")
    return a, b


def _sources(a: Path, b: Path) -> list[Source]:
    exts = (".obj", ".ply", ".stl")
    return [Source("pkg-a", (str(a),), exts, kind="folder", up_axis="z"),
            Source("pkg-b", (str(b),), exts, kind="folder", up_axis="z")]


def test_build_normalises_groups_and_splits_by_package(tmp_path: Path) -> None:
    a, b = _make_packages(tmp_path / "src")
    summary = build_corpus(tmp_path / "corpus", _sources(a, b), splits={"pkg-a": "train", "pkg-b": "test"},
                           progress=False, note=lambda _: None, max_share=1.0)
    manifest = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    rows = {Path(o["source_path"]).stem: o for o in manifest["objects"]}
    assert set(rows) == {"cabinet", "bush", "bush_lod", "ball", "ring", "scatter"}  # one-triangle leaf dropped
    assert rows["scatter"]["split"] == "excluded" and rows["scatter"]["main_part_span"] < 0.3
    assert rows["cabinet"]["main_part_span"] == 1.0
    assert summary.failed == 1 and "leaf" in (tmp_path / "corpus" / "failed.txt").read_text()
    # Split by whole package; exact copies within a split keep one member; the copy in another package is
    # in the same near-duplicate group and is excluded from the held-out split.
    assert rows["cabinet"]["split"] == rows["bush"]["split"] == "train"
    assert rows["bush_lod"]["split"] == "excluded" and rows["bush_lod"]["group"] == rows["bush"]["group"]
    assert rows["ball"]["group"] == rows["bush"]["group"] and rows["ball"]["split"] == "excluded"
    assert rows["ring"]["split"] == "test" and rows["ring"]["group"] != rows["bush"]["group"]
    assert summary.per_split == {"train": 2, "test": 1}
    assert rows["cabinet"]["textured"] and not rows["bush"]["textured"] and rows["bush"]["vertex_colours"]
    assert rows["cabinet"]["category"] == "furniture" and rows["cabinet"]["faces"] == 12
    data = (tmp_path / "corpus" / rows["cabinet"]["file"]).read_bytes()
    import hashlib

    assert hashlib.sha256(data).hexdigest() == rows["cabinet"]["sha256"]
    assert [n for n, _ in split_files(tmp_path / "corpus" / "manifest.json", "test")] == [rows["ring"]["id"]]

    # The GLB is +Y up; load_mesh (as the renderer reads it) gives back the source's Z-up box, normalised.
    cabinet = load_mesh(tmp_path / "corpus" / rows["cabinet"]["file"])
    np.testing.assert_allclose(cabinet.extents, (0.5 / 3, 1.0 / 3, 1.0), atol=1e-5)
    np.testing.assert_allclose(cabinet.bounds.mean(axis=0), 0.0, atol=1e-6)
    texture = cabinet.visual.material.baseColorTexture
    assert texture is not None and np.asarray(texture.convert("RGB"))[0, 0].tolist() == [200, 30, 30]
    bush = load_mesh(tmp_path / "corpus" / rows["bush"]["file"])
    np.testing.assert_allclose(bush.extents.max(), 1.0, atol=1e-6)
    assert np.all(np.asarray(bush.visual.vertex_colors)[:, :3] == [20, 180, 40])

    # Re-running reuses converted objects and yields the same manifest rows.
    build_corpus(tmp_path / "corpus", _sources(a, b), splits={"pkg-a": "train", "pkg-b": "test"},
                 progress=False, note=lambda _: None, max_share=1.0)
    again = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert again["objects"] == manifest["objects"]
    # With the default cap no package holds more than half: pkg-a's second object moves to train_extra.
    capped = build_corpus(tmp_path / "corpus", _sources(a, b), splits={"pkg-a": "train", "pkg-b": "test"},
                          progress=False, note=lambda _: None)
    assert capped.per_package == {"pkg-a": 1, "pkg-b": 1}
    extra = [o for o in json.loads((tmp_path / "corpus" / "manifest.json").read_text())["objects"]
             if o["split"] == "train_extra"]
    assert len(extra) == 1 and extra[0]["package"] == "pkg-a"


def test_reserved_sources_are_refused(tmp_path: Path, capsys) -> None:
    for name in ("sweethome3d-furniture", "opencv-doc", "robosuite", "pybullet", "pymeshlab", "panda3d",
                 "dm-control", "scikit-image", "scikit-learn"):
        with pytest.raises(ReservedSourceError):
            check_not_reserved(name)
    folder = tmp_path / "pybullet_data"
    folder.mkdir()
    with pytest.raises(ReservedSourceError):
        build_corpus(tmp_path / "out", [Source("mine", (str(folder),), (".obj",), kind="folder")],
                     progress=False)
    assert not (tmp_path / "out").exists()  # refused before any work
    assert cli_main(["data", "build", "--out", str(tmp_path / "o"), "--sources", "sweethome3d-furniture"]) == 2
    assert "reserved" in capsys.readouterr().err
    assert cli_main(["data", "build", "--out", str(tmp_path / "o"), "--sources", "minetest-data",
                     "--folder", f"x={folder}"]) == 2
    check_not_reserved("0ad-data", "/usr/share/games/0ad")  # an ordinary source passes


def test_cli_folder_source_and_missing_package_note(tmp_path: Path, capsys) -> None:
    a, _ = _make_packages(tmp_path / "src")
    code = cli_main(["data", "build", "--out", str(tmp_path / "c"), "--folder", f"mine={a}", "--split", "mine=val",
                     "--quiet"])
    assert code == 0
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["splits"]["mine"] == "val" and manifest["counts"]["per_split"] == {"val": 2}
    assert "2 objects" in capsys.readouterr().out
    notes: list[str] = []
    build_corpus(tmp_path / "d", [Source("no-such-package-zz", ("/nonexistent",), (".obj",))], progress=False,
                 note=notes.append)
    assert notes == ["skip no-such-package-zz: not installed (apt-get install -y no-such-package-zz)"]


def test_md2_reader_hand_built(tmp_path: Path) -> None:
    # One triangle, skin 'skin.png' 4x4: header (17 ints), skin name, 3 st, 1 triangle, one frame.
    skins = b"models/skin.png".ljust(64, b"\0")
    st = np.array([[0, 0], [4, 0], [0, 4]], "<i2").tobytes()
    tri = np.array([0, 1, 2, 0, 1, 2], "<u2").tobytes()
    frame = np.array([0.5, 0.5, 0.5], "<f4").tobytes() + np.array([1.0, 0, 0], "<f4").tobytes() + b"f".ljust(16, b"\0")
    frame += bytes([0, 0, 0, 0, 2, 0, 0, 0, 0, 4, 0, 0])
    ofs_skins = 68
    ofs_st = ofs_skins + len(skins)
    ofs_tris = ofs_st + len(st)
    ofs_frames = ofs_tris + len(tri)
    end = ofs_frames + len(frame)
    header = b"IDP2" + np.array([8, 4, 4, len(frame), 1, 3, 3, 1, 0, 1, ofs_skins, ofs_st, ofs_tris, ofs_frames,
                                 end, end], "<i4").tobytes()
    (tmp_path / "m.md2").write_bytes(header + skins + st + tri + frame)
    mesh, names = read_md2(tmp_path / "m.md2")
    assert names == ["models/skin.png"]
    np.testing.assert_allclose(np.sort(mesh.vertices[:, 0]), [1.0, 1.0, 2.0])
    np.testing.assert_allclose(mesh.vertices.max(axis=0), [2.0, 2.0, 0.0])
    assert len(mesh.faces) == 1
    # uv = st / skin size with v flipped; each vertex keeps its own st.
    by_position = {tuple(v): tuple(uv) for v, uv in zip(mesh.vertices.round(3), mesh.visual.uv)}
    assert by_position[(1.0, 0.0, 0.0)] == (0.0, 1.0) and by_position[(2.0, 0.0, 0.0)] == (1.0, 1.0)
    assert by_position[(1.0, 2.0, 0.0)] == (0.0, 0.0)


def _g3d_bytes(frames: np.ndarray, uv: np.ndarray, faces: np.ndarray, texture: bytes = b"skin.png") -> bytes:
    """A one-mesh MegaGlest G3D v4 file: header, mesh header, diffuse texture name, data."""
    num_frames, num_vertices, _ = frames.shape
    header = b"G3D" + bytes([4]) + np.array([1], "<u2").tobytes() + bytes([0])
    mesh = b"body".ljust(64, b"\0") + np.array([num_frames, num_vertices, faces.size], "<u4").tobytes()
    mesh += np.array([0.6] * 3 + [0.3] * 3 + [10.0, 1.0], "<f4").tobytes() + np.array([0, 1], "<u4").tobytes()
    mesh += texture.ljust(64, b"\0")
    normals = np.zeros_like(frames)
    return (header + mesh + frames.astype("<f4").tobytes() + normals.astype("<f4").tobytes()
            + uv.astype("<f4").tobytes() + faces.astype("<u4").tobytes())


def test_g3d_reader_hand_built(tmp_path: Path) -> None:
    """First frame, texture coordinates as stored, the diffuse texture name; a file that does not parse to
    its exact length (or another version) is refused; convert_object turns it +Z up with its texture."""
    box = trimesh.creation.box(extents=(0.5, 2.0, 1.0))  # tallest along +Y, the game's up axis
    frame0 = np.asarray(box.vertices, np.float32)
    frames = np.stack([frame0, frame0 + 5.0])
    uv = (frame0[:, :2] - frame0[:, :2].min(0)) / np.ptp(frame0[:, :2], axis=0)
    faces = np.asarray(box.faces)
    data = _g3d_bytes(frames, uv, faces)
    (tmp_path / "m.g3d").write_bytes(data)
    [(mesh, texture)] = read_g3d(tmp_path / "m.g3d")
    assert texture == "skin.png"
    np.testing.assert_array_equal(mesh.vertices, frame0)
    np.testing.assert_array_equal(mesh.faces, faces)
    np.testing.assert_array_equal(mesh.visual.uv, uv)
    (tmp_path / "short.g3d").write_bytes(data[:-4])
    with pytest.raises(ValueError, match="G3D"):
        read_g3d(tmp_path / "short.g3d")
    (tmp_path / "v3.g3d").write_bytes(data[:3] + bytes([3]) + data[4:])
    with pytest.raises(ValueError, match="version 3"):
        read_g3d(tmp_path / "v3.g3d")
    Image.fromarray(np.full((8, 8, 3), (200, 30, 30), np.uint8)).save(tmp_path / "skin.png")
    source = SOURCES["megaglest-data"]
    converted = convert_object(tmp_path / "m.g3d", up_axis=source.up_axis)
    extents = converted.bounds[1] - converted.bounds[0]
    assert np.argmax(extents) == 2 and extents.max() == pytest.approx(1.0)  # the game's +Y is now +Z
    image = converted.visual.material.baseColorTexture or converted.visual.material.image
    assert np.asarray(image.convert("RGB"))[0, 0].tolist() == [200, 30, 30]


def test_megaglest_source_keeps_one_model_per_unit() -> None:
    """Animation and state variants are excluded by the source's pattern; the standing/base models stay."""
    import re

    exclude = re.compile(SOURCES["megaglest-data"].exclude, re.I)
    kept = ["megapack/factions/egypt/units/anubis_warrior/models/anubis_standing.g3d",
            "megapack/factions/tech/units/barracks/models/barracks.g3d", "forest/models/tree2.g3d",
            "megapack/resources/gold/models/gold.g3d", "megapack/factions/magic/units/golem/models/stone_model.g3d"]
    dropped = ["megapack/factions/egypt/units/anubis_warrior/models/anubis_walking.g3d",
               "megapack/factions/egypt/units/anubis_warrior/models/anubis_dying.g3d",
               "megapack/factions/tech/units/barracks/models/barracks_construction.g3d",
               "megapack/factions/tech/units/worker/models/worker_idle2.g3d",
               "megapack/factions/tech/units/worker/models/worker_attacking.g3d",
               "megapack/factions/egypt/units/slave/models/slave_harvesting_wood.g3d",
               "megapack/factions/tech/units/worker/models/worker_standing_loaded_wood.g3d"]
    assert not [r for r in kept if exclude.search(r)]
    assert all(exclude.search(r) for r in dropped)


def test_flightgear_source_finds_one_model_per_object(tmp_path: Path) -> None:
    """The source's path filter and exclusions, run by the real file discovery on empty stand-in files: scenery
    models and the chosen aircraft-folder models stay; lights, fences, grass, masts, cockpit parts, shadows,
    Iceland's lighthouses (light-sector discs) and XML wrappers do not."""
    import dataclasses

    from zero1to3.data.corpus import _iter_files

    kept = ["Models/Airport/Fire_Hangar.ac", "Models/Transport/bulldozer.ac", "Models/Maritime/Civilian/Lighthouse.ac",
            "Models/Aircraft/dc3_lowpoly.ac", "Models/Trees/platanus_hispanica6m.ac",
            "Objects/w160n20/w158n21/phnl1.ac",
            "Aircraft/c172p/Models/c172p.ac", "Aircraft/c172p/Models/Exterior/chock/chock.ac",
            "Aircraft/c172p/Models/Interior/Baggages/suitcase1.ac", "Aircraft/Generic/Human/Models/caleb.ac",
            "Aircraft/Generic/Pilot/WWII/pilot.ac", "Aircraft/ufo/Models/ufo.ac"]
    dropped = ["Models/Effects/RedLight5000.ac", "Models/Boundaries/Fence_12m.ac", "Models/Trees/grass_Rembr.ac",
               "Models/Airport/Approach_lights_1.ac", "Models/Airport/Apronlamp22m180deg.ac",
               "Models/Airport/egkk_light_mast.ac", "Models/Airport/KSFO_light.ac", "Models/Airport/apt_light-ba.ac",
               "Models/StreetFurniture/TNCB_DualLightPole.ac", "Models/Agriculture/PolyFrame5x32.ac",
               "Objects/w030n60/w022n63/Selvogur_Lighthouse.ac", "Objects/w030n60/w024n64/Krossnesviti.ac",
               "Aircraft/c172p/Models/Effects/shadow/3dskishadow.ac", "Aircraft/c172p/Models/Interior/Yoke/yoke.ac",
               "Aircraft/c172p/Models/Interior/Panel/Instruments/VSI/VSI.ac", "Aircraft/Generic/sprite.ac",
               "Aircraft/Generic/Human/Models/outfit/coat-m.ac", "Aircraft/Instruments-3d/alt/alt.ac",
               "Aircraft/ufo/Models/marker.ac", "Models/Airport/Fire_Hangar.xml"]
    for rel in kept + dropped:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("AC3Db\n")
    source = dataclasses.replace(SOURCES["flightgear-data-base"],
                                 roots=tuple(str(tmp_path / r) for r in ("Models", "Objects", "Aircraft")))
    found = {str(Path(root).name) + "/" + rel for rel, _, root in _iter_files(source, tmp_path / "x")}
    assert found == set(kept)


def _ac3d_text(parts: list[tuple[trimesh.Trimesh, str]]) -> str:
    """An AC3D file (+Y up, as FlightGear's): one textured OBJECT poly per (mesh, texture file) part."""
    lines = ['AC3Db', 'MATERIAL "white" rgb 1 1 1  amb 0.2 0.2 0.2  emis 0 0 0  spec 0 0 0  shi 10  trans 0',
             "OBJECT world", f"kids {len(parts)}"]
    for i, (mesh, texture) in enumerate(parts):
        uv = (mesh.vertices[:, [0, 2]] - mesh.vertices[:, [0, 2]].min(0)) / np.ptp(mesh.vertices[:, [0, 2]], axis=0)
        lines += ["OBJECT poly", f'name "part{i}"', f'texture "{texture}"', f"numvert {len(mesh.vertices)}"]
        lines += [" ".join(f"{c:.4f}" for c in v) for v in mesh.vertices]
        lines.append(f"numsurf {len(mesh.faces)}")
        for face in mesh.faces:
            lines += ["SURF 0x10", "mat 0", "refs 3"] + [f"{k} {uv[k, 0]:.4f} {uv[k, 1]:.4f}" for k in face]
        lines.append("kids 0")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(__import__("shutil").which("assimp") is None, reason="needs assimp-utils")
def test_flightgear_ac3d_hand_built(tmp_path: Path) -> None:
    """A hand-built AC3D model read with the FlightGear source's settings: +Y up becomes +Z up; two parts with
    their own textures keep their colours in the packed texture (not inverted); a half-transparent texture
    (a baked shadow) stays transparent; a pole (second side < 8% of the height) is refused as thin."""
    source = SOURCES["flightgear-data-base"]
    body = trimesh.creation.box(extents=(1.0, 2.0, 1.0))  # tallest along +Y
    shadow = trimesh.creation.box(extents=(3.0, 0.05, 3.0))
    shadow.apply_translation((0.0, -1.0, 0.0))
    Image.fromarray(np.full((8, 8, 3), (230, 200, 40), np.uint8)).save(tmp_path / "paint.png")
    Image.fromarray(np.full((8, 8, 4), (10, 10, 10, 90), np.uint8)).save(tmp_path / "shadow.png")
    (tmp_path / "house.ac").write_text(_ac3d_text([(body, "paint.png"), (shadow, "shadow.png")]))
    mesh = convert_object(tmp_path / "house.ac", up_axis=source.up_axis, min_side_ratio=source.min_side_ratio,
                          keep_texture_alpha=source.keep_texture_alpha)
    extents = mesh.bounds[1] - mesh.bounds[0]
    assert extents.max() == pytest.approx(1.0) and extents[2] == pytest.approx(2.025 / 3.0, abs=1e-3)  # +Y is now +Z
    texels = np.asarray(mesh.visual.material.baseColorTexture.convert("RGBA")).reshape(-1, 4)
    colours = {tuple(t) for t in texels if t[3] > 0}
    assert (230, 200, 40, 255) in colours and (10, 10, 10, 90) in colours
    assert not any(abs(int(c[0]) - 26) < 3 and abs(int(c[1]) - 56) < 3 for c in colours)  # 256 - x: inverted
    pole = trimesh.creation.box(extents=(0.1, 2.0, 0.1))
    (tmp_path / "pole.ac").write_text(_ac3d_text([(pole, "paint.png")]))
    with pytest.raises(ValueError, match="thin"):
        convert_object(tmp_path / "pole.ac", up_axis=source.up_axis, min_side_ratio=source.min_side_ratio)
    assert convert_object(tmp_path / "pole.ac", up_axis=source.up_axis).faces.shape == (12, 3)


def test_limit_group_members_keeps_the_first_of_a_group() -> None:
    """Only the limited package's groups are capped, per split, in record order."""
    from zero1to3.data.corpus import ObjectRecord, limit_group_members

    def row(i: int, package: str, group: str, split: str = "train") -> ObjectRecord:
        return ObjectRecord(id=f"{package}_{i}", package=package, version="1", source_path=f"m{i}.ac", licence="",
                            file="", faces=12, vertices=8, textured=False, vertex_colours=True, sha256="",
                            geometry_hash=str(i), category="", group=group, split=split)

    rows = [row(i, "fg", "g1") for i in range(5)] + [row(5, "fg", "g2"), row(6, "fg", "g1", "excluded")]
    rows += [row(i, "other", "g1") for i in range(7, 11)]
    limit_group_members(rows, {"fg": 3})
    assert [r.split for r in rows[:5]] == ["train"] * 3 + ["excluded"] * 2 and "near-copy" in rows[4].note
    assert rows[5].split == "train" and rows[6].note == ""
    assert all(r.split == "train" for r in rows[7:])


def test_openarena_source_keeps_items_and_map_objects(tmp_path: Path) -> None:
    """The source's exclusions, run by the real discovery on a stand-in .pk3 (a zip): weapons, ammo, armour,
    health crosses, flags and map objects stay; players, hits, flashes, barrels, LOD copies, bubbles, glow-shader
    power-ups, grass and ASE files do not; an object in two archives is listed once per archive (the build keeps
    the first)."""
    import dataclasses
    import zipfile

    from zero1to3.data.corpus import _iter_files

    kept = ["models/weapons2/bfg/bfg.md3", "models/weapons/vulcan/vulcan.md3", "models/powerups/ammo/bfgam.md3",
            "models/powerups/armor/armor_red.md3", "models/powerups/health/large_cross.md3",
            "models/powerups/holdable/medkit.md3", "models/flags/b_flag.md3", "models/map/forklift.md3",
            "models/mapobjects/czest2ctf/gargoyle.md3"]
    dropped = ["models/players/sarge/upper.md3", "models/weaphits/bfg.md3", "models/gibs/skull.md3",
               "models/weapons2/bfg/bfg_flash.md3", "models/weapons2/bfg/bfg_barrel.md3",
               "models/weapons2/bfg/bfg_hand.md3", "models/weapons2/railgun/railgun_1.md3",
               "models/weapons2/shells/m_shell.md3", "models/powerups/health/large_sphere.md3",
               "models/powerups/instant/quad.md3", "models/powerups/instant/quad_ring.md3",
               "models/powerups/doubler.md3", "models/powerups/guard_player.md3", "models/dpoints/a_red.md3",
               "models/mapobjects/out/grass1.md3", "models/mapobjects/palmier/palm_leafs1.md3",
               "models/mapobjects/cosmoflash/menhir1.md3", "models/mapobjects/lamp/lamp.ase"]
    with zipfile.ZipFile(tmp_path / "pak0.pk3", "w") as archive:
        for name in kept + dropped + ["models/weapons2/bfg/bfgbody.tga", "scripts/bfg.shader"]:
            archive.writestr(name, b"IDP3")
    with zipfile.ZipFile(tmp_path / "pak1.pk3", "w") as archive:
        archive.writestr("models/weapons2/bfg/bfg.md3", b"IDP3")
    source = dataclasses.replace(SOURCES["openarena-data"],
                                 roots=(str(tmp_path / "pak1.pk3"), str(tmp_path / "pak0.pk3")))
    found = [rel for rel, _, _ in _iter_files(source, tmp_path / "extract")]
    assert sorted(found) == sorted(kept + ["models/weapons2/bfg/bfg.md3"])
    assert (tmp_path / "extract" / "openarena-data" / "pak0" / "models/weapons2/bfg/bfgbody.tga").is_file()


def _md3_bytes(surfaces: list[tuple[str, str, trimesh.Trimesh, np.ndarray]]) -> bytes:
    """A one-frame Quake III MD3 file: (surface name, shader, mesh, uv) per surface; positions stored in
    1/64 units as the format does, normals left zero."""
    import struct

    def name64(text: str) -> bytes:
        return text.encode().ljust(64, b"\0")

    blobs = []
    for name, shader, mesh, uv in surfaces:
        vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces, "<i4")
        nv, nt = len(vertices), len(faces)
        o_tri = 4 + 64 + 40
        o_shader, o_st = o_tri + 12 * nt, o_tri + 12 * nt + 68
        o_xyz = o_st + 8 * nv
        blob = b"IDP3" + name64(name) + struct.pack("<10i", 0, 1, 1, nv, nt, o_tri, o_shader, o_st, o_xyz,
                                                   o_xyz + 8 * nv)
        xyz = np.round(vertices * 64).astype("<i2")
        blob += (faces.tobytes() + name64(shader) + struct.pack("<i", 0) + np.asarray(uv, "<f4").tobytes()
                 + np.concatenate([xyz, np.zeros((nv, 1), "<i2")], axis=1).tobytes())
        blobs.append(blob)
    points = np.concatenate([m.vertices for _, _, m, _ in surfaces])
    frame = struct.pack("<10f", *points.min(0), *points.max(0), 0, 0, 0, 1.0) + b"frame".ljust(16, b"\0")
    o_frames = 4 + 4 + 64 + 36
    o_surfaces = o_frames + len(frame)
    return (b"IDP3" + struct.pack("<i", 15) + name64("test") + struct.pack(
        "<9i", 0, 1, 0, len(surfaces), 0, o_frames, o_surfaces, o_surfaces, o_surfaces + sum(map(len, blobs)))
            + frame + b"".join(blobs))


@pytest.mark.skipif(__import__("shutil").which("assimp") is None, reason="needs assimp-utils")
def test_openarena_md3_hand_built_finds_each_surface_texture(tmp_path: Path) -> None:
    """A hand-built two-surface MD3 (+Z up) whose shaders name textures by another extension or none (as
    Quake's do): each surface gets its own image, found by name next to the model; with the source's up axis
    (assimp writes MD3 +Y up) the model stands +Z up again."""
    source = SOURCES["openarena-data"]
    pillar = trimesh.creation.box(extents=(1.0, 1.0, 3.0))
    plinth = trimesh.creation.box(extents=(2.0, 2.0, 0.5))
    plinth.apply_translation((0.0, 0.0, -1.75))
    half = np.full((len(pillar.vertices), 2), 0.5)
    (tmp_path / "statue.md3").write_bytes(_md3_bytes([("pillar", "models/statue/stone_a.tga", pillar, half),
                                                      ("plinth", "models/statue/stone_b", plinth, half)]))
    Image.fromarray(np.full((8, 8, 3), (220, 40, 30), np.uint8)).save(tmp_path / "stone_a.png")
    Image.fromarray(np.full((8, 8, 3), (30, 60, 210), np.uint8)).save(tmp_path / "stone_b.jpg", quality=100)
    mesh = convert_object(tmp_path / "statue.md3", up_axis=source.up_axis)
    extents = mesh.bounds[1] - mesh.bounds[0]
    assert np.argmax(extents) == 2 and extents.max() == pytest.approx(1.0)
    texels = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).reshape(-1, 3).astype(int)
    sampled = texels[np.abs(texels - texels.mean(axis=1, keepdims=True)).sum(axis=1) > 60]
    assert (np.abs(sampled - [220, 40, 30]).sum(axis=1) < 12).any()
    assert (np.abs(sampled - [30, 60, 210]).sum(axis=1) < 12).any()


def test_flightgear_models_and_ai_sources_keep_one_model_per_object(tmp_path: Path) -> None:
    """flightgear-data-models and flightgear-data-ai on empty stand-in files: buildings, ships, vehicles and AI
    aircraft stay; clouds, planets, light effects and navigation lights, carrier landing aids, flags, loose parts,
    files whose name the base package already ships and a second same-name copy inside the package do not."""
    import dataclasses

    from zero1to3.data.corpus import _iter_files

    base = tmp_path / "base"
    for rel in ("Scenery/Models/Commercial/Office15x15.ac", "Aircraft/c172p/Models/c172p.ac"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("AC3Db\n")
    models_kept = ["Agriculture/silo.ac", "Buildings/factory.ac", "Geometry/Nimitz/nimitz.ac",
                   "Geometry/Nimitz/Models/mule-11.ac", "Geometry/rocket.ac", "Maritime/Ice/iceberg1.ac",
                   "Maritime/Misc/left_bank_beacon.ac", "Residential/Terrace3-1.ac", "Aircraft/H-60.ac"]
    models_dropped = ["Buildings/silo.ac",  # the same model again, later in this package
                      "Commercial/Office15x15.ac",  # the base package ships this name
                      "Weather/cumulonimbus1.ac", "Astro/earth_N1.ac", "Autopush/cursor_sharp.ac",
                      "Effects/GreenLight6000.ac", "Volcanoes/Kilauea/kilauea.ac",
                      "Geometry/Nimitz/Models/light-red.ac",
                      "Geometry/Nimitz/Models/flols.ac", "Geometry/Nimitz/Models/beacon.ac", "Geometry/Nimitz/Golf.ac",
                      "Geometry/Nimitz/truman.ac", "Geometry/Nimitz/vinson-rembrandt-lighting.ac",
                      "Geometry/Nimitz/truman-parks-and-objects.ac", "Geometry/KC-130/light/flash.ac",
                      "Geometry/KC-130/Propellers/propeller.ac", "Geometry/puff.ac", "Geometry/Crater/crater.ac",
                      "Geometry/Clemenceau/hull.ac", "Aircraft/strobe.ac", "Aircraft/towropes.ac",
                      "Agriculture/groundtile.ac", "Airport/Jetway/glass.ac",
                      "Airport/Pushback/Goldhofert-warning-light.ac", "Residential/banlieue-ba.ac"]
    ai_kept = ["747/Models/744.ac", "A320/Models/A320.ac", "Lightning/Models/lightning-f1a.ac",
               "flash2a/Models/flash2a.ac", "balloon/Models/balloon2.ac", "F-4/F-4_lowpoly.ac",
               "seahawk/Models/SeaHawk-FGA6-WV859.ac"]
    ai_dropped = ["A330-MRTT/Models/lights/GreenLight.ac", "Cessna337/Models/Lights/Beacon.ac",
                  "Diamond-Da42/Models/light/landing-light-cone.ac", "Spitfire/Models/light-red-flare.ac",
                  "BAe-125/Models/lights/flash.ac", "c182/Models/lights.ac", "c182/Models/toggle-white.ac",
                  "c182/Models/WhiteLight1.ac", "Lightning/Models/exhaust.ac", "Dragonfly/Models/Banner.ac",
                  "A330-MRTT/Models/refueling/probe.ac", "Cessna208Caravan/Models/wheels.ac",
                  "SpaceShuttle/SSME.ac", "Buccaneer/Models/buccaneer-low-poly.ac",
                  "c172/Models/c172p.ac",  # the base package's aircraft folder has this name
                  "Ferry/FerryBoat1.ac"]  # flightgear-data-models has this name
    models, ai = tmp_path / "Models", tmp_path / "AI" / "Aircraft"
    for root, rels in ((models, models_kept + models_dropped + ["Maritime/Civilian/FerryBoat1.ac"]),
                       (ai, ai_kept + ai_dropped)):
        for rel in rels:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text("AC3Db\n")
    base_roots = (str(base / "Scenery/Models"), str(base / "Scenery/Objects"), str(base / "Aircraft"))
    source = dataclasses.replace(SOURCES["flightgear-data-models"], roots=(str(models),), names_taken_by=base_roots)
    found = {rel for rel, _, _ in _iter_files(source, tmp_path / "x")}
    assert found == set(models_kept) | {"Maritime/Civilian/FerryBoat1.ac"}
    source = dataclasses.replace(SOURCES["flightgear-data-ai"], roots=(str(ai),),
                                 names_taken_by=base_roots + (str(models),))
    found = {rel for rel, _, _ in _iter_files(source, tmp_path / "x")}
    assert found == set(ai_kept)
    assert {"flightgear-data-models", "flightgear-data-ai"} <= set(SOURCES)
    from zero1to3.data.corpus import DEFAULT_SPLITS

    assert DEFAULT_SPLITS["flightgear-data-models"] == DEFAULT_SPLITS["flightgear-data-ai"] == "train"


@pytest.mark.skipif(__import__("shutil").which("assimp") is None, reason="needs assimp-utils")
def test_flightgear_ai_texture_from_livery_folder(tmp_path: Path) -> None:
    """An AI aircraft's .ac names a texture that lives only in ``Textures/<livery>/``: the source's texture folders
    find ``Textures/Default`` first, else the first livery folder in name order that has the file."""
    source = SOURCES["flightgear-data-ai"]
    body = trimesh.creation.box(extents=(1.0, 0.6, 3.0))
    plane = tmp_path / "737" / "Models" / "737.ac"
    plane.parent.mkdir(parents=True)
    plane.write_text(_ac3d_text([(body, "737-tex.png")]))
    for livery, colour in (("Alpha", (10, 200, 10)), ("Beta", (10, 10, 200)), ("Default", (200, 10, 10))):
        (tmp_path / "737" / "Textures" / livery).mkdir(parents=True)
        folder = tmp_path / "737" / "Textures" / livery
        Image.fromarray(np.full((8, 8, 3), colour, np.uint8)).save(folder / "737-tex.png")

    def colour() -> list[int]:
        mesh = convert_object(plane, up_axis=source.up_axis, keep_texture_alpha=source.keep_texture_alpha,
                              texture_folders=source.texture_folders)
        return np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))[0, 0].tolist()

    assert colour() == [200, 10, 10]
    (tmp_path / "737" / "Textures" / "Default" / "737-tex.png").unlink()
    assert colour() == [10, 200, 10]
    untextured = convert_object(plane, up_axis=source.up_axis)  # without the livery folders: no texture found
    assert getattr(untextured.visual, "material", None) is None or untextured.visual.material.baseColorTexture is None


def _spm_box(path: Path, extents=(1.0, 1.0, 1.0), centre=(0.0, 0.0, 0.0), texture: str = "wood.png",
             uv_offset: float = 0.0) -> None:
    """A one-section SPM box (file axes) with per-face-corner UVs in [0, 1] (+ ``uv_offset``: tiling)."""
    from test_data_spm import spm_from_sections

    box = trimesh.creation.box(extents=extents)
    box.apply_translation(centre)
    points = box.vertices[box.faces].reshape(-1, 3)
    faces = np.arange(len(points)).reshape(-1, 3)
    uv = np.tile([[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]], (len(box.faces), 1)) + uv_offset
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(spm_from_sections([(points, faces, uv if texture else None, texture)]))


def _stk_object(folder: Path, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "node.xml").write_text(f'<?xml version="1.0"?>\n<scene>\n{body}\n</scene>\n')


def test_stk_source_finds_library_nodes_karts_and_items(tmp_path: Path) -> None:
    """supertuxkart-data: one object per library node, kart and item; effect nodes, the rail landscape, the
    string-of-flags nodes, LOD copies of items, the swatter's animation copy, the bubble-gum shields and all of
    tracks/ are not read."""
    import dataclasses

    from zero1to3.data.corpus import DEFAULT_SPLITS, _iter_files

    data = tmp_path / "data"
    kept = ["library/stklib_bench_a/node.xml", "library/hd_palmTree_a/node.xml", "karts/tux/kart.xml",
            "models/gift-box.spm", "models/nitrotank-big.spm"]
    dropped = ["library/gfx_fireworkTube_a/node.xml", "library/meta_railLandscape_a/node.xml",
               "library/stklib_partyFlags_a/node.xml", "library/stklib_boxGrid_a/node.xml",
               "models/gift-box-low.spm", "models/swatter_anim.spm", "models/bubblegum_shield.spm",
               "tracks/hacienda/house.spm", "library/stklib_bench_a/stklib_bench_a.spm", "karts/tux/tux.spm"]
    for rel in kept + dropped:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("x")
    source = dataclasses.replace(SOURCES["supertuxkart-data"], roots=(str(data),))
    assert {rel for rel, _, _ in _iter_files(source, tmp_path / "x")} == set(kept)
    assert DEFAULT_SPLITS["supertuxkart-data"] == "train" and source.up_axis == "y"


def test_stk_node_keeps_the_finest_lod_drops_physics_and_places_parts(tmp_path: Path) -> None:
    """A library node: the LOD group's smallest ``lod_distance`` model is drawn at its instance's place, a
    ``physicsonly`` hull is not, a plain object is placed by xyz/hpr/scale (Irrlicht's rotation, file axes), a
    nested library node by its own transform; read_spm's mirror (X negated) applies to the placement too."""
    from zero1to3.data.corpus import _load_stk_parts, stk_node_models, stk_placement

    library = tmp_path / "data" / "library"
    node = library / "stklib_well_a"
    _spm_box(node / "well_high.spm", (1.0, 1.0, 1.0))
    _spm_box(node / "well_low.spm", (1.0, 1.0, 1.0), texture="")
    _spm_box(node / "well_physics.spm", (5.0, 5.0, 5.0))
    _spm_box(node / "bucket.spm", (0.2, 0.4, 0.2))
    _spm_box(library / "stklib_rope_a" / "rope.spm", (0.1, 0.1, 0.1))
    _stk_object(library / "stklib_rope_a", '<object type="animation" model="rope.spm" xyz="0 0 0" '
                                           'interaction="ghost"/>')
    _stk_object(node, """<lod><group name="well">
  <static-object lod_distance="120" lod_group="well" model="well_low.spm" xyz="0 0 0" interaction="ghost"/>
  <static-object lod_distance="40" lod_group="well" model="well_high.spm" xyz="0 0 0" interaction="ghost"/>
 </group></lod>
 <object id="well_main" type="animation" xyz="0.00 0.50 0.00" hpr="0 0 0" scale="1 1 1" interaction="ghost"
   lod_instance="true" lod_group="well"/>
 <object id="hull" type="animation" model="well_physics.spm" xyz="0 0 0" interaction="physicsonly"/>
 <object id="bucket" type="animation" model="bucket.spm" xyz="2.00 0.20 0.00" hpr="0.0 90.0 0.0"
   scale="2.00 2.00 2.00" interaction="ghost"/>
 <light xyz="0 3 0" distance="5" color="255 255 255"/>
 <library name="stklib_rope_a" id="rope_proxy" xyz="0.00 3.00 1.00" hpr="0 0 0" scale="1 1 1"/>""")
    models = stk_node_models(node)
    assert [f.name for f, _ in models] == ["well_high.spm", "bucket.spm", "rope.spm"]
    # Irrlicht's rotation about Y by +90 degrees takes +X to -Z (and +Z to +X)
    np.testing.assert_allclose(stk_placement(None, "0 90 0")[:3, :3] @ [1, 0, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(models[2][1][:3, 3], [0, 3, 1])

    textures: dict[str, str] = {}
    folders: list[Path] = [node]
    parts = _load_stk_parts(node / "node.xml", textures, folders)
    centres = [p.bounds.mean(axis=0) for p in parts]
    np.testing.assert_allclose(centres[0], [0.0, 0.5, 0.0], atol=1e-6)  # the fine LOD (textured), at y 0.5
    np.testing.assert_allclose(centres[1], [-2.0, 0.2, 0.0], atol=1e-6)  # x 2 in the file: -2 right-handed
    np.testing.assert_allclose(np.sort(parts[1].extents), [0.4, 0.4, 0.8], atol=1e-6)  # scaled by 2
    np.testing.assert_allclose(centres[2], [0.0, 3.0, 1.0], atol=1e-6)
    assert textures == {"wood.png": "wood.png"} and library / "stklib_rope_a" in folders
    assert all(p.volume > 0 for p in parts)  # still outward-wound after the placements


def test_stk_kart_is_its_body_with_four_wheels(tmp_path: Path) -> None:
    """A kart: body plus the wheels at their kart.xml positions (file axes, mirrored with the meshes), and a
    speed-weighted object without a bone; headlights and objects on other bones are left out; converted
    upright (+Y up in the files) with its texture from the kart folder."""
    from zero1to3.data.corpus import _load_stk_parts, stk_kart_models

    kart = tmp_path / "data" / "karts" / "tux"
    _spm_box(kart / "tux.spm", (0.8, 0.4, 1.4), centre=(0.0, 0.4, 0.0))
    for name in ("front-left", "front-right", "rear-left", "rear-right"):
        _spm_box(kart / f"wheel-{name}.spm", (0.1, 0.3, 0.3))
    _spm_box(kart / "headlight.spm", (0.3, 0.3, 3.0))
    _spm_box(kart / "tail.spm", (0.1, 0.1, 0.5))
    _spm_box(kart / "carpet.spm", (1.0, 0.05, 1.6))
    Image.fromarray(np.full((8, 8, 3), (200, 20, 20), np.uint8)).save(kart / "wood.png")
    (kart / "kart.xml").write_text("""<?xml version="1.0"?>
<kart name="Tux" version="3" model-file="tux.spm">
  <wheels>
    <front-left position="-0.40 0.15 0.60" model="wheel-front-left.spm"/>
    <front-right position="0.40 0.15 0.60" model="wheel-front-right.spm"/>
    <rear-left position="-0.45 0.15 -0.55" model="wheel-rear-left.spm"/>
    <rear-right position="0.45 0.15 -0.55" model="wheel-rear-right.spm"/>
  </wheels>
  <speed-weighted-objects>
    <object position="0 0.3 -0.8" rotation="0 0 0" scale="1 1 1" bone="Pelvis" model="tail.spm"/>
    <object position="0 0.02 0" rotation="0 0 0" scale="1 1 1" bone="root" model="carpet.spm"/>
  </speed-weighted-objects>
  <headlights>
    <object position="-0.2 0.1 0.7" rotation="0 0 0" scale="1 1 1" bone="Car" model="headlight.spm"/>
  </headlights>
</kart>
""")
    models = stk_kart_models(kart / "kart.xml")
    assert [f.name for f, _ in models] == ["tux.spm", "wheel-front-left.spm", "wheel-front-right.spm",
                                          "wheel-rear-left.spm", "wheel-rear-right.spm", "carpet.spm"]
    parts = _load_stk_parts(kart / "kart.xml", {}, [kart])
    np.testing.assert_allclose(parts[1].bounds.mean(axis=0), [0.40, 0.15, 0.60], atol=1e-6)  # x mirrored
    np.testing.assert_allclose(parts[4].bounds.mean(axis=0), [-0.45, 0.15, -0.55], atol=1e-6)
    mesh = convert_object(kart / "kart.xml", up_axis="y", reader="stk-nodes")
    assert np.argmax(mesh.extents) == 1  # the kart's length (file Z) is horizontal: Y of the file is up
    colours = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB")).reshape(-1, 3)
    assert (colours == (200, 20, 20)).all(axis=1).any()


def test_many_textures_and_tiling_parts_stay_drawn(tmp_path: Path) -> None:
    """An object of many parts with their own textures packs into one atlas without losing the small ones to
    the atlas's transparent padding (the atlas is shrunk to 512 px); a tiling part whose triangles each lie
    within one repeat keeps its texture (shifted), one that spans repeats gets its alpha-weighted mean colour."""
    node = tmp_path / "data" / "library" / "stklib_shed_a"
    body = []
    rng = np.random.default_rng(0)
    node.mkdir(parents=True)
    for i in range(14):
        name = f"tex{i}.png"
        size = 512 if i < 10 else 64
        pixels = rng.integers(0, 255, (size, size, 4)).astype(np.uint8)
        pixels[..., 3] = 255
        image = Image.fromarray(pixels)  # RGBA (opaque) and RGB textures mixed
        (image if i % 2 else image.convert("RGB")).save(node / name)
        _spm_box(node / f"p{i}.spm", (0.3, 0.3, 0.3), centre=(i * 0.4, 0.0, 0.0), texture=name)
        body.append(f'<object type="animation" model="p{i}.spm" xyz="0 0 0" interaction="ghost"/>')
    leaf = np.zeros((16, 16, 4), np.uint8)
    leaf[4:12, 4:12] = (20, 200, 20, 255)  # green, the rest transparent black
    Image.fromarray(leaf, "RGBA").save(node / "leaf.png")
    _spm_box(node / "tiled.spm", (0.3, 0.3, 0.3), centre=(0.0, 1.0, 0.0), texture="leaf.png", uv_offset=2.0)
    _spm_box(node / "wall.spm", (0.3, 0.3, 0.3), centre=(0.0, 2.0, 0.0), texture="leaf.png", uv_offset=0.6)
    body += ['<object type="animation" model="tiled.spm" xyz="0 0 0" interaction="ghost"/>',
             '<object type="animation" model="wall.spm" xyz="0 0 0" interaction="ghost"/>']
    _stk_object(node, "\n".join(body))
    mesh = convert_object(node / "node.xml", up_axis="y", reader="stk-nodes")
    image = mesh.visual.material.baseColorTexture
    assert max(image.size) <= 512
    texels = np.asarray(image.convert("RGBA"))
    uv = np.asarray(mesh.visual.uv)
    centroid = uv[mesh.faces].mean(axis=1)
    x = np.clip((centroid[:, 0] * image.size[0]).astype(int), 0, image.size[0] - 1)
    y = np.clip(((1 - centroid[:, 1]) * image.size[1]).astype(int), 0, image.size[1] - 1)
    assert len(mesh.faces) == 16 * 12 and (texels[y, x, 3] >= 128).all()  # every part drawn
    # parts in node order: the tiled part (last but one) samples the leaf's green square, shifted into [0, 1];
    # the wall (last, spanning repeats) is the leaf's mean colour weighted by alpha: green, not darkened
    for rgb in (texels[y[-24:], x[-24:], :3].astype(int)):
        assert rgb[1] > 150 and rgb[0] < 60 and rgb[2] < 60


def test_minetest_mod_sources_keep_one_model_per_object(tmp_path: Path) -> None:
    """minetest-mod-*: the source's exclusions, run by the real file discovery on stand-in files: furniture,
    lamps and devices under models/ stay; low-poly copies, open/on states, doors, flat planes, primitives, pipe
    junctions, worn armour, the broken desk fan and files outside models/ do not. minetest-data no longer
    reads mods/ (the mod packages' files)."""
    import dataclasses

    from zero1to3.data.corpus import DEFAULT_SPLITS, _iter_files

    kept = ["homedecor_kitchen/models/homedecor_refrigerator.obj", "homedecor_misc/models/homedecor_piano.obj",
            "homedecor_lighting/models/homedecor_table_lamp.obj", "lavalamp/models/lavalamp.obj",
            "homedecor_books/models/homedecor_book.obj", "pipeworks/models/pipeworks_pump.obj",
            "3d_armor_stand/models/3d_armor_stand.obj", "maidroid/models/maidroid.b3d"]
    dropped = ["pipeworks/models/pipeworks_pump_lowpoly.obj", "homedecor_books/models/homedecor_book_open.obj",
               "homedecor_bathroom/models/homedecor_toilet_open.obj", "mesecons/models/jeija_wall_lever_on.obj",
               "homedecor_3d_extras/models/homedecor_door_fancy_a.obj",
               "homedecor_3d_extras/models/homedecor_3d_trapdoor.obj",
               "homedecor_pictures_and_paintings/models/homedecor_painting.obj",
               "homedecor_office/models/homedecor_calendar.obj",
               "homedecor_fences/models/homedecor_fence_chainlink.obj",
               "homedecor_misc/models/homedecor_banister_horizontal.obj", "homedecor_common/models/homedecor_cube.obj",
               "homedecor_common/models/homedecor_slope.obj", "pipeworks/models/pipeworks_pipe_3.obj",
               "3d_armor/models/3d_armor_character.b3d", "3d_armor_stand/models/3d_armor_entity.obj",
               "homedecor_climate_control/models/homedecor_desk_fan.b3d", "fake_fire/models/fancy_fire.obj",
               "homedecor_kitchen/models/homedecor_kitchen_cabinet.obj",
               "homedecor_misc/models/homedecor_dartboard.obj",
               "homedecor_misc/textures/homedecor_piano.obj"]
    for rel in kept + dropped:
        (tmp_path / "mods" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mods" / rel).write_text("v 0 0 0\n")
    source = dataclasses.replace(SOURCES["minetest-mod-homedecor"], roots=(str(tmp_path / "mods"),))
    assert {rel for rel, _, _ in _iter_files(source, tmp_path / "x")} == set(kept)
    for name in ("homedecor", "pipeworks", "mesecons", "3d-armor", "maidroid"):
        assert DEFAULT_SPLITS[f"minetest-mod-{name}"] == "train"
        assert SOURCES[f"minetest-mod-{name}"].reader == "minetest-mods"
    game = tmp_path / "minetest" / "games" / "minetest_game" / "mods" / "boats" / "models" / "boats_boat.obj"
    game.parent.mkdir(parents=True)
    game.write_text("v 0 0 0\n")
    mod_file = tmp_path / "minetest" / "mods" / "homedecor" / "homedecor_kitchen" / "models" / "fridge.obj"
    mod_file.parent.mkdir(parents=True)
    mod_file.write_text("v 0 0 0\n")
    base = dataclasses.replace(SOURCES["minetest-data"], roots=(str(tmp_path / "minetest"),))
    found = [rel for rel, _, _ in _iter_files(base, tmp_path / "x")]
    assert found == ["games/minetest_game/mods/boats/models/boats_boat.obj"]


_MOD_LUA = '''
-- mesh = "commented_out.obj", tiles = {"wrong.png"}
local polys = ""
if minetest.settings:get_bool("pipeworks_lowpoly") then polys = "_lowpoly" end
homedecor.register("piano", {
	mesh = "homedecor_piano.obj",
	tiles = {
		{ name = "homedecor_generic_wood_luxury.png", color = homedecor.color_black },
		"homedecor_piano_keys.png^[colorize:#000:40",  -- a modifier: the base file only
		"[combine:16x16:0,0=a.png",
		homedecor.plain_wood,
		"default_"..name..".png",
	},
	selection_box = { type = "fixed", fixed = { -0.5, -0.5, -0.5, 1.5, 0.5, 0.5 } },
})
minetest.register_node("pipeworks:pump_off", {
	drawtype = "mesh",
	mesh = "pipeworks_pump"..polys..".obj",
	tiles = { 'pipeworks_pump.png' },
})
minetest.register_node("homedecor:piano_white", {
	mesh = "homedecor_piano.obj",  -- a later definition of the same mesh does not count
	tiles = { "homedecor_piano_white.png" },
})
minetest.register_entity("x:y", {
	visual = "mesh", mesh = "thing.b3d",
	inner = { tiles = { "nested.png" } },
	textures = { "skin.png" },
})
--[[ minetest.register_node("x:z", { mesh = "block_comment.obj", tiles = {"no.png"} }) ]]
'''


def test_lua_mesh_tiles_parse() -> None:
    """The Lua ``mesh`` + ``tiles`` parse on a small hand-written mod file: the first definition of a mesh wins;
    plain names, ``{name = ...}`` tables and modified textures give their base file; generated textures,
    variables and concatenations give None; names in concatenated mesh strings read as empty; comments and
    ``tiles`` of nested tables are ignored."""
    from zero1to3.data.corpus import lua_mesh_tiles

    tiles = lua_mesh_tiles(_MOD_LUA)
    assert tiles == {"homedecor_piano.obj": ["homedecor_generic_wood_luxury.png", "homedecor_piano_keys.png",
                                             None, None, None],
                     "pipeworks_pump.obj": ["pipeworks_pump.png"]}


def test_minetest_obj_groups_get_their_tiles(tmp_path: Path) -> None:
    """A hand-built Minetest mod: an OBJ with faces before any group, then two ``g`` groups (no usemtl, as the
    mods' files are), and a Lua definition whose three tiles live in two mods' textures folders; each group is
    drawn with its own tile (tiles[i] on the i-th group), and an unknown tile leaves its group one colour."""
    from zero1to3.data.corpus import read_minetest_obj

    mods = tmp_path / "mods" / "mymods"
    (mods / "chest" / "models").mkdir(parents=True)
    (mods / "chest" / "textures").mkdir()
    other = tmp_path / "game" / "default" / "textures"
    other.mkdir(parents=True)
    colours = {"red.png": (220, 20, 20), "green.png": (20, 200, 20), "blue.png": (20, 20, 220)}
    for name, folder in (("red.png", mods / "chest" / "textures"), ("green.png", other),
                         ("blue.png", mods / "chest" / "textures")):
        Image.fromarray(np.tile(np.array(colours[name], np.uint8), (8, 8, 1))).save(folder / name)
    lines, offset = [], 0
    for k, (label, y) in enumerate(((None, 0.0), ("g 1", 2.0), ("g 2", 4.0))):
        box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        box.apply_translation((0.0, y, 0.0))
        if label:
            lines.append(label)
        lines += [f"v {v[0]:.3f} {v[1]:.3f} {v[2]:.3f}" for v in box.vertices]
        lines += [f"vt {0.2 + 0.6 * (i % 2)} {0.2 + 0.6 * (i // 4)}" for i in range(8)]
        lines += ["f " + " ".join(f"{i + offset + 1}/{i + offset + 1}" for i in face) for face in box.faces]
        offset += 8
    obj = mods / "chest" / "models" / "mymod_chest.obj"
    obj.write_text("\n".join(lines) + "\n")
    (mods / "chest" / "init.lua").write_text(
        'minetest.register_node("chest:chest", {\n\tdrawtype = "mesh",\n\tmesh = "mymod_chest.obj",\n'
        '\ttiles = { "red.png", "green.png^[brighten", {name = "blue.png", backface_culling = true} },\n})\n')
    parts = read_minetest_obj(obj)
    assert [p.metadata["name"] for p in parts] == ["tile0", "tile1", "tile2"]
    assert [len(p.faces) for p in parts] == [12, 12, 12]
    mesh = convert_object(obj, "y", reader="minetest-mods", lua_roots=(str(tmp_path / "mods"),),
                          texture_roots=(str(tmp_path / "game"),))
    colour = np.asarray(mesh.visual.to_color().vertex_colors)[:, :3].astype(int)
    height = np.asarray(mesh.vertices)[:, 2]  # +Z up after conversion: the file's y
    for level, name in ((height < -0.3, "red.png"), (np.abs(height) < 0.2, "green.png"), (height > 0.3, "blue.png")):
        assert np.abs(colour[level] - np.array(colours[name])).max() <= 12, name
    # without a definition the object is untextured (one colour), as minetest-data's are
    (mods / "chest" / "init.lua").write_text("-- nothing here\n")
    from zero1to3.data import corpus
    corpus._mesh_tiles_under.cache_clear()
    plain = convert_object(obj, "y", reader="minetest-mods", lua_roots=(str(tmp_path / "mods"),))
    assert not isinstance(plain.visual, trimesh.visual.TextureVisuals) or plain.visual.material.image is None
