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

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zero1to3.protocols import Condition, ScoreModel

from .config import ReconConfig

__all__ = ["ReconConfig", "sds_loss", "reference_losses", "near_view_loss", "sparsity_loss",
           "opacity_entropy_loss", "total_variation_loss", "timestep_range", "sample_timestep"]


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
    device = generator.device if generator is not None else None
    u = float(torch.rand((), generator=generator, device=device))
    return int(min(max(round((lo + u * (hi - lo)) * num_train_timesteps), 1), num_train_timesteps - 1))


@dataclass
class SDSInfo:
    timestep: int
    grad_norm: float


def _repeat_condition(cond: Any, batch: int) -> Any:
    """``cond`` with its tensors repeated to ``batch`` (keeps the caller's condition class)."""
    if cond.clip_embedding.shape[0] == batch:
        return cond

    out = copy.copy(cond)
    for name in ("clip_embedding", "concat_latent"):
        value = getattr(cond, name)
        setattr(out, name, value.expand(batch, *value.shape[1:]).contiguous())
    return out


def sds_loss(pipe: ScoreModel, images: torch.Tensor, cond: Condition, pose_vectors: torch.Tensor, timestep: int,
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
        # One timestep for the whole batch, passed as an int (the pipeline broadcasts it).
        eps = pipe.guided_noise(noisy.to(pipe.dtype), int(timestep), _repeat_condition(cond, batch),
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
