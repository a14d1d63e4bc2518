"""Stand-ins for :class:`zero1to3.pipeline.Zero123Pipeline` that obey the small interface recon uses.

* :class:`FakePipeline`: a tiny random torch model (shapes and dtypes only): fast plumbing tests.
* :class:`OraclePipeline`: "knows" a ground-truth field and predicts the noise that denoises towards
  that object's true render from the camera the pose vector describes. Score distillation through it
  is multi-view reconstruction, so it checks camera and pose-vector conventions end to end, and its
  sampler returns true renders (for the elevation estimate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zero1to3.recon.field import VoxelField
from zero1to3.camera import camera_at


def scaled_linear_alphas_cumprod(num_steps: int = 1000) -> torch.Tensor:
    """SD's "scaled linear" schedule (SPEC §2): betas = linspace(sqrt(0.00085), sqrt(0.012))^2."""
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), num_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


class FakeScheduler:
    def __init__(self) -> None:
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.config = type("Cfg", (), {"num_train_timesteps": 1000})()


@dataclass
class FakeConditioning:
    clip_embedding: torch.Tensor
    concat_latent: torch.Tensor


@dataclass
class FakeOutput:
    array: np.ndarray


class FakePipeline(nn.Module):
    """Random tiny "VAE" (avg-pool + 1x1 conv) and "UNet" (one 3x3 conv) with the pipeline's interface."""

    def __init__(self, image_size: int = 32, factor: int = 4, embed_dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.image_size, self.factor = image_size, factor
        self.scheduler = FakeScheduler()
        self.vae = nn.Conv2d(3, 4, 1)
        self.clip = nn.Linear(3, embed_dim)
        self.unet = nn.Conv2d(8, 4, 3, padding=1)
        self.pose = nn.Linear(4 + embed_dim, 4)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.vae.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.weight.dtype

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae(F.avg_pool2d(x, self.factor)) * 0.18215

    def encode_condition(self, x: torch.Tensor) -> FakeConditioning:
        return FakeConditioning(self.clip(x.mean((2, 3)))[:, None], self.vae(F.avg_pool2d(x, self.factor)))

    def guided_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: FakeConditioning,
                     pose_vectors: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        ctx = torch.cat([cond.clip_embedding[:, 0], pose_vectors], -1)
        e_c = self.unet(torch.cat([x_t, cond.concat_latent], 1)) + self.pose(ctx)[:, :, None, None]
        e_u = self.unet(torch.cat([x_t, torch.zeros_like(cond.concat_latent)], 1))
        return e_u + guidance_scale * (e_c - e_u)

    def __call__(self, image, poses, num_samples: int = 1, **_: object) -> FakeOutput:  # type: ignore[override]
        return FakeOutput(np.full((len(poses), num_samples, self.image_size, self.image_size, 3), 255,
                                  np.uint8))


class OraclePipeline:
    """Predicts the exact noise towards ``gt_field``'s render at the camera a pose vector describes."""

    def __init__(self, gt_field: VoxelField, ref_elevation_deg: float, ref_radius: float, fov_deg: float,
                 image_size: int = 32, factor: int = 4) -> None:
        self.gt = gt_field
        self.device, self.dtype = gt_field.density.device, torch.float32
        self.ref_elevation, self.ref_radius, self.fov = ref_elevation_deg, ref_radius, fov_deg
        self.image_size, self.factor = image_size, factor
        self.scheduler = FakeScheduler()

    def camera_of(self, pose: np.ndarray) -> np.ndarray:
        """Absolute camera of a pose vector [d_polar, sin, cos, d_r] relative to the input camera."""
        elevation = self.ref_elevation - math.degrees(float(pose[0]))
        azimuth = math.degrees(math.atan2(float(pose[1]), float(pose[2])))
        return camera_at(elevation, azimuth, self.ref_radius + float(pose[3]))

    @torch.no_grad()
    def render(self, poses: np.ndarray) -> torch.Tensor:
        cams = np.stack([self.camera_of(p) for p in poses])
        out = self.gt.render(cams, self.fov, self.image_size)
        return out.rgb.permute(0, 3, 1, 2) * 2.0 - 1.0

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, self.factor)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1)

    def encode_condition(self, x: torch.Tensor) -> FakeConditioning:
        return FakeConditioning(torch.zeros(x.shape[0], 1, 8, device=x.device), self.encode_latents(x))

    def guided_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: FakeConditioning,
                     pose_vectors: torch.Tensor, guidance_scale: float) -> torch.Tensor:
        target = self.encode_latents(self.render(pose_vectors.cpu().numpy()))
        t = torch.as_tensor(t).long().cpu().reshape(-1)
        a_t = self.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1).to(x_t.device)
        return (x_t - a_t.sqrt() * target) / (1.0 - a_t).sqrt()

    def __call__(self, image, poses, num_samples: int = 1, **_: object) -> FakeOutput:
        vecs = np.stack([p.vector() for p in poses])
        imgs = ((self.render(vecs) + 1.0) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        return FakeOutput(np.repeat(imgs[:, None], num_samples, axis=1))
