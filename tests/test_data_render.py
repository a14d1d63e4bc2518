"""Renderer geometry and image conventions, checked against zero1to3.camera."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from zero1to3.camera import look_at, project_points, sample_reference_cameras, spherical_to_cartesian
from zero1to3.data.render import Light, get_renderer, load_mesh, random_light, render_views

pytest.importorskip("moderngl")

UNLIT = Light(direction=(0.0, 0.0, 1.0), intensity=0.0, ambient=1.0)


def _coloured(mesh: trimesh.Trimesh, rgb: tuple[int, int, int]) -> trimesh.Trimesh:
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.tile([*rgb, 255], (len(mesh.vertices), 1)))
    return mesh


def _alpha_centroid(alpha: np.ndarray) -> np.ndarray:
    """Pixel-centre convention: pixel (col, row) covers [col, col+1) so its centre is col + 0.5."""
    w = alpha.astype(np.float64)
    rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    return np.array([(w * (cols + 0.5)).sum() / w.sum(), (w * (rows + 0.5)).sum() / w.sum()])


def test_one_context_per_process() -> None:
    assert get_renderer() is get_renderer()


@pytest.mark.parametrize("supersample,msaa", [(1, True), (2, True), (2, False)])
def test_small_sphere_lands_where_project_points_says(supersample: int, msaa: bool) -> None:
    centre = np.array([0.3, -0.2, 0.25])
    sphere = _coloured(trimesh.creation.icosphere(subdivisions=3, radius=0.04), (255, 255, 255))
    sphere.apply_translation(centre)
    poses = np.concatenate([look_at([1.6, -0.9, 0.8])[None],
                            sample_reference_cameras(np.random.default_rng(4), 3)])
    size = 128
    rgba = render_views(sphere, poses, size, light=UNLIT, supersample=supersample, msaa=msaa).rgba
    for pose, image in zip(poses, rgba):
        expected = project_points(centre[None], pose, size)[0]
        assert image[..., 3].max() == 255
        np.testing.assert_allclose(_alpha_centroid(image[..., 3]), expected, atol=1.0)


def test_rows_are_image_rows_and_camera_above_sees_the_top() -> None:
    top = _coloured(trimesh.creation.box(extents=(0.8, 0.8, 0.05)), (255, 0, 0))
    top.apply_translation((0, 0, 0.025))
    bottom = _coloured(trimesh.creation.box(extents=(0.8, 0.8, 0.05)), (0, 0, 255))
    bottom.apply_translation((0, 0, -0.025))
    marker = _coloured(trimesh.creation.icosphere(radius=0.08), (0, 255, 0))
    marker.apply_translation((0, 0, 0.3))  # above the slab
    mesh = trimesh.util.concatenate([top, bottom, marker])
    above = look_at(spherical_to_cartesian(np.radians(10), 0.3, 1.8))
    below = look_at(spherical_to_cartesian(np.radians(170), 0.3, 1.8))
    side = look_at(spherical_to_cartesian(np.radians(80), 0.0, 1.8))
    rgba = render_views(mesh, np.stack([above, below, side]), 64, light=UNLIT).rgba
    # From above, the red top face fills the view near the centre (around the green marker); blue from below.
    ring = rgba[0, 20:44, 20:44].reshape(-1, 4)
    assert (ring[:, 0] > 200).mean() > 0.5 and (ring[:, 2] > 200).mean() < 0.05
    ring = rgba[1, 20:44, 20:44].reshape(-1, 4)
    assert (ring[:, 2] > 200).mean() > 0.5 and (ring[:, 0] > 200).mean() < 0.05
    # From the side, the marker above the slab is in the upper half of the image (row 0 = top).
    green = (rgba[2, ..., 1] > 200) & (rgba[2, ..., 0] < 50)
    rows = np.nonzero(green)[0]
    assert len(rows) > 0 and rows.mean() < 32 - 5


@pytest.mark.parametrize("supersample,msaa", [(1, True), (2, False)])
def test_alpha_is_coverage_with_straight_colour_and_depth(supersample: int, msaa: bool) -> None:
    sphere = _coloured(trimesh.creation.icosphere(subdivisions=4, radius=0.5), (255, 0, 0))
    pose = look_at((0.0, -2.0, 0.0))
    result = render_views(sphere, pose, 64, light=UNLIT, depth=True, supersample=supersample, msaa=msaa)
    image, depth = result.rgba[0], result.depth[0]
    alpha = image[..., 3]
    assert alpha[0, 0] == 0 and alpha[32, 32] == 255
    edge = (alpha > 20) & (alpha < 235)
    assert edge.sum() > 20  # anti-aliased silhouette
    # Straight (un-premultiplied) alpha: partially covered pixels keep the object's colour.
    assert image[edge, 0].min() >= 230 and image[edge, 1].max() <= 10
    assert abs(depth[32, 32] - 1.5) < 0.02 and depth[0, 0] == 0.0
    assert np.all(depth[alpha == 255] > 1.45)


def test_lambert_light_brightens_the_lit_side() -> None:
    sphere = _coloured(trimesh.creation.icosphere(subdivisions=3, radius=0.5), (200, 200, 200))
    light = Light(direction=(1.0, 0.0, 0.0), intensity=0.6, ambient=0.3)
    image = render_views(sphere, look_at((0.0, -2.0, 0.0)), 64, light=light).rgba[0].astype(int)
    # Camera at -Y looking at +Y with +Z up: world +X is image right.
    assert image[32, 44, 0] > image[32, 20, 0] + 40
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert random_light(rng_a) == random_light(rng_b)


def test_texture_orientation(tmp_path) -> None:
    # A square in the XZ plane facing a camera at -Y; texture quadrants must appear where they are drawn.
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32, :32], tex[:32, 32:], tex[32:, :32], tex[32:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
    vertices = np.array([[-0.5, 0, -0.5], [0.5, 0, -0.5], [0.5, 0, 0.5], [-0.5, 0, 0.5]], float)
    uv = vertices[:, [0, 2]] + 0.5
    quad = trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(tex)))
    image = render_views(quad, look_at((0.0, -1.5, 0.0)), 64, light=UNLIT).rgba[0]
    np.testing.assert_array_equal(image[22, 22, :3], (255, 0, 0))    # top-left
    np.testing.assert_array_equal(image[22, 42, :3], (0, 255, 0))    # top-right
    np.testing.assert_array_equal(image[42, 22, :3], (0, 0, 255))    # bottom-left
    np.testing.assert_array_equal(image[42, 42, :3], (255, 255, 0))  # bottom-right


def test_load_mesh_normalises_and_converts_y_up(tmp_path) -> None:
    tall = trimesh.creation.box(extents=(0.5, 3.0, 1.0))  # tallest along Y
    tall.apply_translation((2.0, 1.0, 0.0))
    tall.export(tmp_path / "tall.obj")
    tall.export(tmp_path / "tall.ply")
    from_obj = load_mesh(tmp_path / "tall.obj")  # OBJ is Y-up: Y becomes Z
    np.testing.assert_allclose(from_obj.extents, (0.5 / 3, 1 / 3, 1.0), atol=1e-6)
    np.testing.assert_allclose(from_obj.bounds.mean(axis=0), 0.0, atol=1e-6)
    from_ply = load_mesh(tmp_path / "tall.ply")  # PLY is taken as Z-up
    np.testing.assert_allclose(from_ply.extents, (0.5 / 3, 1.0, 1 / 3), atol=1e-6)
    with pytest.raises(FileNotFoundError):
        load_mesh(tmp_path / "missing.obj")


def test_orbit_views_for_the_16_view_protocol(tmp_path):
    """--orbit appends views at one elevation, evenly spaced in azimuth, after the random ones."""
    from zero1to3.camera import camera_center, cartesian_to_spherical
    from zero1to3.cli import main

    assert main(["render", "-o", str(tmp_path), "--procedural", "1", "--views", "2", "--resolution", "32",
                 "--orbit", "4", "--orbit-elevation", "30", "--quiet"]) == 0
    folder = next(tmp_path.glob("proc_*"))
    assert sorted(p.name for p in folder.glob("*.png")) == [f"{i:03d}.png" for i in range(6)]
    for k in range(4):
        polar, azimuth, radius = cartesian_to_spherical(camera_center(np.load(folder / f"{k + 2:03d}.npy")))
        assert np.degrees(polar) == pytest.approx(60.0, abs=1e-3)
        assert np.degrees(azimuth) % 360 == pytest.approx(90.0 * k, abs=1e-3)
        assert radius == pytest.approx(2.0, abs=1e-4)


def test_object_light_is_deterministic_per_object_and_varies_between_objects() -> None:
    from zero1to3.data.writer import object_light

    a, a_again, b = object_light(7, "chair_01"), object_light(7, "chair_01"), object_light(7, "lamp_02")
    assert a == a_again and a != b and object_light(8, "chair_01") != a
    for light in (a, b):  # a key light plus 1-2 fills, ambient and a mild highlight
        assert 2 <= len(light.lights()) <= 3 and 0.35 <= light.ambient <= 0.55 and 0.0 <= light.specular <= 0.25
    sphere = _coloured(trimesh.creation.icosphere(subdivisions=3, radius=0.5), (180, 180, 180))
    pose = look_at((0.0, -2.0, 0.0))
    image_a = render_views(sphere, pose, 48, light=a, msaa=False).rgba[0]
    np.testing.assert_array_equal(image_a, render_views(sphere, pose, 48, light=a_again, msaa=False).rgba[0])
    image_b = render_views(sphere, pose, 48, light=b, msaa=False).rgba[0]
    assert np.abs(image_a[..., :3].astype(int) - image_b[..., :3].astype(int)).mean() > 3


def test_fill_light_and_specular_add_light() -> None:
    sphere = _coloured(trimesh.creation.icosphere(subdivisions=3, radius=0.5), (120, 120, 120))
    pose = look_at((0.0, -2.0, 0.0))
    key = Light(direction=(0.0, -1.0, 0.0), intensity=0.5, ambient=0.2)
    with_fill = Light(direction=(0.0, -1.0, 0.0), intensity=0.5, ambient=0.2, fill=(((1.0, 0.0, 0.0), 0.4),))
    shiny = Light(direction=(0.0, -1.0, 0.0), intensity=0.5, ambient=0.2, specular=0.5, shininess=16.0)
    base, filled, glossy = (render_views(sphere, pose, 64, light=light, msaa=False).rgba[0].astype(int)
                            for light in (key, with_fill, shiny))
    # Sphere centre faces the camera and the key light: Lambert 0.2 + 0.5 = 0.7 of the albedo.
    assert abs(base[32, 32, 0] - 0.7 * 120) <= 3
    # The fill from +X (image right) brightens the right side only.
    assert filled[32, 44, 0] > base[32, 44, 0] + 20 and abs(filled[32, 20, 0] - base[32, 20, 0]) <= 2
    # Light and camera coincide: the Blinn-Phong highlight peaks at the centre, adding
    # intensity * specular * 255 = 0.5 * 0.5 * 255 there, and fades towards the rim.
    assert abs(glossy[32, 32, 0] - base[32, 32, 0] - 64) <= 3
    assert glossy[32, 44, 0] - base[32, 44, 0] < 20
    with pytest.raises(ValueError):
        Light(fill=((((1.0, 0, 0)), 0.1),) * 4).lights()
