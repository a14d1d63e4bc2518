"""Camera math of Zero-1-to-3: the one home of every camera convention (numpy and torch, batched).

This module never imports torch: the batched functions take numpy arrays or torch tensors and compute
with the namespace of their input (a tensor's own ``torch``), so training can call them on the GPU.

Conventions (SPEC §4), which decide whether official weights produce correct images:

* World: objects centred at the origin, +Z is up.
* Spherical coordinates: *polar* is measured from the world +Z axis (0 = straight above, pi/2 = on the
  equator), *azimuth* = atan2(y, x), *radius* = distance from the origin. Elevation = pi/2 - polar.
* Poses in the released renders are **world->camera** 3x4 matrices [R|t] in the Blender camera convention
  (the camera looks down its -Z axis, +Y is up in the image). The camera centre is C = -R^T t.
* OpenGL/NeRF ``transform_matrix`` poses are camera->world 4x4 matrices with the same camera axes.
* The conditioning vector is T = [d_polar, sin d_azimuth, cos d_azimuth, d_radius] with
  d = target - input and d_azimuth taken mod 2 pi. A positive d_polar moves the camera *down*.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

#: Horizontal field of view of the reference renders (35 mm lens on a 32 mm sensor).
REFERENCE_FOV_DEG: float = math.degrees(2.0 * math.atan(16.0 / 35.0))
#: Camera distance range of the reference renders (world units, objects in a unit box).
REFERENCE_RADIUS_RANGE: tuple[float, float] = (1.5, 2.2)


class CameraError(ValueError):
    """A camera argument that cannot describe a real camera (NaN, wrong shape, zero radius)."""


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise CameraError(f"{name} must be a finite number, got {value!r}")
    return value


def _namespace(x: Any) -> Any:
    """torch for a tensor (already imported by whoever made it), numpy for anything else."""
    return sys.modules["torch"] if type(x).__module__.startswith("torch") else np


def spherical_to_cartesian(polar: float | np.ndarray, azimuth: float | np.ndarray,
                           radius: float | np.ndarray) -> np.ndarray:
    """Point(s) on a sphere; angles in radians, polar from +Z. Returns [..., 3]."""
    polar, azimuth, radius = np.broadcast_arrays(np.asarray(polar, np.float64),
                                                 np.asarray(azimuth, np.float64),
                                                 np.asarray(radius, np.float64))
    sin_p = np.sin(polar)
    return np.stack([radius * sin_p * np.cos(azimuth), radius * sin_p * np.sin(azimuth),
                     radius * np.cos(polar)], axis=-1)


def camera_position(elevation_deg: Any, azimuth_deg: Any, radius: Any) -> np.ndarray:
    """Camera centre(s) [..., 3] at elevation/azimuth (degrees) and distance: polar = 90 deg - elevation."""
    return spherical_to_cartesian(np.radians(90.0 - np.asarray(elevation_deg, np.float64)),
                                  np.radians(azimuth_deg), radius)


def cartesian_to_spherical(xyz: Any) -> tuple[Any, Any, Any]:
    """(polar, azimuth, radius) of point(s) [..., 3]; the inverse of :func:`spherical_to_cartesian`.

    numpy input is computed in float64; a tensor keeps its dtype and device.
    """
    xp = _namespace(xyz)
    if xp is np:
        xyz = np.asarray(xyz, np.float64)
    if xyz.shape[-1] != 3:
        raise CameraError(f"expected points of shape [..., 3], got {tuple(xyz.shape)}")
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    polar = xp.arctan2(xp.sqrt(x * x + y * y), z)
    azimuth = xp.arctan2(y, x)
    radius = xp.sqrt(x * x + y * y + z * z)
    return polar, azimuth, radius


def _check_rt(matrix: Any) -> Any:
    """[..., 3, 4] rotation|translation rows of world->camera matrices [..., 3|4, 4] (numpy: float64, finite)."""
    xp = _namespace(matrix)
    if xp is np:
        matrix = np.asarray(matrix, np.float64)
    if matrix.ndim < 2 or tuple(matrix.shape[-2:]) not in ((3, 4), (4, 4)):
        raise CameraError(f"expected 3x4 or 4x4 camera matrices, got shape {tuple(matrix.shape)}")
    if xp is np and not np.all(np.isfinite(matrix)):
        raise CameraError("camera matrix contains NaN or inf")
    return matrix[..., :3, :]


def camera_center(world_to_camera: Any) -> Any:
    """Centre(s) [..., 3] of world->camera [R|t] camera(s) [..., 3, 4]: C = -R^T t."""
    rt = _check_rt(world_to_camera)
    return -_namespace(rt).einsum("...ji,...j->...i", rt[..., :3], rt[..., 3])


def look_at(position: Any, target: Sequence[float] = (0.0, 0.0, 0.0),
            up: Sequence[float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """World->camera [R|t] ([..., 3, 4], Blender convention) of camera(s) at ``position`` [..., 3] looking at
    ``target``.

    The image's up direction is the projection of ``up``; at the poles, where ``up`` is parallel to the
    viewing direction, world +Y (or -Y) serves instead so the matrix stays a rotation.
    """
    position = np.asarray(position, np.float64)
    forward = np.asarray(target, np.float64) - position
    norm = np.linalg.norm(forward, axis=-1, keepdims=True)
    if not np.all(np.isfinite(norm)) or np.any(norm < 1e-12):
        raise CameraError("camera position must differ from its target and be finite")
    forward = forward / norm
    right = np.cross(forward, np.broadcast_to(np.asarray(up, np.float64), forward.shape))
    at_pole = np.linalg.norm(right, axis=-1, keepdims=True) < 1e-9
    side = np.where(forward[..., 2:] < 0, -1.0, 1.0) * np.array([0.0, 1.0, 0.0])
    right = np.where(at_pole, np.cross(forward, side), right)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    cam_up = np.cross(right, forward)
    # Rows are the camera axes in world coordinates: x = right, y = up, z = -forward (Blender/OpenGL).
    rotation = np.stack([right, cam_up, -forward], axis=-2)
    translation = -np.einsum("...ij,...j->...i", rotation, position)
    return np.concatenate([rotation, translation[..., None]], axis=-1)


def camera_at(elevation_deg: Any, azimuth_deg: Any, radius: Any) -> np.ndarray:
    """World->camera [R|t] ([..., 3, 4]) of camera(s) at elevation/azimuth (degrees)/distance looking at the origin."""
    return look_at(camera_position(elevation_deg, azimuth_deg, radius))


def camera_to_world_to_world_to_camera(camera_to_world: np.ndarray) -> np.ndarray:
    """Turn an OpenGL/NeRF camera->world matrix into the world->camera [R|t] used by the renders."""
    c2w = _check_rt(camera_to_world)
    rotation = c2w[:, :3].T
    return np.concatenate([rotation, (-rotation @ c2w[:, 3])[:, None]], axis=1)


def spherical_of_camera(world_to_camera: Any) -> Any:
    """(polar, azimuth, radius) [..., 3] of world->camera poses' centres, as the reference's ``cartesian_to_spherical``.

    Batched over leading dimensions (numpy or torch); for one 3x4 camera, a tuple of three floats.
    """
    polar, azimuth, radius = cartesian_to_spherical(camera_center(world_to_camera))
    if polar.ndim == 0:
        return float(polar), float(azimuth), float(radius)
    return _namespace(polar).stack([polar, azimuth, radius], -1)


def conditioning_vector(change: Any) -> Any:
    """Zero-1-to-3 pose vector(s) T = [d_polar, sin d_azimuth, cos d_azimuth, d_radius] [..., 4] of camera
    change(s) ``change`` = [..., (d_polar, d_azimuth, d_radius)] (target minus input, radians): the one
    definition of T (SPEC §4), for numpy and torch."""
    xp = _namespace(change)
    return xp.stack([change[..., 0], xp.sin(change[..., 1]), xp.cos(change[..., 1]), change[..., 2]], -1)


def relative_pose_vectors(target_world_to_camera: Any, input_world_to_camera: Any) -> Any:
    """T [..., 4] for batches of target and input world->camera poses (Blender convention)."""
    return conditioning_vector(spherical_of_camera(target_world_to_camera)
                               - spherical_of_camera(input_world_to_camera))


@dataclass(frozen=True)
class RelativePose:
    """A camera change from the input view to a target view.

    ``d_polar`` (radians, + moves the camera down), ``d_azimuth`` (radians, in [0, 2 pi)),
    ``d_radius`` (world units).
    """

    d_polar: float
    d_azimuth: float
    d_radius: float = 0.0

    def __post_init__(self) -> None:
        for name in ("d_polar", "d_azimuth", "d_radius"):
            _finite(name, getattr(self, name))
        object.__setattr__(self, "d_azimuth", float(self.d_azimuth) % (2.0 * math.pi))

    @classmethod
    def from_degrees(cls, d_polar: float, d_azimuth: float, d_radius: float = 0.0) -> "RelativePose":
        """The demo's sliders: polar and azimuth change in degrees, radius change in world units."""
        return cls(math.radians(_finite("polar", d_polar)), math.radians(_finite("azimuth", d_azimuth)),
                   _finite("radius", d_radius))

    @classmethod
    def between_elevations(cls, input_elevation_deg: float, elevation_deg: float, d_azimuth: float = 0.0,
                           d_radius: float = 0.0) -> "RelativePose":
        """From a camera at ``input_elevation_deg`` to one at ``elevation_deg`` (degrees above the equator).

        Polar = 90 deg - elevation, so going up in elevation is a negative polar change.
        """
        return cls.from_degrees(_finite("input_elevation", input_elevation_deg) - _finite("elevation", elevation_deg),
                                d_azimuth, d_radius)

    def degrees(self) -> tuple[float, float, float]:
        return math.degrees(self.d_polar), math.degrees(self.d_azimuth), self.d_radius

    def vector(self) -> np.ndarray:
        """Zero-1-to-3 conditioning vector T (:func:`conditioning_vector`), float32 [4]."""
        return conditioning_vector(np.array([self.d_polar, self.d_azimuth, self.d_radius])).astype(np.float32)

    def stable_vector(self, input_polar: float) -> np.ndarray:
        """Stable Zero123 vector: the 4th entry is the input view's absolute polar angle (radians)."""
        return np.array([self.d_polar, math.sin(self.d_azimuth), math.cos(self.d_azimuth),
                         _finite("input_polar", input_polar)], dtype=np.float32)


def relative_pose(target_world_to_camera: np.ndarray, input_world_to_camera: np.ndarray) -> RelativePose:
    """Relative pose between two world->camera [R|t] matrices (Blender convention), target first."""
    t_polar, t_azimuth, t_radius = spherical_of_camera(target_world_to_camera)
    c_polar, c_azimuth, c_radius = spherical_of_camera(input_world_to_camera)
    return RelativePose(t_polar - c_polar, t_azimuth - c_azimuth, t_radius - c_radius)


def relative_pose_from_camera_to_world(target_camera_to_world: np.ndarray,
                                       input_camera_to_world: np.ndarray) -> RelativePose:
    """Relative pose between two OpenGL/NeRF camera->world matrices, target first."""
    return relative_pose(camera_to_world_to_world_to_camera(target_camera_to_world),
                         camera_to_world_to_world_to_camera(input_camera_to_world))


def pose_vectors(poses: Iterable[RelativePose]) -> np.ndarray:
    """Stack the conditioning vectors of several relative poses: [N, 4] float32."""
    return np.stack([p.vector() for p in poses]).astype(np.float32)


def orbit(num_views: int, elevation_deg: float = 0.0, input_elevation_deg: float = 0.0,
          d_radius: float = 0.0, start_azimuth_deg: float = 0.0) -> list[RelativePose]:
    """``num_views`` cameras evenly spaced in azimuth at a fixed elevation, relative to the input view at
    ``input_elevation_deg`` (see :meth:`RelativePose.between_elevations`)."""
    if num_views < 1:
        raise CameraError(f"an orbit needs at least one view, got {num_views}")
    step = 360.0 / num_views
    return [RelativePose.between_elevations(input_elevation_deg, elevation_deg, start_azimuth_deg + i * step, d_radius)
            for i in range(num_views)]


def spiral(num_views: int, elevation_amplitude_deg: float = 20.0, input_elevation_deg: float = 0.0,
           turns: float = 1.0) -> list[RelativePose]:
    """A spiral: azimuth turns ``turns`` times while elevation swings by +-``elevation_amplitude_deg``."""
    if num_views < 1:
        raise CameraError(f"a spiral needs at least one view, got {num_views}")
    poses = []
    for i in range(num_views):
        frac = i / num_views
        elevation = input_elevation_deg + elevation_amplitude_deg * math.sin(2.0 * math.pi * frac)
        poses.append(RelativePose.between_elevations(input_elevation_deg, elevation, 360.0 * turns * frac))
    return poses


def sample_reference_cameras(rng: np.random.Generator, num_views: int,
                             radius_range: tuple[float, float] = REFERENCE_RADIUS_RANGE) -> np.ndarray:
    """World->camera poses [N, 3, 4] with the reference render distribution (SPEC §4).

    Direction: a uniform sample of the cube [-1, 1]^3, normalised (so not uniform on the sphere, as in
    the reference); radius uniform in ``radius_range``; looking at the origin with +Z up.
    """
    positions = []
    while len(positions) < num_views:
        direction = rng.uniform(-1.0, 1.0, size=3)
        norm = np.linalg.norm(direction)
        if norm < 1e-3:
            continue
        radius = rng.uniform(*radius_range)
        positions.append(direction / norm * radius)
    return look_at(np.stack(positions))


def focal_length_pixels(image_size: int, fov_deg: float = REFERENCE_FOV_DEG) -> float:
    """Focal length in pixels of a square image with the given horizontal field of view."""
    return 0.5 * image_size / math.tan(math.radians(fov_deg) / 2.0)


def perspective_projection(fov_deg: float = REFERENCE_FOV_DEG, near: float = 0.1,
                           far: float = 10.0) -> np.ndarray:
    """OpenGL clip-space projection (4x4) for a square image with the given field of view."""
    f = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
                     [0, 0, -1, 0]], dtype=np.float64)


def project_points(points: np.ndarray, world_to_camera: np.ndarray, image_size: int,
                   fov_deg: float = REFERENCE_FOV_DEG) -> np.ndarray:
    """Pixel coordinates (x right, y down; [N, 2]) of world points seen by a Blender-convention camera."""
    rt = _check_rt(world_to_camera)
    if rt.ndim != 2:
        raise CameraError(f"expected one 3x4 camera, got shape {rt.shape}")
    cam = np.asarray(points, np.float64) @ rt[:, :3].T + rt[:, 3]
    focal = focal_length_pixels(image_size, fov_deg)
    depth = -cam[:, 2]
    u = image_size / 2.0 + focal * cam[:, 0] / depth
    v = image_size / 2.0 - focal * cam[:, 1] / depth
    return np.stack([u, v], axis=-1)
