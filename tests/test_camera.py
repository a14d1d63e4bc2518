"""Camera math against hand-computed cases (SPEC §2, §4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zero1to3 import camera as cam


def test_spherical_round_trip_and_polar_from_plus_z():
    np.testing.assert_allclose(cam.spherical_to_cartesian(0.0, 0.0, 2.0), [0, 0, 2], atol=1e-12)
    np.testing.assert_allclose(cam.spherical_to_cartesian(math.pi / 2, math.pi / 2, 1.0), [0, 1, 0], atol=1e-12)
    pts = np.random.default_rng(0).normal(size=(50, 3))
    back = cam.spherical_to_cartesian(*cam.cartesian_to_spherical(pts))
    np.testing.assert_allclose(back, pts, atol=1e-12)


def test_look_at_is_world_to_camera_blender():
    pose = cam.look_at([2.0, 0.0, 0.0])
    rotation, t = pose[:, :3], pose[:, 3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(cam.camera_center(pose), [2, 0, 0], atol=1e-12)
    # the origin is straight ahead: camera looks down its -Z axis
    np.testing.assert_allclose(rotation @ np.zeros(3) + t, [0, 0, -2], atol=1e-12)
    # world +Z (up) maps to camera +Y (image up)
    assert (rotation @ np.array([0, 0, 1.0]))[1] == pytest.approx(1.0)


def test_relative_pose_sign_of_polar():
    """Moving the target camera down (towards the equator from above) is a positive d_polar."""
    above = cam.look_at(cam.spherical_to_cartesian(math.radians(30), 0, 2))
    lower = cam.look_at(cam.spherical_to_cartesian(math.radians(60), 0, 2))
    rel = cam.relative_pose(lower, above)
    assert rel.d_polar == pytest.approx(math.radians(30))
    assert rel.d_azimuth == pytest.approx(0.0)
    np.testing.assert_allclose(rel.vector(), [math.radians(30), 0, 1, 0], atol=1e-6)


def test_relative_azimuth_wraps_mod_2pi():
    a = cam.look_at(cam.spherical_to_cartesian(math.pi / 2, math.radians(350), 2))
    b = cam.look_at(cam.spherical_to_cartesian(math.pi / 2, math.radians(10), 2.5))
    rel = cam.relative_pose(b, a)
    assert math.degrees(rel.d_azimuth) == pytest.approx(20.0)
    assert rel.d_radius == pytest.approx(0.5)
    rel_back = cam.relative_pose(a, b)
    assert math.degrees(rel_back.d_azimuth) == pytest.approx(340.0)


def test_opengl_camera_to_world_gives_same_relative_pose():
    p1, p2 = cam.look_at([1.0, 1.0, 1.0]), cam.look_at([-1.5, 0.3, 0.2])
    c2w = [np.linalg.inv(np.vstack([p, [0, 0, 0, 1]])) for p in (p1, p2)]
    a = cam.relative_pose(p2, p1)
    b = cam.relative_pose_from_camera_to_world(c2w[1], c2w[0])
    np.testing.assert_allclose(a.vector(), b.vector(), atol=1e-6)


def test_stable_zero123_vector_uses_absolute_input_polar():
    rel = cam.RelativePose.from_degrees(10, 90, 0)
    v = rel.stable_vector(math.radians(90 - 30))
    np.testing.assert_allclose(v, [math.radians(10), 1, 0, math.radians(60)], atol=1e-6)


def test_demo_slider_vector():
    v = cam.RelativePose.from_degrees(-20, 60, 0.1).vector()
    np.testing.assert_allclose(v, [math.radians(-20), math.sin(math.radians(60)), math.cos(math.radians(60)), 0.1],
                               atol=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_angles_rejected(bad):
    with pytest.raises(cam.CameraError, match="finite"):
        cam.RelativePose.from_degrees(bad, 0, 0)
    with pytest.raises(cam.CameraError):
        cam.RelativePose.from_degrees(0, 0, bad)


def test_orbit_and_spiral():
    views = cam.orbit(4, elevation_deg=30, input_elevation_deg=0)
    assert [round(v.degrees()[1]) for v in views] == [0, 90, 180, 270]
    assert all(v.degrees()[0] == pytest.approx(-30) for v in views)  # higher camera = negative polar change
    spiral = cam.spiral(8, elevation_amplitude_deg=20)
    assert len(spiral) == 8 and min(v.degrees()[0] for v in spiral) == pytest.approx(-20)
    with pytest.raises(cam.CameraError):
        cam.orbit(0)


def test_reference_camera_distribution():
    poses = cam.sample_reference_cameras(np.random.default_rng(0), 200)
    radii = np.array([np.linalg.norm(cam.camera_center(p)) for p in poses])
    assert radii.min() >= 1.5 and radii.max() <= 2.2
    # every camera looks at the origin
    for p in poses[:20]:
        ahead = p[:, :3] @ np.zeros(3) + p[:, 3]
        assert ahead[0] == pytest.approx(0, abs=1e-9) and ahead[1] == pytest.approx(0, abs=1e-9) and ahead[2] < 0


def test_projection_of_hand_computed_point():
    pose = cam.look_at([0.0, -2.0, 0.0])  # camera on -Y looking at the origin, +Z up
    uv = cam.project_points(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5]]), pose, 256, fov_deg=90.0)
    np.testing.assert_allclose(uv[0], [128, 128])
    # focal = 128 px at 90 deg; a point 0.5 up at depth 2 lands 32 px above the centre
    np.testing.assert_allclose(uv[1], [128, 128 - 32])
    assert cam.REFERENCE_FOV_DEG == pytest.approx(49.13, abs=0.01)


def test_bad_matrix_shape():
    with pytest.raises(cam.CameraError, match="3x4"):
        cam.camera_center(np.eye(2))
    with pytest.raises(cam.CameraError, match="NaN"):
        cam.camera_center(np.full((3, 4), np.nan))


def test_batched_camera_math_equals_one_camera_at_a_time_in_numpy_and_torch():
    """The one definition of C = -R^T t, spherical coordinates and T, batched, on numpy and torch alike."""
    import torch

    rng = np.random.default_rng(3)
    poses = cam.sample_reference_cameras(rng, 12).reshape(3, 4, 3, 4)
    centres = cam.camera_center(poses)
    assert centres.shape == (3, 4, 3)
    for i in range(3):
        for j in range(4):
            rt = poses[i, j]
            np.testing.assert_allclose(centres[i, j], -rt[:, :3].T @ rt[:, 3], atol=1e-12)
    np.testing.assert_allclose(cam.camera_center(torch.from_numpy(poses)).numpy(), centres, atol=1e-12)
    sph = cam.spherical_of_camera(poses)
    assert sph.shape == (3, 4, 3)
    np.testing.assert_allclose(sph[1, 2], cam.spherical_of_camera(poses[1, 2]), atol=1e-12)
    vectors = cam.relative_pose_vectors(poses[:, :, None], poses[:, None, :])  # every ordered pair
    assert vectors.shape == (3, 4, 4, 4)
    for i, a, b in ((0, 1, 2), (2, 3, 0), (1, 0, 3)):
        np.testing.assert_allclose(vectors[i, a, b], cam.relative_pose(poses[i, a], poses[i, b]).vector(), atol=1e-6)
    on_torch = cam.relative_pose_vectors(torch.from_numpy(poses[:, :, None]), torch.from_numpy(poses[:, None, :]))
    assert torch.is_tensor(on_torch)
    np.testing.assert_allclose(on_torch.numpy(), vectors, atol=1e-12)


def test_camera_at_batched_and_at_the_poles():
    elevations = np.array([90.0, -90.0, 30.0, 0.0])
    azimuths = np.array([0.0, 45.0, 120.0, 270.0])
    poses = cam.camera_at(elevations, azimuths, 2.0)
    assert poses.shape == (4, 3, 4)
    for k in range(4):
        np.testing.assert_allclose(poses[k], cam.camera_at(elevations[k], azimuths[k], 2.0), atol=1e-12)
        rotation = poses[k, :, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        polar, azimuth, radius = cam.spherical_of_camera(poses[k])
        assert 90 - math.degrees(polar) == pytest.approx(elevations[k]) and radius == pytest.approx(2.0)
    # an orbit by camera_at matches the relative orbit the model is asked for
    ring = cam.camera_at(30.0, np.arange(4) * 90.0, 2.0)
    rel = cam.orbit(4, elevation_deg=30.0, input_elevation_deg=30.0)
    for k in range(4):
        np.testing.assert_allclose(cam.relative_pose(ring[k], ring[0]).vector(), rel[k].vector(), atol=1e-6)


def test_between_elevations_is_the_one_elevation_rule() -> None:
    from zero1to3.camera import RelativePose, orbit, spiral

    up = RelativePose.between_elevations(10.0, 40.0, 90.0, 0.5)  # camera moves up 30 deg: polar shrinks
    assert up.degrees() == pytest.approx((-30.0, 90.0, 0.5))
    assert [p.degrees() for p in orbit(2, elevation_deg=40.0, input_elevation_deg=10.0)] == \
        [pytest.approx((-30.0, 0.0, 0.0)), pytest.approx((-30.0, 180.0, 0.0))]
    assert spiral(4, elevation_amplitude_deg=20.0, input_elevation_deg=5.0)[1].degrees() == \
        pytest.approx((-20.0, 90.0, 0.0))
    with pytest.raises(Exception, match="elevation"):
        RelativePose.between_elevations(float("nan"), 0.0)
