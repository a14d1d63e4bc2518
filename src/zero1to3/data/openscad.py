"""OpenSCAD programs as meshes, through the ``openscad`` command-line tool.

Why: OpenSCAD's examples are CAD programs (``.scad``), not mesh files; the program itself evaluates them. The tool
runs headless for mesh export (no display needed). Its STL has no colour, so the mesh is written as a PLY in
OpenSCAD's own render colour (the yellow of its CGAL view), one colour for the whole object. OpenSCAD writes the
same triangles in another order from one run to the next, so the mesh is put in a canonical order
(:func:`canonical_mesh`) before it is written: a fresh conversion gives the same bytes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import trimesh

__all__ = ["OPENSCAD_COLOUR", "canonical_mesh", "scad_to_ply"]

#: OpenSCAD's colour for rendered (CGAL) faces, RGBA
OPENSCAD_COLOUR = (249, 215, 44, 255)


def _lex_order(rows: np.ndarray) -> np.ndarray:
    """Indices that sort the rows of a 2D array lexicographically (first column first), stable."""
    return np.lexsort(rows.T[::-1])


def canonical_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices, faces)`` in an order that depends only on the triangles, not on how they were listed.

    Why: OpenSCAD lists the same triangles in another order from run to run, so the converted files (and their
    sha256) changed with each fresh build. Here exactly equal vertices are merged (no tolerance: the geometry is
    unchanged; -0.0 counts as 0.0) and sorted by (x, y, z); each face is turned cyclically to its smallest
    rotation (smallest vertex index first; a cyclic turn keeps the winding, so normals keep their side); the
    faces are then sorted by their three indices. Returns float64 [V, 3] vertices (only those the faces use) and
    int64 [F, 3] faces; duplicate faces are kept."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3) + 0.0  # -0.0 -> 0.0, so equal points are equal bytes
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    used = np.unique(f)
    v, f = v[used], np.searchsorted(used, f)
    order = _lex_order(v)
    ordered = v[order]
    first = np.ones(len(ordered), bool)
    first[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    remap = np.empty(len(v), np.int64)
    remap[order] = np.cumsum(first) - 1
    f = remap[f]
    # the smallest of the three cyclic rotations (lexicographically; also decides degenerate faces like (a, a, b))
    best = f
    for shift in (1, 2):
        turned = np.roll(f, -shift, axis=1)
        a, b = turned, best
        less = (a[:, 0] < b[:, 0]) | ((a[:, 0] == b[:, 0]) & ((a[:, 1] < b[:, 1]) |
                                                              ((a[:, 1] == b[:, 1]) & (a[:, 2] < b[:, 2]))))
        best = np.where(less[:, None], turned, best)
    return ordered[first], best[_lex_order(best)]


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
    vertices, faces = canonical_mesh(mesh.vertices, mesh.faces)
    # written as triangle soup again (three vertices per face, as the STL was), so the faces stay flat-shaded
    coloured = trimesh.Trimesh(vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3),
                               process=False, vertex_colors=np.array(OPENSCAD_COLOUR, np.uint8))
    tmp = target.with_name(f".{target.name}.tmp.ply")
    coloured.export(str(tmp))
    tmp.replace(target)
    stl.unlink()
    return target
