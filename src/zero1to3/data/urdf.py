"""A small URDF reader: a robot's visual geometry placed at its zero joint positions.

Why: robot description packages ship one mesh per link; a whole robot, as a person would photograph it, is the
links placed by the joint tree. Only what that needs is read (links' ``<visual>`` origin, mesh file and scale,
box / cylinder / sphere, material colour; joints' parent, child and origin); joint limits, inertia and collision
geometry are ignored. URDF is +Z up, metres."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from trimesh.transformations import euler_matrix

__all__ = ["UrdfVisual", "read_urdf", "rpy_matrix", "resolve_package_path"]


@dataclass(frozen=True)
class UrdfVisual:
    """One visual element in robot coordinates: ``mesh`` (a file) or ``primitive`` (``box``, ``cylinder``,
    ``sphere`` with ``size``: box sides, (radius, length) or (radius,)), its 4x4 ``transform`` and ``scale``,
    and the URDF material colour (RGBA in 0..1) if one is given."""

    link: str
    transform: np.ndarray
    mesh: Path | None = None
    primitive: str = ""
    size: tuple[float, ...] = ()
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgba: tuple[float, float, float, float] | None = None


def rpy_matrix(xyz: str | None, rpy: str | None) -> np.ndarray:
    """4x4 transform of a URDF ``<origin xyz rpy>``: fixed-axis roll, pitch, yaw, i.e. R = Rz(y) Ry(p) Rx(r)
    (trimesh's static ``sxyz`` Euler convention)."""
    out = euler_matrix(*[float(v) for v in (rpy or "0 0 0").split()], axes="sxyz")
    out[:3, 3] = [float(v) for v in (xyz or "0 0 0").split()]
    return out


def resolve_package_path(filename: str, urdf: Path) -> Path:
    """A mesh ``filename`` as a file: ``package://PKG/rest`` (also ``package:///``) is looked up in the URDF's
    ancestors (a folder named PKG, or one holding a PKG folder); ``file://`` and plain paths are taken as they
    are, relative to the URDF's folder."""
    if filename.startswith("package://"):
        package, _, rest = filename[len("package://"):].lstrip("/").partition("/")
        for folder in urdf.resolve().parents:
            if folder.name == package:
                return folder / rest
            if (folder / package).is_dir():
                return folder / package / rest
        raise FileNotFoundError(f"package {package!r} of {filename!r} not found above {urdf}")
    if filename.startswith("file://"):
        filename = filename[len("file://"):]
    return (urdf.parent / filename).resolve()


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


def read_urdf(path: Path) -> list[UrdfVisual]:
    """The visuals of every link reachable from the root link, placed at zero joint positions (the joint's
    origin only). Raises ValueError for a file with no root link or a joint loop."""
    root = ET.parse(path).getroot()
    colours = {m.get("name"): m for m in root.findall("material")}
    links = {link.get("name"): link for link in root.findall("link")}
    children: dict[str, list[tuple[str, np.ndarray]]] = {}
    child_links = set()
    for joint in root.findall("joint"):
        parent, child = joint.find("parent"), joint.find("child")
        if parent is None or child is None:
            continue
        origin = joint.find("origin")
        transform = rpy_matrix(*((origin.get("xyz"), origin.get("rpy")) if origin is not None else (None, None)))
        children.setdefault(parent.get("link"), []).append((child.get("link"), transform))
        child_links.add(child.get("link"))
    roots = [name for name in links if name not in child_links]
    if not roots:
        raise ValueError(f"{path.name}: no root link")
    placed: dict[str, np.ndarray] = {}
    stack = [(roots[0], np.eye(4))]
    while stack:
        name, transform = stack.pop()
        if name in placed:
            raise ValueError(f"{path.name}: joint loop at link {name!r}")
        placed[name] = transform
        stack.extend((child, transform @ local) for child, local in children.get(name, []))
    visuals: list[UrdfVisual] = []
    for name, transform in placed.items():
        link = links.get(name)
        for visual in (link.findall("visual") if link is not None else []):
            geometry = visual.find("geometry")
            if geometry is None or len(geometry) == 0:
                continue
            origin = visual.find("origin")
            at = transform @ rpy_matrix(*((origin.get("xyz"), origin.get("rpy")) if origin is not None
                                          else (None, None)))
            rgba = None
            material = visual.find("material")
            if material is not None:
                colour = material.find("color")
                if colour is None and material.get("name") in colours:
                    colour = colours[material.get("name")].find("color")
                if colour is not None and colour.get("rgba"):
                    rgba = tuple(_floats(colour.get("rgba"), (0.8, 0.8, 0.8, 1.0)))[:4]
            shape = geometry[0]
            if shape.tag == "mesh":
                scale = _floats(shape.get("scale"), (1.0, 1.0, 1.0))
                visuals.append(UrdfVisual(name, at, mesh=resolve_package_path(shape.get("filename", ""), path),
                                          scale=(scale * 3)[:3] if len(scale) == 1 else scale[:3], rgba=rgba))
            elif shape.tag == "box":
                visuals.append(UrdfVisual(name, at, primitive="box", size=_floats(shape.get("size"), (0, 0, 0)),
                                          rgba=rgba))
            elif shape.tag == "cylinder":
                visuals.append(UrdfVisual(name, at, primitive="cylinder", rgba=rgba,
                                          size=(float(shape.get("radius", 0)), float(shape.get("length", 0)))))
            elif shape.tag == "sphere":
                visuals.append(UrdfVisual(name, at, primitive="sphere", size=(float(shape.get("radius", 0)),),
                                          rgba=rgba))
    return visuals
