"""A dense voxel radiance field (density + RGB) with volume rendering, in plain PyTorch.

Why a dense grid: on one GPU a 128^3 grid is a few tens of MB, trilinear ``grid_sample`` is a single fused
kernel, and no custom CUDA (hash grids, tiny-cuda-nn) is needed. The object lives in the box
``[-bound, bound]^3`` (objects are normalised to a unit box, SPEC §4), +Z is up.

Cameras are world->camera [R|t] matrices in the Blender convention used everywhere in this package
(``zero1to3.camera``): the camera looks down its -Z axis, +Y is up in the image, pixel x grows to the
right and pixel y grows downwards. The field of view is the horizontal (= vertical, images are square) one.

Storage order: grids are ``[1, C, Z, Y, X]`` so that ``grid_sample`` takes points as (x, y, z) directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zero1to3.camera import camera_center, focal_length_pixels

#: Transmittance below which a ray is considered finished (early ray termination).
DEFAULT_MIN_TRANSMITTANCE = 1e-3
#: Density (per world unit) below which a cell counts as empty for space skipping. A sample of length one
#: voxel (2/127 at 128^3) then has opacity < 2e-4: invisible.
DEFAULT_OCCUPANCY_THRESHOLD = 0.01


@dataclass
class RenderOutput:
    """What :meth:`VoxelField.render` returns; leading batch dim only if several cameras were given.

    ``rgb`` [..., H, W, 3] in [0, 1] composited on the background, ``alpha`` [..., H, W] accumulated
    opacity, ``depth`` [..., H, W] expected camera-space depth (distance along -Z; 0 where empty),
    ``normal`` [..., H, W, 3] world-space unit normals (or None when not requested).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor | None = None


def _as_tensor(matrix, device: torch.device) -> torch.Tensor:
    if isinstance(matrix, torch.Tensor):
        out = matrix.detach().to(device=device, dtype=torch.float32)
    else:
        out = torch.as_tensor(np.asarray(matrix, dtype=np.float32), device=device)
    if out.shape[-2:] == (4, 4):
        out = out[..., :3, :]
    if out.shape[-2:] != (3, 4):
        raise ValueError(f"expected world->camera matrices [..., 3, 4], got {tuple(out.shape)}")
    return out


def camera_rays(world_to_camera: torch.Tensor, fov_deg: float, resolution: int,
                jitter: bool = False, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and directions [B, H*W, 3] of pinhole cameras; directions have camera-z = -1.

    Directions are *not* normalised: with camera-space z = -1, the ray parameter t equals the
    camera-space depth, which makes depth maps free.
    """
    device = world_to_camera.device
    rot = world_to_camera[:, :, :3]
    focal = focal_length_pixels(resolution, fov_deg)
    idx = torch.arange(resolution, device=device, dtype=torch.float32)
    v, u = torch.meshgrid(idx, idx, indexing="ij")
    u, v = u.reshape(-1) + 0.5, v.reshape(-1) + 0.5
    if jitter:
        u = u + torch.rand(u.shape, device=device, generator=generator) - 0.5
        v = v + torch.rand(v.shape, device=device, generator=generator) - 0.5
    cam_dirs = torch.stack([(u - resolution / 2.0) / focal, -(v - resolution / 2.0) / focal,
                            -torch.ones_like(u)], dim=-1)                          # [N, 3]
    dirs = torch.einsum("bji,nj->bni", rot, cam_dirs)                               # R^T d
    origins = camera_center(world_to_camera)
    return origins[:, None, :].expand_as(dirs), dirs


def _box_intersection(origins: torch.Tensor, dirs: torch.Tensor, bound: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit ray parameters of the box [-bound, bound]^3 (slab method); exit <= entry: miss."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-bound - origins) / safe
    t1 = (bound - origins) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


class VoxelField(nn.Module):
    """Density + RGB on a dense grid of ``resolution^3`` vertices spanning ``[-bound, bound]^3``.

    Density is ``softplus(raw)`` (per world unit), colour is ``sigmoid(raw)``. The occupancy grid is a
    conservative per-cell "could this cell be visible" estimate used to skip empty space.
    """

    def __init__(self, resolution: int = 64, bound: float = 1.0, init: str = "blob",
                 blob_radius: float = 0.5, blob_density: float = 10.0,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if resolution < 4:
            raise ValueError(f"grid resolution must be >= 4, got {resolution}")
        self.bound = float(bound)
        self.density = nn.Parameter(torch.zeros(1, 1, resolution, resolution, resolution, device=device))
        self.color = nn.Parameter(torch.zeros(1, 3, resolution, resolution, resolution, device=device))
        self.register_buffer("occupancy", torch.ones(1, 1, resolution - 1, resolution - 1, resolution - 1,
                                                     dtype=torch.bool, device=device))
        with torch.no_grad():
            if init == "blob":
                # DreamFusion-style density bias: a soft ball at the centre gives SDS a surface to shape.
                radius = self.coordinates().norm(dim=-1)                      # [Z, Y, X]
                self.density.copy_((blob_density * (1.0 - radius / blob_radius))[None, None])
            elif init == "empty":
                self.density.fill_(-5.0)
            else:
                raise ValueError(f"unknown init {init!r} (blob or empty)")
        self.update_occupancy()

    # ----------------------------------------------------------------------------------------- grid
    @property
    def resolution(self) -> int:
        return int(self.density.shape[-1])

    @property
    def voxel_size(self) -> float:
        return 2.0 * self.bound / (self.resolution - 1)

    def coordinates(self, resolution: int | None = None) -> torch.Tensor:
        """World coordinates (x, y, z) of the grid vertices, shape [Z, Y, X, 3]."""
        res = resolution or self.resolution
        lin = torch.linspace(-self.bound, self.bound, res, device=self.density.device)
        z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    def sigma_grid(self) -> torch.Tensor:
        """Density at the grid vertices, [Z, Y, X] (differentiable)."""
        return F.softplus(self.density[0, 0])

    def set_density(self, sigma: torch.Tensor) -> None:
        """Set the grid from a density volume [Z, Y, X] (inverse softplus; used by tests and baselines)."""
        sigma = sigma.to(self.density).clamp_min(1e-6)
        with torch.no_grad():
            self.density.copy_(torch.where(sigma > 20, sigma, torch.log(torch.expm1(sigma)))[None, None])
        self.update_occupancy()

    @torch.no_grad()
    def upsample(self, resolution: int) -> None:
        """Coarse-to-fine: resample both grids trilinearly to ``resolution``^3 (new Parameters).

        The optimiser must be rebuilt afterwards (the old Parameters are gone).
        """
        if resolution == self.resolution:
            return
        size = (resolution,) * 3
        self.density = nn.Parameter(F.interpolate(self.density.data, size=size, mode="trilinear",
                                                  align_corners=True))
        self.color = nn.Parameter(F.interpolate(self.color.data, size=size, mode="trilinear",
                                                align_corners=True))
        self.update_occupancy()

    @torch.no_grad()
    def update_occupancy(self, threshold: float = DEFAULT_OCCUPANCY_THRESHOLD, dilate: int = 0) -> float:
        """Recompute the per-cell occupancy; returns the occupied fraction.

        A cell is occupied if any of its 8 corner densities exceeds ``threshold``: trilinear
        interpolation never exceeds the corner maximum, so skipping unoccupied cells is exact up to the
        threshold. ``dilate`` grows the occupied set by that many cells so surfaces can still expand
        during optimisation (skipped cells get no gradient from the renderer).
        """
        sigma = self.sigma_grid()[None, None]
        cell_max = F.max_pool3d(sigma, kernel_size=2, stride=1)
        if dilate > 0:
            cell_max = F.max_pool3d(cell_max, kernel_size=2 * dilate + 1, stride=1, padding=dilate)
        self.occupancy = cell_max > threshold
        return float(self.occupancy.float().mean())

    def query(self, points: torch.Tensor, with_gradient: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Density [N], colour [N, 3] (and density gradient [N, 3] if asked) at world points [N, 3]."""
        grid = (points / self.bound).view(1, -1, 1, 1, 3)
        raw_d = F.grid_sample(self.density, grid, mode="bilinear", align_corners=True).view(-1)
        raw_c = F.grid_sample(self.color, grid, mode="bilinear", align_corners=True).view(3, -1).T
        grad = None
        if with_gradient:
            grad = F.grid_sample(self._sigma_gradient_grid(), grid, mode="bilinear",
                                 align_corners=True).view(3, -1).T
        return F.softplus(raw_d), torch.sigmoid(raw_c), grad

    def _sigma_gradient_grid(self) -> torch.Tensor:
        """Central-difference gradient of the density grid, [1, 3(x, y, z), Z, Y, X]; normals for free."""
        sigma = self.sigma_grid()
        padded = F.pad(sigma[None, None], (1, 1, 1, 1, 1, 1), mode="replicate")[0, 0]
        h = 2.0 * self.voxel_size
        gx = (padded[1:-1, 1:-1, 2:] - padded[1:-1, 1:-1, :-2]) / h
        gy = (padded[1:-1, 2:, 1:-1] - padded[1:-1, :-2, 1:-1]) / h
        gz = (padded[2:, 1:-1, 1:-1] - padded[:-2, 1:-1, 1:-1]) / h
        return torch.stack([gx, gy, gz])[None]

    def _occupied(self, points: torch.Tensor) -> torch.Tensor:
        cells = self.resolution - 1
        idx = ((points / self.bound + 1.0) * 0.5 * cells).long().clamp(0, cells - 1)
        return self.occupancy[0, 0, idx[:, 2], idx[:, 1], idx[:, 0]]

    # ------------------------------------------------------------------------------------ rendering
    def render(self, world_to_camera, fov_deg: float, resolution: int, *, background: float = 1.0,
               jitter: bool = False, skip_empty: bool = True,
               min_transmittance: float = DEFAULT_MIN_TRANSMITTANCE, with_normals: bool = False,
               step_scale: float = 1.0, chunk_samples: int = 64,
               generator: torch.Generator | None = None) -> RenderOutput:
        """Volume-render one camera [3, 4] (or a batch [B, 3, 4]) at ``resolution`` x ``resolution``.

        Samples are spaced ``step_scale`` voxels apart inside the box. Rays march in chunks of
        ``chunk_samples``; after each chunk rays whose transmittance fell below ``min_transmittance``
        stop (early termination), and inside a chunk only samples in occupied cells are evaluated
        (empty-space skipping). ``jitter`` randomises pixel and sample positions (anti-aliasing during
        optimisation).
        """
        device = self.density.device
        w2c = _as_tensor(world_to_camera, device)
        batched = w2c.dim() == 3
        if not batched:
            w2c = w2c[None]
        num_cams = w2c.shape[0]
        origins, dirs = camera_rays(w2c, fov_deg, resolution, jitter=jitter, generator=generator)
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        num_rays = origins.shape[0]
        near, far = _box_intersection(origins, dirs, self.bound)
        hit = far > near
        dir_len = dirs.norm(dim=-1)
        step = self.voxel_size * step_scale                                  # world units
        dt = step / dir_len                                                  # ray-parameter units
        max_len = float(((far - near).clamp_min(0) * dir_len).max()) if bool(hit.any()) else 0.0
        num_samples = int(math.ceil(max_len / step)) + 1
        offset = (torch.rand(num_rays, 1, device=device, generator=generator) if jitter
                  else torch.full((num_rays, 1), 0.5, device=device))

        rgb_acc = torch.zeros(num_rays, 3, device=device)
        depth_acc = torch.zeros(num_rays, device=device)
        alpha_acc = torch.zeros(num_rays, device=device)
        normal_acc = torch.zeros(num_rays, 3, device=device) if with_normals else None
        log_trans = torch.zeros(num_rays, device=device)                     # -optical depth so far
        active = torch.nonzero(hit).squeeze(-1)
        for start in range(0, num_samples, chunk_samples):
            if active.numel() == 0:
                break
            steps = torch.arange(start, min(start + chunk_samples, num_samples), device=device,
                                 dtype=torch.float32)
            t = near[active, None] + (steps[None] + offset[active]) * dt[active, None]   # [A, C]
            inside = t < far[active, None]
            pts = origins[active, None] + t[..., None] * dirs[active, None]
            valid = inside & (pts.abs() <= self.bound).all(-1)
            if skip_empty:
                flat_valid = valid.view(-1).clone()
                flat_valid[flat_valid.clone()] = self._occupied(pts.view(-1, 3)[flat_valid])
                valid = flat_valid.view_as(valid)
            sigma = torch.zeros(t.shape, device=device)
            color = torch.zeros(*t.shape, 3, device=device)
            grad = torch.zeros(*t.shape, 3, device=device) if with_normals else None
            if bool(valid.any()):
                s_v, c_v, g_v = self.query(pts[valid], with_gradient=with_normals)
                sigma = sigma.index_put((valid,), s_v)
                color = color.index_put((valid,), c_v)
                if with_normals:
                    grad = grad.index_put((valid,), g_v)
            tau = sigma * step                                                # optical depth per sample
            log_t_before = log_trans[active, None] - torch.cumsum(tau, dim=1) + tau   # exclusive
            weights = torch.exp(log_t_before) * (1.0 - torch.exp(-tau))
            rgb_acc = rgb_acc.index_add(0, active, (weights[..., None] * color).sum(1))
            depth_acc = depth_acc.index_add(0, active, (weights * t).sum(1))
            alpha_acc = alpha_acc.index_add(0, active, weights.sum(1))
            if with_normals:
                normal_acc = normal_acc.index_add(0, active, (weights[..., None] * -grad).sum(1))
            log_trans = log_trans.index_add(0, active, -tau.sum(1))
            still = t[:, -1] < far[active]
            if min_transmittance > 0:
                still &= log_trans[active] > math.log(min_transmittance)
            active = active[still]

        rgb = rgb_acc + (1.0 - alpha_acc[:, None]) * background
        shape = (num_cams, resolution, resolution)
        out = RenderOutput(rgb=rgb.view(*shape, 3), alpha=alpha_acc.view(shape),
                           depth=depth_acc.view(shape),
                           normal=F.normalize(normal_acc, dim=-1).view(*shape, 3) if with_normals else None)
        if not batched:
            out = RenderOutput(out.rgb[0], out.alpha[0], out.depth[0],
                               out.normal[0] if out.normal is not None else None)
        return out

    @torch.no_grad()
    def max_density(self, world_to_camera, fov_deg: float, resolution: int,
                    volume: torch.Tensor | None = None, step_scale: float = 0.5) -> torch.Tensor:
        """Per-pixel maximum density along each ray, [H, W] (of ``volume`` [Z, Y, X] if given).

        ``max_density > iso`` is exactly the silhouette of the iso-surface at level ``iso``, for every
        level at once: what the automatic iso-level search compares with the reference mask.
        """
        vol = (self.sigma_grid() if volume is None else volume.to(self.density))[None, None]
        w2c = _as_tensor(world_to_camera, self.density.device)[None]
        origins, dirs = camera_rays(w2c, fov_deg, resolution)
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        near, far = _box_intersection(origins, dirs, self.bound)
        dir_len = dirs.norm(dim=-1)
        step = self.voxel_size * step_scale
        max_len = float(((far - near).clamp_min(0) * dir_len).max())
        num_samples = int(math.ceil(max_len / step)) + 1
        best = torch.zeros(origins.shape[0], device=origins.device)
        for start in range(0, num_samples, 64):
            steps = torch.arange(start, min(start + 64, num_samples), device=origins.device,
                                 dtype=torch.float32)
            t = near[:, None] + (steps[None] + 0.5) * (step / dir_len)[:, None]
            pts = origins[:, None] + t[..., None] * dirs[:, None]
            inside = (t < far[:, None]) & (pts.abs() <= self.bound).all(-1)
            vals = F.grid_sample(vol, (pts / self.bound).view(1, -1, 1, 1, 3), mode="bilinear",
                                 align_corners=True).view(t.shape)
            best = torch.maximum(best, torch.where(inside, vals, torch.zeros_like(vals)).amax(1))
        return best.view(resolution, resolution)

    # ---------------------------------------------------------------------------------- regularisers
    def total_variation(self) -> torch.Tensor:
        """Mean squared difference of neighbouring raw densities: smooth, hole-free geometry."""
        d = self.density[0, 0]
        return ((d[1:] - d[:-1]).pow(2).mean() + (d[:, 1:] - d[:, :-1]).pow(2).mean()
                + (d[:, :, 1:] - d[:, :, :-1]).pow(2).mean())

    def state(self) -> dict:
        """Plain tensors (and the bound) for saving (``ReconResult.save`` writes them as safetensors)."""
        return {"density": self.density.detach().cpu(), "color": self.color.detach().cpu(),
                "bound": self.bound}

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str | None = None) -> "VoxelField":
        res = int(state["density"].shape[-1])
        field = cls(res, bound=state["bound"], init="empty", device=device)
        with torch.no_grad():
            field.density.copy_(state["density"])
            field.color.copy_(state["color"])
        field.update_occupancy()
        return field
