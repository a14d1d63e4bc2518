"""OpenSCAD programs as meshes, through the ``openscad`` command-line tool.

Why: OpenSCAD's examples are CAD programs (``.scad``), not mesh files; the program itself evaluates them. The tool
runs headless for mesh export (no display needed). Its STL has no colour, so the mesh is written as a PLY in
OpenSCAD's own render colour (the yellow of its CGAL view), one colour for the whole object."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import trimesh

__all__ = ["OPENSCAD_COLOUR", "scad_to_ply"]

#: OpenSCAD's colour for rendered (CGAL) faces, RGBA
OPENSCAD_COLOUR = (249, 215, 44, 255)


def scad_to_ply(scad: Path, target: Path, timeout: float = 600.0) -> Path:
    """Evaluate ``scad`` with ``openscad -o`` into an STL beside ``target``, then write ``target`` (PLY, vertex
    colours ``OPENSCAD_COLOUR``); an existing ``target`` is reused (converted once). Raises ValueError with
    OpenSCAD's last message when it makes no 3D mesh (2D-only or empty programs: "Current top level object is
    not a 3D object.") and FileNotFoundError when ``openscad`` is not installed."""
    target = Path(target)
    if target.is_file():
        return target
    tool = shutil.which("openscad")
    if tool is None:
        raise FileNotFoundError("openscad is not installed (apt-get install -y openscad)")
    target.parent.mkdir(parents=True, exist_ok=True)
    stl = target.with_suffix(".stl")
    try:
        run = subprocess.run([tool, "-o", str(stl), str(scad)], capture_output=True, text=True, timeout=timeout,
                             cwd=str(Path(scad).parent))
    except subprocess.TimeoutExpired:
        raise ValueError(f"openscad took over {timeout:.0f} s") from None
    lines = [line.strip() for line in (run.stderr + run.stdout).splitlines() if line.strip()]
    if run.returncode != 0 or not stl.is_file() or stl.stat().st_size == 0:
        stl.unlink(missing_ok=True)
        raise ValueError(f"openscad: {lines[-1] if lines else f'exit status {run.returncode}'}")
    mesh = trimesh.load(str(stl), force="mesh", process=False)
    coloured = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False,
                               vertex_colors=np.array(OPENSCAD_COLOUR, np.uint8))
    tmp = target.with_name(f".{target.name}.tmp.ply")
    coloured.export(str(tmp))
    tmp.replace(target)
    stl.unlink()
    return target
