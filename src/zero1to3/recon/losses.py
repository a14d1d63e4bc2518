"""Losses of image-to-3D: score distillation through Zero-1-to-3, reference-view terms, regularisers.

All settings (and every loss weight, with where its default comes from) live in :class:`ReconConfig`.
The score-distillation loss talks to the pipeline only through a small interface, so a fake can stand in
during tests:

``pipe.image_size``, ``pipe.encode_condition(x) -> (.clip_embedding, .concat_latent)``,
``pipe.encode_latents(x)`` (differentiable, [-1, 1] image -> scaled latent),
``pipe.guided_noise(x_t, t, cond, pose_vectors, guidance_scale) -> eps``,
``pipe.scheduler.alphas_cumprod``, ``pipe.device``, ``pipe.dtype``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from ..camera import REFERENCE_FOV_DEG


@dataclass
class ReconConfig:
    """Every knob of :func:`zero1to3.recon.reconstruct`, with its default and why.

    Loss weights follow the most used public SDS recipe for Zero-1-to-3 (SPEC §7) where it has the same
    term (score 0.1 with a sum-reduced SDS loss, reference RGB 500 and mask 50 as means, sparsity and
    opacity 0.1); near-view and density-TV weights are ours. A weight of 0 switches a term off.
    """

    # --- schedule -------------------------------------------------------------------------------
    steps: int = 600                     #: optimisation steps (SPEC §7: 600)
    batch_size: int = 4                  #: novel views per score-distillation step
    lr: float = 0.05                     #: Adam learning rate of the raw grid values (dense grid: >0.01)
    seed: int = 0
    grid_resolutions: tuple[int, ...] = (64, 96, 128)     #: coarse-to-fine grid sizes ...
    render_resolutions: tuple[int, ...] = (64, 96, 128)   #: ... and render sizes ...
    milestones: tuple[float, ...] = (0.0, 0.3, 0.6)       #: ... from these fractions of the steps
    occupancy_every: int = 16            #: steps between occupancy-grid (empty-space) refreshes
    # --- cameras (SPEC §4/§7) ---------------------------------------------------------------------
    elevation_deg: float = 0.0           #: elevation of the input view (used unless estimated)
    estimate_elevation: bool = False     #: score candidate elevations with the model instead
    elevation_candidates: tuple[float, ...] = (-20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0)
    radius: float = 2.0                  #: camera distance (SJC recipe; training renders: 1.5-2.2)
    fov_deg: float = REFERENCE_FOV_DEG   #: 49.1 deg, the training renders' field of view
    novel_elevation_range: tuple[float, float] = (-10.0, 40.0)  #: absolute elevations of sampled views
    near_view_jitter: float = 0.05       #: camera-position jitter of the near-view term (SJC: 0.05)
    stable_pose: bool = False            #: Stable Zero123 pose vector (4th entry = input polar)
    # --- score distillation (SPEC §7) -------------------------------------------------------------
    guidance_scale: float = 3.0
    t_range_start: tuple[float, float] = (0.4, 0.85)   #: timestep window (fraction of 1000) at step 0
    t_range_end: tuple[float, float] = (0.2, 0.5)      #: ... annealed linearly to this window ...
    t_anneal_fraction: float = 1.0 / 3.0               #: ... by this fraction of the steps (200/600)
    # --- loss weights ----------------------------------------------------------------------------
    w_sds: float = 0.1                   #: score distillation (sum over latent elements / batch)
    w_rgb: float = 500.0                 #: reference view RGB, mean squared error
    w_mask: float = 50.0                 #: reference view opacity vs mask, mean squared error
    w_near: float = 50.0                 #: near-view consistency (jittered reference camera), MSE
    w_tv: float = 1.0                    #: total variation of raw density (smooth, hole-free)
    w_sparsity: float = 0.1              #: mean squared opacity of novel views (no floaters)
    w_opacity: float = 0.1               #: binary entropy of novel-view opacity (crisp surfaces)
    # --- mesh --------------------------------------------------------------------------------------
    mesh_smooth: float = 0.5             #: Gaussian smoothing of density before marching cubes (voxels)
    iso_level: float | None = None       #: None = automatic (reference-silhouette match)
    keep_largest_component: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (len(self.grid_resolutions) == len(self.render_resolutions) == len(self.milestones)):
            raise ValueError("grid_resolutions, render_resolutions and milestones must have equal length")
        if self.radius <= 1.0 * math.sqrt(3):
            # The camera must be outside the box [-1, 1]^3 the field lives in.
            raise ValueError(f"radius {self.radius} puts the camera inside the object box (need > 1.74)")
        for name in ("w_sds", "w_rgb", "w_mask", "w_near", "w_tv", "w_sparsity", "w_opacity"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    def stage(self, step: int) -> int:
        """Index of the coarse-to-fine stage at ``step``."""
        frac = step / max(self.steps, 1)
        return max(i for i, m in enumerate(self.milestones) if frac >= m)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReconConfig":
        known = {f.name for f in fields(cls)}
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**clean)


def timestep_range(step: int, config: ReconConfig) -> tuple[float, float]:
    """The annealed timestep window (fractions of the schedule) at ``step``."""
    end_step = max(config.t_anneal_fraction * config.steps, 1.0)
    k = min(step / end_step, 1.0)
    lo = config.t_range_start[0] + k * (config.t_range_end[0] - config.t_range_start[0])
    hi = config.t_range_start[1] + k * (config.t_range_end[1] - config.t_range_start[1])
    return lo, hi


def sample_timestep(step: int, config: ReconConfig, num_train_timesteps: int,
                    generator: torch.Generator | None = None) -> int:
    """One diffusion timestep drawn uniformly from the annealed window."""
    lo, hi = timestep_range(step, config)
    u = float(torch.rand((), generator=generator))
    return int(min(max(round((lo + u * (hi - lo)) * num_train_timesteps), 1), num_train_timesteps - 1))


@dataclass
class SDSInfo:
    timestep: int
    grad_norm: float


def _repeat_condition(cond: Any, batch: int) -> Any:
    """``cond`` with its tensors repeated to ``batch`` (keeps the caller's condition class)."""
    if cond.clip_embedding.shape[0] == batch:
        return cond
    import copy

    out = copy.copy(cond)
    for name in ("clip_embedding", "concat_latent"):
        value = getattr(cond, name)
        setattr(out, name, value.expand(batch, *value.shape[1:]).contiguous())
    return out


def sds_loss(pipe: Any, images: torch.Tensor, cond: Any, pose_vectors: torch.Tensor, timestep: int,
             guidance_scale: float = 3.0, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, SDSInfo]:
    """Score distillation through Zero-1-to-3: gradient w(t) (eps_hat - eps) on the rendered latents.

    ``images`` [B, 3, H, W] in [0, 1] (renders, any size: resized to ``pipe.image_size``). The model is
    never differentiated (its call runs under no_grad); only the VAE encoder is, to carry the gradient
    to pixels. Returned as a loss whose gradient w.r.t. the latents is the SDS gradient: 0.5 * |z - sg(z
    - g)|^2 summed over latent elements and averaged over the batch (the public recipe's scale).
    """
    batch = images.shape[0]
    size = int(pipe.image_size)
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    latents = pipe.encode_latents((images * 2.0 - 1.0).to(pipe.dtype)).float()
    alphas = pipe.scheduler.alphas_cumprod.to(latents.device, torch.float32)
    a_t = alphas[timestep]
    noise = torch.randn(latents.shape, generator=generator, device=latents.device)
    with torch.no_grad():
        noisy = a_t.sqrt() * latents + (1.0 - a_t).sqrt() * noise
        t = torch.full((batch,), timestep, device=latents.device, dtype=torch.long)
        eps = pipe.guided_noise(noisy.to(pipe.dtype), t, _repeat_condition(cond, batch),
                                pose_vectors.to(latents.device, pipe.dtype), guidance_scale).float()
        grad = torch.nan_to_num((1.0 - a_t) * (eps - noise))
    target = (latents - grad).detach()
    loss = 0.5 * (latents - target).pow(2).sum() / batch
    return loss, SDSInfo(timestep, float(grad.norm()) / math.sqrt(batch))


def reference_losses(rgb: torch.Tensor, alpha: torch.Tensor, ref_rgb: torch.Tensor, ref_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(RGB MSE, mask MSE) of the reference-camera render [H, W, 3], [H, W] vs the input [3, H', W'], [H', W'].

    The input is resized to the render size (area filter) so every coarse-to-fine stage compares like
    with like.
    """
    res = rgb.shape[0]
    target_rgb = F.interpolate(ref_rgb[None], size=(res, res), mode="area")[0].permute(1, 2, 0)
    target_mask = F.interpolate(ref_mask[None, None], size=(res, res), mode="area")[0, 0]
    return F.mse_loss(rgb, target_rgb), F.mse_loss(alpha, target_mask)


def near_view_loss(rgb: torch.Tensor, ref_rgb: torch.Tensor) -> torch.Tensor:
    """MSE between a render from a camera jittered around the input view and the input image.

    A camera 0.05 away sees almost the input image, so this ties the surface *depth* near the input
    view (which the reference term alone leaves free) at the cost of one extra render.
    """
    res = rgb.shape[0]
    target = F.interpolate(ref_rgb[None], size=(res, res), mode="area")[0].permute(1, 2, 0)
    return F.mse_loss(rgb, target)


def sparsity_loss(alpha: torch.Tensor) -> torch.Tensor:
    """Mean squared opacity of novel views: empty space should stay empty."""
    return alpha.pow(2).mean()


def opacity_entropy_loss(alpha: torch.Tensor) -> torch.Tensor:
    """Binary entropy of opacity: pushes every pixel towards fully empty or fully opaque."""
    a = alpha.clamp(1e-5, 1.0 - 1e-5)
    return -(a * torch.log(a) + (1.0 - a) * torch.log(1.0 - a)).mean()


def total_variation_loss(field: Any) -> torch.Tensor:
    """Total variation of the field's raw density (see :meth:`VoxelField.total_variation`)."""
    return field.total_variation()


#: The loss terms and the config weight of each (the CLI builds one flag per entry).
LOSS_WEIGHTS: dict[str, str] = {
    "sds": "w_sds", "rgb": "w_rgb", "mask": "w_mask", "near": "w_near", "tv": "w_tv",
    "sparsity": "w_sparsity", "opacity": "w_opacity",
}
