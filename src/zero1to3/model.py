"""The viewpoint-conditioned latent diffusion model of Zero-1-to-3, built from diffusers/transformers parts.

Faithfulness details (SPEC §2-3) live here and are tested against the authors' outputs:

* UNet input = cat([noisy target latent (scaled), input-image latent (posterior mode, **unscaled**)]).
* Cross-attention context = ONE token: ``CameraProjection(cat([clip_image_embedding, T]))``.
* Unconditional branch = zeros for the context (after the projection) and for the concat latent.
* CLIP input = the [-1, 1] image, bicubic-resized (align_corners=True, no antialias), mapped to [0, 1],
  normalised with CLIP mean/std; the projected embedding is used without L2 normalisation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.models.modeling_utils import ModelMixin
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from zero1to3.camera import RelativePose


class _EmptyFp32ListFilter(logging.Filter):
    """diffusers warns on every ``.to(dtype)`` even when no module needs float32 (``[]``); drop that case."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFp32ListFilter())

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

PoseEncoding = Literal["zero123", "stable-zero123"]


class CameraProjection(ModelMixin, ConfigMixin):
    """``cc_projection``: Linear(embedding + 4 -> context), identity on the embedding block at init.

    The identity init lets a fine-tune start from the image-variations model's behaviour; the 4 pose
    columns keep PyTorch's default Linear init (SPEC §2). Stored as ``projection.weight/bias`` to match
    the public diffusers conversions.
    """

    @register_to_config
    def __init__(self, in_channel: int = 772, out_channel: int = 768) -> None:
        super().__init__()
        self.projection = torch.nn.Linear(in_channel, out_channel)

    def reset_to_identity(self) -> None:
        embed = self.config.in_channel - 4
        with torch.no_grad():
            self.projection.weight[:, :embed].zero_()
            n = min(embed, self.config.out_channel)
            self.projection.weight[:n, :n].copy_(torch.eye(n))
            self.projection.bias.zero_()

    def forward(self, image_embedding: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """[B,1,D] embedding + [B,4] (or [B,1,4]) pose -> [B,1,context] one-token context."""
        if pose.dim() == 2:
            pose = pose[:, None, :]
        return self.projection(torch.cat([image_embedding, pose.to(image_embedding.dtype)], dim=-1))


@dataclass
class UNetSpec:
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    layers_per_block: int = 2
    #: diffusers' legacy name: for SD 1.x this is the number of heads (8), not their width.
    attention_head_dim: int = 8
    norm_num_groups: int = 32
    #: transformer blocks per cross-attention, one number or one per level (the mid block takes the last)
    transformer_layers_per_block: int | tuple[int, ...] = 1


@dataclass
class VAESpec:
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.18215


@dataclass
class ImageEncoderSpec:
    """CLIP vision tower; defaults are ViT-L/14 (SD image-variations' encoder)."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    image_size: int = 224
    patch_size: int = 14
    projection_dim: int = 768


@dataclass
class ModelConfig:
    """Sizes of one Zero-1-to-3 model. Defaults are the official ``zero123`` (SPEC §2)."""

    image_size: int = 256
    context_dim: int = 768
    unet: UNetSpec = field(default_factory=UNetSpec)
    vae: VAESpec = field(default_factory=VAESpec)
    image_encoder: ImageEncoderSpec = field(default_factory=ImageEncoderSpec)
    pose_encoding: PoseEncoding = "zero123"

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_scale


#: Model sizes by name (``--preset``).
PRESETS = ("tiny", "tiny-deep", "small", "zero123")


def preset(name: str) -> ModelConfig:
    """``zero123``: official size (~860M UNet). ``tiny``: the first embedded CPU-sized model (64 px, 7 M UNet).
    ``tiny-deep``: tiny grown in depth only (cross-attention also at 4x4, 1/2/3 transformer layers per
    attention at 16x16/8x8/4x4; 14.6 M), so ``grow_unet`` can carry a trained tiny UNet into it unchanged:
    ~1.65x tiny's CPU time per step. ``small``: the same codecs with a 21 M UNet (cross-attention at every
    level, 224 channels at 4x4): ~1.5x tiny's CPU time per step for 3x the parameters, shipped in 8-bit
    storage to fit the package budget."""
    if name == "zero123":
        return ModelConfig()
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {', '.join(PRESETS)}")
    if name == "tiny":
        unet = UNetSpec(block_out_channels=(64, 96, 128),
                        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                        layers_per_block=2, attention_head_dim=4)
    elif name == "tiny-deep":
        unet = UNetSpec(block_out_channels=(64, 96, 128), down_block_types=("CrossAttnDownBlock2D",) * 3,
                        up_block_types=("CrossAttnUpBlock2D",) * 3, layers_per_block=2, attention_head_dim=4,
                        transformer_layers_per_block=(1, 2, 3))
    else:
        unet = UNetSpec(block_out_channels=(64, 128, 224), down_block_types=("CrossAttnDownBlock2D",) * 3,
                        up_block_types=("CrossAttnUpBlock2D",) * 3, layers_per_block=2, attention_head_dim=4)
    return ModelConfig(
        image_size=64,
        context_dim=256,
        unet=unet,
        vae=VAESpec(block_out_channels=(32, 64, 64), layers_per_block=1),
        image_encoder=ImageEncoderSpec(hidden_size=192, intermediate_size=768, num_hidden_layers=4,
                                       num_attention_heads=4, image_size=64, patch_size=8, projection_dim=256),
    )


def build_unet(config: ModelConfig) -> UNet2DConditionModel:
    spec = config.unet
    return UNet2DConditionModel(
        sample_size=config.latent_size, in_channels=8, out_channels=4,
        down_block_types=spec.down_block_types, up_block_types=spec.up_block_types,
        block_out_channels=spec.block_out_channels, layers_per_block=spec.layers_per_block,
        attention_head_dim=spec.attention_head_dim, cross_attention_dim=config.context_dim,
        norm_num_groups=spec.norm_num_groups, transformer_layers_per_block=spec.transformer_layers_per_block)


def grow_unet(unet: UNet2DConditionModel, config: ModelConfig) -> UNet2DConditionModel:
    """A UNet of ``config``'s shape that computes exactly what ``unet`` computes, holding all its weights.

    Why: a larger model trained from scratch needs more device time than it has (the `small` ablation); grown
    from the trained one it starts where that one stopped. Only depth may grow: cross-attention at a level that
    had none, more transformer blocks per attention. Every new branch adds its output to a residual stream, and
    its last projection starts at zero, so it adds exactly 0 until training moves it (as ControlNet's zero
    convolutions). ValueError when ``config`` changes anything else (channels, resnets per block)."""
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    grown = build_unet(config).to(dtype=unet.dtype)
    own, target = unet.state_dict(), grown.state_dict()
    clash = [k for k in own if k not in target or own[k].shape != target[k].shape]
    if clash:
        raise ValueError(f"cannot grow this UNet into the preset: {len(clash)} weights have no place or another "
                         f"shape there (first: {clash[0]}); only attention depth may grow")
    grown.load_state_dict(own, strict=False)
    new = set(target) - set(own)
    covered: set[str] = set()
    with torch.no_grad():
        for name, module in grown.named_modules():
            prefix = f"{name}."
            if not any(key.startswith(prefix) for key in new) or any(key.startswith(prefix) for key in covered):
                continue
            if isinstance(module, Transformer2DModel) and f"{prefix}proj_out.weight" in new:
                outputs = [module.proj_out]
            elif isinstance(module, BasicTransformerBlock) and f"{prefix}norm1.weight" in new:
                outputs = [module.attn1.to_out[0], module.attn2.to_out[0], module.ff.net[-1]]
            else:
                continue
            for layer in outputs:
                layer.weight.zero_()
                layer.bias.zero_()
            covered.update(key for key in new if key.startswith(prefix))
    if new - covered:
        raise ValueError(f"cannot grow this UNet into the preset: new weights outside attention layers "
                         f"(first: {sorted(new - covered)[0]}); only attention depth may grow")
    return grown


def build_vae(config: ModelConfig) -> AutoencoderKL:
    spec = config.vae
    n = len(spec.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=spec.block_out_channels,
        layers_per_block=spec.layers_per_block, latent_channels=spec.latent_channels,
        norm_num_groups=spec.norm_num_groups, sample_size=config.image_size,
        scaling_factor=spec.scaling_factor)


def build_image_encoder(config: ModelConfig) -> CLIPVisionModelWithProjection:
    spec = config.image_encoder
    vision = CLIPVisionConfig(hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                              num_hidden_layers=spec.num_hidden_layers,
                              num_attention_heads=spec.num_attention_heads, image_size=spec.image_size,
                              patch_size=spec.patch_size, projection_dim=spec.projection_dim,
                              hidden_act="quick_gelu")
    return CLIPVisionModelWithProjection(vision)


def build_camera_projection(config: ModelConfig) -> CameraProjection:
    projection = CameraProjection(config.image_encoder.projection_dim + 4, config.context_dim)
    projection.reset_to_identity()
    return projection


def build_scheduler() -> DDIMScheduler:
    """The training schedule (1000 steps, scaled-linear betas 0.00085-0.012) with the reference's DDIM
    settings: steps_offset 1, no clipping, final alpha = alphā[0] (SPEC §3)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1, prediction_type="epsilon", timestep_spacing="leading")


def clip_preprocess(images: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP input exactly as the reference: [-1,1] -> bicubic (align_corners, no antialias) -> CLIP norm."""
    x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=True)
    x = (x + 1.0) / 2.0
    # per-channel Python scalars, not a mean tensor: no host->device copy, so a CUDA graph can capture it
    return torch.cat([(x[:, c:c + 1] - m) / s for c, (m, s) in enumerate(zip(CLIP_MEAN, CLIP_STD))], dim=1)


class SingleTokenCrossAttention:
    """Cross-attention processor exact for a one-token context (SPEC §2): softmax over a single key is 1,
    so every query position receives ``to_out(to_v(context))``.

    Why: the query projection, the attention kernel and the per-position output projection are skipped,
    ~4% of the UNet's FLOPs and three kernels per transformer block; outputs equal the standard processor's
    up to rounding. Longer contexts or masks go to the standard processor.
    """

    def __init__(self) -> None:
        self.fallback = AttnProcessor2_0()

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        if (encoder_hidden_states is None or encoder_hidden_states.shape[1] != 1 or attention_mask is not None
                or hidden_states.ndim != 3 or attn.spatial_norm is not None):
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        context = encoder_hidden_states
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        value = attn.to_out[1](attn.to_out[0](attn.to_v(context)))  # [B, 1, C]: what every query receives
        out = value.expand(-1, hidden_states.shape[1], -1)
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def use_single_token_cross_attention(unet: UNet2DConditionModel, enable: bool = True) -> int:
    """Switch every cross-attention (``attn2``) of ``unet`` to :class:`SingleTokenCrossAttention` (or back to
    the standard processor); returns how many were switched."""

    processors = dict(unet.attn_processors)
    switched = 0
    for name in processors:
        if name.endswith("attn2.processor"):
            processors[name] = SingleTokenCrossAttention() if enable else AttnProcessor2_0()
            switched += 1
    unet.set_attn_processor(processors)
    return switched


def uses_single_token_cross_attention(unet: UNet2DConditionModel) -> bool:
    return any(isinstance(p, SingleTokenCrossAttention) for p in unet.attn_processors.values())


def clip_image_embedding(encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] -> the one-token CLIP context [B,1,D] (projected image embedding)."""
    pixels = clip_preprocess(images, encoder.config.image_size)
    return encoder(pixel_values=pixels).image_embeds[:, None, :]


def latent_moments(vae: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled VAE posterior (mean, std) of [-1,1] images: the concat latent is the mean (SPEC §2),
    a training target is mean + std * noise, times the scaling factor."""
    dist = vae.encode(images).latent_dist
    return dist.mean, dist.std


def conv_in_surgery(unet_4ch_conv: torch.nn.Conv2d, new_in_channels: int = 8) -> torch.nn.Conv2d:
    """A conv_in with 8 input channels from a 4-channel one: channels 0-3 copied, the rest zero (SPEC §2)."""
    old = unet_4ch_conv
    new = torch.nn.Conv2d(new_in_channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels].copy_(old.weight)
        new.bias.copy_(old.bias)
    return new


def timestep_tensor(t: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(t):
        t = torch.tensor([t], device=device)
    t = t.to(device).reshape(-1)
    return t.expand(batch) if t.numel() == 1 else t


def pose_vector_tensor(poses, device: torch.device, dtype: torch.dtype, input_polar: float | None = None,
                       encoding: PoseEncoding = "zero123") -> torch.Tensor:
    """Pose vectors [N,4] from RelativePose objects (or an existing [N,4] array/tensor)."""

    if isinstance(poses, RelativePose):
        poses = [poses]
    if torch.is_tensor(poses):
        vec = poses
    elif len(poses) and isinstance(poses[0], RelativePose):
        if encoding == "stable-zero123":
            polar = math.pi / 2 if input_polar is None else input_polar
            rows = [p.stable_vector(polar) for p in poses]
        else:
            rows = [p.vector() for p in poses]
        vec = torch.tensor([list(r) for r in rows])
    else:
        vec = torch.as_tensor(poses)
    if vec.dim() != 2 or vec.shape[1] != 4:
        raise ValueError(f"pose vectors must have shape [N, 4], got {tuple(vec.shape)}")
    if not torch.isfinite(vec).all():
        raise ValueError("pose vectors contain NaN or inf")
    return vec.to(device=device, dtype=dtype)
