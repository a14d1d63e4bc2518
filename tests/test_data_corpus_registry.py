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
