"""Seeded procedural objects: colourful, asymmetric compositions of 2-6 primitives.

Why: training and tests need thousands of varied objects without downloading Objaverse. The model must
tell front from back, so every object carries a *marker* part of a distinct colour on one side, parts are
attached off-centre, and surfaces carry stripes/checker/gradient patterns baked into vertex colours (the
renderer interpolates them, so each part is subdivided finely enough for the pattern to survive).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import trimesh

#: Primitive kinds a part can have.
PRIMITIVES: tuple[str, ...] = ("box", "sphere", "cylinder", "cone", "torus", "capsule")
#: Surface patterns baked into vertex colours.
PATTERNS: tuple[str, ...] = ("solid", "stripes", "checker", "gradient", "rings")


def normalize_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Scale so the largest bounding-box side is 1 and move the box centre to the origin (SPEC §4)."""
    bounds = np.asarray(mesh.bounds, np.float64)
    extent = float(np.max(bounds[1] - bounds[0]))
    if not np.isfinite(extent) or extent <= 0.0:
        raise ValueError("mesh has an empty or degenerate bounding box")
    matrix = np.eye(4)
    matrix[:3, :3] /= extent
    matrix[:3, 3] = -(bounds[0] + bounds[1]) / (2.0 * extent)
    mesh = mesh.copy()
    mesh.apply_transform(matrix)
    return mesh


def _random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.55, 1.0),
                   value: tuple[float, float] = (0.45, 1.0)) -> np.ndarray:
    """A saturated RGB colour in [0, 1] (HSV sampling keeps objects colourful, never grey-on-grey)."""
    h = rng.uniform(0.0, 1.0)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], np.float64)


def _primitive(kind: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """One primitive of roughly unit size in its own frame."""
    if kind == "box":
        return trimesh.creation.box(extents=rng.uniform(0.4, 1.0, size=3))
    if kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        mesh.apply_scale(rng.uniform(0.6, 1.0, size=3))  # ellipsoid
        return mesh
    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=rng.uniform(0.2, 0.45), height=rng.uniform(0.4, 1.0), sections=32)
    if kind == "cone":
        return trimesh.creation.cone(radius=rng.uniform(0.25, 0.5), height=rng.uniform(0.5, 1.0), sections=32)
    if kind == "torus":
        major = rng.uniform(0.25, 0.4)
        return trimesh.creation.torus(major_radius=major, minor_radius=rng.uniform(0.06, 0.45) * major,
                                      major_sections=32, minor_sections=16)
    if kind == "capsule":
        return trimesh.creation.capsule(height=rng.uniform(0.3, 0.8), radius=rng.uniform(0.12, 0.3), count=[24, 24])
    raise ValueError(f"unknown primitive {kind!r}")


def _pattern_colours(local: np.ndarray, pattern: str, base: np.ndarray, second: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Per-vertex RGB in [0, 1] of a procedural pattern evaluated at part-local coordinates."""
    if pattern == "solid":
        return np.broadcast_to(base, local.shape).copy()
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    coord = local @ axis
    if pattern == "stripes":
        period = rng.uniform(0.12, 0.3)
        mask = (np.floor(coord / (period / 2.0)) % 2).astype(bool)
    elif pattern == "checker":
        cell = rng.uniform(0.12, 0.25)
        mask = (np.floor(local / cell).astype(np.int64).sum(axis=1) % 2).astype(bool)
    elif pattern == "rings":
        period = rng.uniform(0.1, 0.25)
        mask = (np.floor(np.linalg.norm(local, axis=1) / (period / 2.0)) % 2).astype(bool)
    elif pattern == "gradient":
        t = (coord - coord.min()) / max(float(np.ptp(coord)), 1e-9)
        return base[None] * (1.0 - t[:, None]) + second[None] * t[:, None]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return np.where(mask[:, None], second[None], base[None])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return trimesh.transformations.quaternion_matrix(q / np.linalg.norm(q))


def _finish_part(mesh: trimesh.Trimesh, pattern: str, base: np.ndarray, second: np.ndarray,
                 rng: np.random.Generator, max_edge: float) -> trimesh.Trimesh:
    """Subdivide (so patterns are resolvable by vertex colours) and bake colours, in part-local coords."""
    vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=max_edge, max_iter=6)
    part = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    rgb = _pattern_colours(np.asarray(part.vertices), pattern, base, second, rng)
    rgba = np.concatenate([np.clip(rgb, 0.0, 1.0) * 255.0, np.full((len(rgb), 1), 255.0)], axis=1)
    part.visual = trimesh.visual.ColorVisuals(part, vertex_colors=np.round(rgba).astype(np.uint8))
    return part


def random_object(seed: int | np.random.Generator | tuple[int, ...] = 0, min_parts: int = 2,
                  max_parts: int = 6, max_edge: float = 0.05) -> trimesh.Trimesh:
    """A random object (same seed, same mesh): a body, 0-4 attached parts, and one marker part.

    The marker (a small, strongly coloured sphere/box/cone) sits off-centre on the body's surface at a
    random side, so no object is symmetric under a turn. Returns a normalised mesh with vertex colours.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not 2 <= min_parts <= max_parts:
        raise ValueError("need 2 <= min_parts <= max_parts")
    n_parts = int(rng.integers(min_parts, max_parts + 1))
    palette = [_random_colour(rng) for _ in range(3)]

    parts: list[trimesh.Trimesh] = []
    body_kind = str(rng.choice(["box", "sphere", "cylinder", "capsule", "cone"]))
    body = _primitive(body_kind, rng)
    body.apply_scale(rng.uniform(0.7, 1.3, size=3) * 1.2)
    if rng.uniform() < 0.5:
        body.apply_transform(_random_rotation(rng))
    body_pattern = str(rng.choice(PATTERNS, p=[0.2, 0.3, 0.2, 0.15, 0.15]))
    parts.append(_finish_part(body, body_pattern, palette[0], palette[1], rng, max_edge))

    body_vertices = np.asarray(parts[0].vertices)

    def attach(mesh: trimesh.Trimesh, direction: np.ndarray) -> None:
        # Put the part's centre on the body's support point in ``direction`` (a true surface point),
        # pushed out a little so the part sticks out of the body instead of hiding inside it.
        direction = direction / np.linalg.norm(direction)
        anchor = body_vertices[int(np.argmax(body_vertices @ direction))]
        push = 0.5 * float(np.min(mesh.extents)) * rng.uniform(0.0, 0.8)
        mesh.apply_translation(anchor + direction * push - mesh.bounds.mean(axis=0))

    for k in range(n_parts - 2):
        kind = str(rng.choice(PRIMITIVES))
        part = _primitive(kind, rng)
        part.apply_scale(rng.uniform(0.3, 0.7))
        part.apply_transform(_random_rotation(rng))
        attach(part, rng.normal(size=3))
        colour = palette[int(rng.integers(0, 3))] if rng.uniform() < 0.5 else _random_colour(rng)
        pattern = str(rng.choice(PATTERNS, p=[0.4, 0.2, 0.2, 0.1, 0.1]))
        parts.append(_finish_part(part, pattern, colour, palette[(k + 2) % 3], rng, max_edge))

    # Marker: a bright, unique-colour part on one horizontal side, above the middle (front/back cue).
    marker_kind = str(rng.choice(["sphere", "box", "cone"]))
    marker = _primitive(marker_kind, rng)
    marker.apply_scale(rng.uniform(0.25, 0.4))
    angle = rng.uniform(0.0, 2.0 * np.pi)
    attach(marker, np.array([np.cos(angle), np.sin(angle), rng.uniform(0.0, 0.6)]))
    marker_colour = _random_colour(rng, saturation=(0.9, 1.0), value=(0.9, 1.0))
    parts.append(_finish_part(marker, "solid", marker_colour, marker_colour, rng, max_edge))

    mesh = trimesh.util.concatenate(parts)
    return normalize_mesh(mesh)


def procedural_objects(count: int, seed: int = 0, start: int = 0) -> Iterator[tuple[str, trimesh.Trimesh]]:
    """``(name, mesh)`` for objects ``start .. start+count-1`` of a seeded family.

    Object ``i`` depends only on ``(seed, i)``, so workers can generate any slice independently.
    """
    for index in range(start, start + count):
        yield procedural_name(index), random_object((seed, index))


def procedural_name(index: int) -> str:
    """Folder name of procedural object ``index``."""
    return f"proc_{index:06d}"
