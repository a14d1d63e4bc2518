"""What the features need from a pipeline, as typed interfaces (PEP 544 protocols).

Image-to-3D, evaluation and the fast path are written against these, not against
:class:`zero1to3.pipeline.Zero123Pipeline`, so a test double or another model can stand in, the feature
modules never import the pipeline, and the fast path (which the pipeline imports) has no import cycle.
``Zero123Pipeline`` satisfies all three (tests/test_contracts.py checks the signatures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # annotations only: this module stays importable without torch
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    from zero1to3.camera import RelativePose


class Views(Protocol):
    """A sampler's result: uint8 views [poses, samples, H, W, 3]."""

    array: np.ndarray


class Condition(Protocol):
    """The input image, encoded once per request (CLIP embedding and the unscaled VAE latent)."""

    clip_embedding: torch.Tensor
    concat_latent: torch.Tensor


@runtime_checkable
class ViewSampler(Protocol):
    """What evaluation needs: novel views of one framed input image (``image_size`` px, object on white)."""

    @property
    def image_size(self) -> int: ...

    def __call__(self, image: Any, poses: Sequence[RelativePose], *, num_samples: int = ...,
                 guidance_scale: float = ..., num_inference_steps: int = ..., scheduler: str = ...,
                 eta: float = ..., seed: int | None = ..., preprocess: bool = ...,
                 input_polar: float | None = ..., batch_size: int | None = ...) -> Views: ...


@runtime_checkable
class ScoreModel(ViewSampler, Protocol):
    """What image-to-3D needs: the guided denoiser for score distillation (and sampling for the elevation)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def scheduler(self) -> Any: ...  # a diffusers scheduler: ``alphas_cumprod`` and ``config`` are read

    def encode_condition(self, images: torch.Tensor) -> Condition: ...

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor: ...

    def guided_noise(self, x_t: torch.Tensor, t: int | torch.Tensor, cond: Condition, pose_vectors: torch.Tensor,
                     guidance_scale: float = ...) -> torch.Tensor: ...


@runtime_checkable
class FastPathHost(ScoreModel, Protocol):
    """What the fast path captures and compiles: the modules and the eager step it must reproduce exactly."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor: ...

    def enable_fast_path(self, mode: str | None = ..., **options: Any) -> Any: ...

    def to(self, device: Any = ..., dtype: Any = ...) -> Any: ...
