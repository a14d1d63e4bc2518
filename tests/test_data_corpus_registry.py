"""Corpus sources installed from PyPI and npm (``Source.kind`` ``pip`` / ``npm``): install commands, finding an
installed package (hand-built dist-info and node_modules folders), pinned versions, skipping absent ones,
reserved names, and the WebXR controllers' file filter. CPU, seconds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import trimesh

from zero1to3.data.corpus import (DEFAULT_SPLITS, NPM_PREFIX_ENV, SOURCES, ReservedSourceError, Source, build_corpus,
                                  install_command, located, package_root, package_version, registry_licence)
from zero1to3.data.corpus import _iter_files

WEBXR = "webxr-input-profiles-assets"


def _npm_package(prefix: Path, name: str, version: str, licence: str | None = None) -> Path:
    """A stand-in ``npm install --prefix`` result: ``node_modules/<name>/package.json``."""
    folder = prefix / "node_modules" / name
    folder.mkdir(parents=True)
    meta = {"name": name, "version": version, **({"license": licence} if licence else {})}
    (folder / "package.json").write_text(json.dumps(meta))
    return folder


def _pip_dist(site: Path, name: str, version: str, licence: str = "", classifiers: tuple[str, ...] = ()) -> None:
    """A stand-in installed distribution: ``<name>-<version>.dist-info/METADATA`` in ``site``."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"License: {licence}"] if licence else []
    lines += [f"Classifier: {c}" for c in classifiers]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_install_commands_are_pinned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(NPM_PREFIX_ENV, str(tmp_path / "npm"))
    assert install_command(Source("robots", ("x",), (".stl",), kind="pip", pin="6.0.0",
                                  package="example-robot-data")) == "pip install example-robot-data==6.0.0"
    assert (install_command(SOURCES[WEBXR])
            == f"npm install --prefix {tmp_path / 'npm'} @webxr-input-profiles/assets@1.0.20")
    assert install_command(SOURCES["gltron"]) == "apt-get install -y gltron"
    assert install_command(Source("mine", ("/x",), (".obj",), kind="folder")) == ""
    assert DEFAULT_SPLITS[WEBXR] == "train" and "/" not in WEBXR and "@" not in WEBXR


def test_npm_package_is_found_under_the_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(NPM_PREFIX_ENV, str(tmp_path))
    source = Source("scoped-assets", ("dist/models",), (".glb",), kind="npm", pin="2.1.0", package="@s/assets")
    assert package_version(source) is None and package_root(source) is None
    with pytest.raises(FileNotFoundError, match="npm install --prefix"):
        located(source)
    folder = _npm_package(tmp_path, "@s/assets", "2.1.0", "CC0-1.0")
    assert package_version(source) == "2.1.0"
    assert package_root(source) == folder
    assert located(source).roots == (str(folder / "dist/models"),)
    assert registry_licence(source) == "CC0-1.0"
    (folder / "package.json").write_text(json.dumps({"name": "@s/assets", "version": "2.1.0"}))
    assert registry_licence(source) == "unknown (no license field)"


def test_pip_distribution_is_found_by_metadata(tmp_path: Path) -> None:
    _pip_dist(tmp_path, "Mesh_Pack", "1.2.3", classifiers=("License :: OSI Approved :: BSD License",))
    source = Source("mesh-pack", ("mesh_pack/models",), (".obj",), kind="pip", pin="1.2.3")
    path = [str(tmp_path)]
    assert package_version(source, path) == "1.2.3"  # names compare normalised (PEP 503)
    assert package_root(source, path) == tmp_path.resolve()
    assert located(source, path).roots == (str(tmp_path.resolve() / "mesh_pack/models"),)
    assert registry_licence(source, path) == "BSD License"
    other = tmp_path / "other"
    _pip_dist(other, "mesh-pack", "0.9", licence="MIT")
    assert package_version(source, [str(other)]) == "0.9"
    assert registry_licence(source, [str(other)]) == "MIT"
    assert package_version(source, [str(tmp_path / "empty")]) is None


def _glb(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh = trimesh.creation.icosphere(subdivisions=1)  # 80 triangles
    mesh.visual.face_colors = [200, 30, 30, 255]
    mesh.export(path)


def test_build_takes_npm_source_and_skips_absent_or_other_version(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """The WebXR rules on a stand-in package: one model per profile (left hand, or ``none`` for one-handed
    controllers), no right hands, no generic profiles; absent or differently versioned packages are skipped
    with one line naming the pinned install command."""
    prefix = tmp_path / "npm"
    monkeypatch.setenv(NPM_PREFIX_ENV, str(prefix))
    notes: list[str] = []
    build_corpus(tmp_path / "c0", [SOURCES[WEBXR]], progress=False, note=notes.append)
    assert notes[0] == (f"skip {WEBXR}: not installed (npm install --prefix {prefix} "
                        "@webxr-input-profiles/assets@1.0.20)")
    folder = _npm_package(prefix, "@webxr-input-profiles/assets", "1.0.19")
    notes.clear()
    summary = build_corpus(tmp_path / "c1", [SOURCES[WEBXR]], progress=False, note=notes.append)
    assert notes[0] == (f"skip {WEBXR}: 1.0.19 installed, 1.0.20 pinned (npm install --prefix {prefix} "
                        "@webxr-input-profiles/assets@1.0.20)")
    assert summary.skipped_packages == {WEBXR: "version 1.0.19, not 1.0.20"}
    (folder / "package.json").write_text(json.dumps({"name": "@webxr-input-profiles/assets", "version": "1.0.20"}))
    for rel in ("vendor-a/left.glb", "vendor-a/right.glb", "vendor-b/none.glb", "generic-trigger/left.glb",
                "generic-trigger/none.glb"):
        _glb(folder / "dist/profiles" / rel)
    (folder / "dist/profiles/vendor-a/profile.json").write_text("{}")
    summary = build_corpus(tmp_path / "c2", [SOURCES[WEBXR]], progress=False, note=notes.append)
    manifest = json.loads((tmp_path / "c2" / "manifest.json").read_text())
    rows = {o["source_path"]: o for o in manifest["objects"]}
    assert sorted(rows) == ["vendor-a/left.glb", "vendor-b/none.glb"]
    assert {o["id"] for o in rows.values()} == {f"{WEBXR}__vendor_a_left", f"{WEBXR}__vendor_b_none"}
    assert manifest["packages"][WEBXR]["version"] == "1.0.20"
    assert manifest["packages"][WEBXR]["licence"].startswith("MIT")
    assert rows["vendor-a/left.glb"]["split"] == "train"  # the two are exact copies: the first is kept
    assert rows["vendor-b/none.glb"]["split"] == "excluded"
    assert (tmp_path / "c2" / rows["vendor-a/left.glb"]["file"]).is_file()
    assert rows["vendor-a/left.glb"]["file"] == f"objects/{WEBXR}/{WEBXR}__vendor_a_left.glb"


def test_registry_sources_refuse_reserved_names_and_paths(tmp_path: Path) -> None:
    """A reserved package is refused by its registry name, and a package that re-ships a reserved one's files
    (a ``pybullet_data`` folder) by the located path."""
    with pytest.raises(ReservedSourceError):
        build_corpus(tmp_path / "a", [Source("robots", ("x",), (".stl",), kind="pip", package="pybullet")],
                     progress=False, note=lambda _: None)
    site = tmp_path / "site"
    _pip_dist(site, "robot-pack", "1.0")
    (site / "pybullet_data").mkdir()
    source = Source("robot-pack", ("pybullet_data",), (".urdf",), kind="pip", pin="1.0")
    with pytest.MonkeyPatch.context() as mp:
        import zero1to3.data.corpus as corpus

        real = corpus.located
        mp.setattr(corpus, "located", lambda s, pip_path=None: real(s, [str(site)]))
        mp.setattr(corpus, "package_version", lambda s, pip_path=None: "1.0")
        with pytest.raises(ReservedSourceError):
            build_corpus(tmp_path / "b", [source], progress=False, note=lambda _: None)


def test_webxr_package_when_installed() -> None:
    """The installed package itself (skipped when absent): 41 profiles with a model; the 12 generic ones are
    left out, and each of the other 29 gives exactly one file."""
    source = SOURCES[WEBXR]
    if package_version(source) != source.pin:
        pytest.skip(f"{WEBXR} {source.pin} not installed ({install_command(source)})")
    found = [rel for rel, _, _ in _iter_files(located(source), Path("/nonexistent"))]
    assert len(found) == 29
    assert len({rel.split("/")[0] for rel in found}) == 29
    assert not any(rel.startswith("generic-") or rel.endswith("right.glb") for rel in found)
    assert "valve-index/left.glb" in found and "htc-vive/none.glb" in found
    assert dataclasses.replace(source).registry_name == "@webxr-input-profiles/assets"


# ------------------------------------------------------------------------------------------------ URDF robots
_URDF = """<robot name="r">
  <material name="red"><color rgba="1 0 0 1"/></material>
  <link name="base">
    <visual><origin xyz="0 0 0.5"/><geometry><box size="1 2 1"/></geometry><material name="red"/></visual>
    <visual><geometry><box size="0.001 0.001 0.001"/></geometry></visual>
  </link>
  <link name="arm">
    <visual><origin xyz="0 0 1" rpy="0 0 0"/>
      <geometry><mesh filename="package://pkg/meshes/part.stl" scale="2 2 2"/></geometry>
      <material name="blue"><color rgba="0 0 1 1"/></material></visual>
  </link>
  <joint name="j" type="revolute"><parent link="base"/><child link="arm"/>
    <origin xyz="0 0 1" rpy="0 0 1.5707963267948966"/></joint>
</robot>
"""


def _robot(tmp_path: Path) -> Path:
    (tmp_path / "pkg" / "meshes").mkdir(parents=True)
    (tmp_path / "pkg" / "urdf").mkdir()
    trimesh.creation.box(extents=(0.5, 0.25, 0.125)).export(tmp_path / "pkg" / "meshes" / "part.stl")
    urdf = tmp_path / "pkg" / "urdf" / "r.urdf"
    urdf.write_text(_URDF)
    return urdf


def test_rpy_matrix_is_fixed_axis_roll_pitch_yaw() -> None:
    import numpy as np

    from zero1to3.data.urdf import rpy_matrix

    m = rpy_matrix("1 2 3", "0 0 1.5707963267948966")  # yaw 90 deg: x -> y
    assert np.allclose(m[:3, :3] @ [1, 0, 0], [0, 1, 0]) and np.allclose(m[:3, 3], [1, 2, 3])
    m = rpy_matrix(None, "1.5707963267948966 0 1.5707963267948966")  # roll, then yaw: z -> -y -> x
    assert np.allclose(m[:3, :3] @ [0, 0, 1], [1, 0, 0]) and np.allclose(m[:3, :3] @ [0, 1, 0], [0, 0, 1])


def test_read_urdf_places_links_at_zero_joints(tmp_path: Path) -> None:
    import numpy as np

    from zero1to3.data.urdf import read_urdf, resolve_package_path

    urdf = _robot(tmp_path)
    visuals = read_urdf(urdf)
    assert [(v.link, v.primitive or v.mesh.name) for v in visuals] == [("base", "box"), ("base", "box"),
                                                                        ("arm", "part.stl")]
    assert visuals[0].size == (1.0, 2.0, 1.0) and visuals[0].rgba == (1.0, 0.0, 0.0, 1.0)
    assert np.allclose(visuals[0].transform[:3, 3], [0, 0, 0.5])
    arm = visuals[2]
    assert arm.mesh == (tmp_path / "pkg" / "meshes" / "part.stl").resolve()
    assert arm.scale == (2.0, 2.0, 2.0) and arm.rgba == (0.0, 0.0, 1.0, 1.0)
    assert np.allclose(arm.transform[:3, 3], [0, 0, 2])  # joint z 1 + visual z 1
    assert np.allclose(arm.transform[:3, :3] @ [1, 0, 0], [0, 1, 0])  # the joint's yaw
    assert resolve_package_path("package:///pkg/meshes/part.stl", urdf) == tmp_path / "pkg" / "meshes" / "part.stl"
    assert resolve_package_path("../meshes/part.stl", urdf) == (tmp_path / "pkg" / "meshes" / "part.stl").resolve()
    with pytest.raises(FileNotFoundError):
        resolve_package_path("package://nope/x.stl", urdf)


def test_urdf_reader_assembles_coloured_robot(tmp_path: Path) -> None:
    """Box (red, URDF material) under the arm's STL box (blue), scaled 2x and turned 90 deg about Z by the joint:
    the assembled robot spans x 0.5 (the arm's 0.25 x 2), y 2, z 0..2.125; the 1 mm placeholder box is dropped."""
    import numpy as np

    from zero1to3.data.corpus import _load_urdf_parts

    parts = _load_urdf_parts(_robot(tmp_path))
    assert len(parts) == 2
    base, arm = parts
    assert np.allclose(base.bounds, [[-0.5, -1, 0], [0.5, 1, 1]])
    assert np.allclose(arm.bounds, [[-0.25, -0.5, 1.875], [0.25, 0.5, 2.125]])
    assert tuple(base.visual.vertex_colors[0]) == (255, 0, 0, 255)
    assert tuple(arm.visual.vertex_colors[0]) == (0, 0, 255, 255)
    from zero1to3.data.corpus import convert_object

    mesh = convert_object(tmp_path / "pkg" / "urdf" / "r.urdf", "z", reader="urdf")
    assert np.allclose(sorted(mesh.extents), sorted(np.array([1.0, 2.0, 2.125]) / 2.125))


def test_example_robot_data_when_installed() -> None:
    """The installed wheel itself (skipped when absent): the 24 named URDFs, one per robot (7 decimated)."""
    source = SOURCES["example-robot-data"]
    if package_version(source) != source.pin:
        pytest.skip(f"example-robot-data {source.pin} not installed ({install_command(source)})")
    found = [rel for rel, _, _ in _iter_files(located(source), Path("/nonexistent"))]
    assert len(found) == 24
    assert "go2_description/urdf/go2.urdf" in found and "go1_description/urdf/go1.urdf" in found
    assert "anymal_b_simple_description/robots/anymal.urdf" not in found  # pybullet_data ships ANYmal
    assert not any(name in rel for rel in found for name in ("panda", "ur_description", "kinova", "baxter",
                                                             "laikago", "a1_", "xarm", "tiago"))
    assert DEFAULT_SPLITS["example-robot-data"] == "train"


def _heavy_robot(tmp_path: Path) -> Path:
    """One link holding ten copies of a 20,480-triangle sphere (STL: triangle soup, no colour of its own), 0.5 m
    apart along X, and a 1 m red box: 204,812 triangles, over the 200k limit."""
    (tmp_path / "pkg" / "meshes").mkdir(parents=True)
    (tmp_path / "pkg" / "urdf").mkdir()
    trimesh.creation.icosphere(subdivisions=5, radius=0.2).export(tmp_path / "pkg" / "meshes" / "ball.stl")
    spheres = "".join(f'<visual><origin xyz="{0.5 * i} 0 0"/><geometry><mesh filename="package://pkg/meshes/'
                      f'ball.stl"/></geometry><material name="blue"><color rgba="0 0 1 1"/></material></visual>'
                      for i in range(10))
    urdf = tmp_path / "pkg" / "urdf" / "heavy.urdf"
    urdf.write_text(f'<robot name="h"><link name="base">{spheres}<visual><geometry><box size="1 1 1"/></geometry>'
                    f'<material name="red"><color rgba="1 0 0 1"/></material></visual></link></robot>')
    return urdf


def test_urdf_heavy_links_are_decimated(tmp_path: Path) -> None:
    """Over MAX_FACES the sphere (used ten times) is decimated once, by 120,000 / 204,800, to 12,000 triangles,
    every copy alike and still blue from the URDF; the box (not a link mesh) and the layout stay; the robot is
    then 10 x 12,000 + 12 triangles and converts (it would be refused as too heavy otherwise)."""
    pytest.importorskip("fast_simplification")
    import numpy as np

    from zero1to3.data.corpus import MAX_FACES, URDF_FACE_BUDGET, _load_urdf_parts, convert_object

    assert URDF_FACE_BUDGET == 120_000 and MAX_FACES == 200_000
    parts = _load_urdf_parts(_heavy_robot(tmp_path))
    assert len(parts) == 11
    assert [len(p.faces) for p in parts] == [12_000] * 10 + [12]
    assert all(tuple(p.visual.vertex_colors[0]) == (0, 0, 255, 255) for p in parts[:10])
    assert tuple(parts[10].visual.vertex_colors[0]) == (255, 0, 0, 255)
    assert np.allclose(parts[3].vertices - [1.5, 0, 0], parts[0].vertices)  # one decimation, ten copies
    assert np.allclose(parts[0].bounds, [[-0.2, -0.2, -0.2], [0.2, 0.2, 0.2]], atol=0.01)
    assert len(parts[0].vertices) == 3 * 12_000  # split again: flat shading, as the STL links
    mesh = convert_object(tmp_path / "pkg" / "urdf" / "heavy.urdf", "z", reader="urdf")
    assert len(mesh.faces) == 120_012


def test_decimation_without_fast_simplification_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the package the one-line message names it and the extra that installs it."""
    import sys

    from zero1to3.data.corpus import decimate_mesh

    monkeypatch.setitem(sys.modules, "fast_simplification", None)
    with pytest.raises(ImportError, match=r"needs fast_simplification: pip install 'zero1to3\[corpus\]'"):
        decimate_mesh(trimesh.creation.icosphere(subdivisions=3), 100)
