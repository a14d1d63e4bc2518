"""Original Lightning ``.ckpt`` checkpoints (the authors' layout) -> the pipeline's modules, offline.

Key layout (SPEC §6): ``model.diffusion_model.*`` (UNet, LDM names), ``model_ema.*`` (its EMA copy with
the dots of the name removed), ``first_stage_model.*`` (VAE), ``cc_projection.weight/bias``, and
``cond_stage_model.*`` (frozen CLIP, not read: give a local image-encoder folder). The name mapping
LDM -> diffusers is diffusers' own (``single_file_utils``); choosing the EMA copy is ours, since the
authors' demo samples with it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file
from transformers import CLIPVisionModelWithProjection

from zero1to3.model import CameraProjection, build_image_encoder, build_scheduler, preset

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."
PROJECTION_KEYS = ("cc_projection.weight", "cc_projection.bias")


class CheckpointError(ValueError):
    """A file that is not a usable Zero-1-to-3 checkpoint (the message is one line)."""


def official_original_config(image_size: int = 256) -> dict[str, Any]:
    """The authors' ``sd-objaverse-finetune-c_concat-256.yaml`` model section, for .ckpt files without a yaml."""
    return {"model": {"params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": image_size // 8,
        "channels": 4, "scale_factor": 0.18215, "conditioning_key": "hybrid",
        "unet_config": {"params": {
            "image_size": image_size // 8, "in_channels": 8, "out_channels": 4, "model_channels": 320,
            "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4],
            "num_heads": 8, "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768,
            "use_checkpoint": True, "legacy": False}},
        "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
            "double_z": True, "z_channels": 4, "resolution": image_size, "in_channels": 3, "out_ch": 3,
            "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}}},
    }}}


def read_original_config(path: str | os.PathLike | None) -> dict[str, Any]:
    if path is None:
        return official_original_config()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"original config not found: {path} (expected the authors' .yaml)")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or "unet_config" not in config.get("model", {}).get("params", {}):
        raise CheckpointError(f"{path} is not a Zero-1-to-3 model config (expected model.params.unet_config)")
    return config


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a Lightning checkpoint, memory-mapped where possible (they can be 15 GB)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:  # truncated or not safetensors: SafetensorError, OSError ...
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"cannot read {path} as safetensors ({reason}); the file is damaged or "
                                  "truncated") from None
    try:
        try:
            data = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read {path} as a PyTorch Lightning .ckpt ({reason}); expected the "
                              "original Zero-1-to-3 checkpoint with a 'state_dict'") from None
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not any(k.startswith(UNET_PREFIX) for k in state):
        raise CheckpointError(f"{path} is not a Zero-1-to-3 checkpoint: expected 'state_dict' keys "
                              f"'{UNET_PREFIX}*', '{VAE_PREFIX}*' and 'cc_projection.*'")
    return state


def ema_unet_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with each UNet weight replaced by its EMA copy (``model_ema.<name without dots>``)."""
    swapped = dict(state)
    missing = []
    for key in state:
        if key.startswith(UNET_PREFIX):
            flat = EMA_PREFIX + "".join(key.split(".")[1:])
            if flat in state:
                swapped[key] = state[flat]
            else:
                missing.append(key)
    if missing:
        raise CheckpointError(f"checkpoint has no EMA copy for {len(missing)} UNet weights (e.g. {missing[0]}); "
                              "load it with use_ema=False")
    return swapped


def convert_unet(state: dict[str, torch.Tensor], original_config: dict[str, Any]) -> UNet2DConditionModel:
    unet_params = original_config["model"]["params"]["unet_config"]["params"]
    config = sfu.create_unet_diffusers_config_from_ldm(original_config, state)
    config["sample_size"] = int(unet_params["image_size"])
    level = sfu.logger.level
    sfu.logger.setLevel("ERROR")  # its EMA/non-EMA advice does not apply: the copy was chosen above
    try:
        converted = sfu.convert_ldm_unet_checkpoint(state, config)
    finally:
        sfu.logger.setLevel(level)
    unet = UNet2DConditionModel(**config)
    _load_strict(unet, converted, "UNet (model.diffusion_model.*)")
    return unet


def convert_vae(state: dict[str, torch.Tensor], original_config: dict[str, Any]) -> AutoencoderKL:
    ddconfig = original_config["model"]["params"]["first_stage_config"]["params"]["ddconfig"]
    scale = float(original_config["model"]["params"].get("scale_factor", 0.18215))
    config = sfu.create_vae_diffusers_config_from_ldm(original_config, state, image_size=int(ddconfig["resolution"]),
                                                      scaling_factor=scale)
    vae_state = {k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    if not vae_state:
        raise CheckpointError(f"checkpoint has no VAE weights ('{VAE_PREFIX}*')")
    converted = sfu.convert_ldm_vae_checkpoint(vae_state, config)
    vae = AutoencoderKL(**config)
    _load_strict(vae, converted, "VAE (first_stage_model.*)")
    return vae


def convert_projection(state: dict[str, torch.Tensor]) -> CameraProjection:
    if not all(k in state for k in PROJECTION_KEYS):
        raise CheckpointError("checkpoint has no camera projection ('cc_projection.weight' [768,772] and '.bias')")
    weight = state["cc_projection.weight"]
    projection = CameraProjection(weight.shape[1], weight.shape[0])
    projection.projection.load_state_dict({"weight": weight.float(), "bias": state["cc_projection.bias"].float()})
    return projection


def _load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    result = module.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{what} does not match its config: {len(result.missing_keys)} missing and "
                              f"{len(result.unexpected_keys)} unexpected weights (e.g. "
                              f"{(result.missing_keys or result.unexpected_keys)[0]})")


@dataclass
class OriginalComponents:
    """The modules of an original checkpoint, ready for :class:`zero1to3.pipeline.Zero123Pipeline` to assemble."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    image_encoder: CLIPVisionModelWithProjection
    camera_projection: CameraProjection
    scheduler: DDIMScheduler


def load_original_components(path: str | os.PathLike, *, image_encoder: str | os.PathLike | None = None,
                             use_ema: bool = True, original_config: str | os.PathLike | None = None
                             ) -> OriginalComponents:
    """The modules of the authors' ``.ckpt``: UNet (EMA copy by default), VAE, cc_projection, CLIP folder.

    Without ``image_encoder`` a small random CLIP tower stands in and a warning says so: such a pipeline
    is only useful when CLIP embeddings are given directly (as in the peer kit).
    """
    config = read_original_config(original_config)
    state = read_state_dict(path)
    if use_ema:
        state = ema_unet_state(state)
    unet = convert_unet(state, config)
    vae = convert_vae(state, config)
    projection = convert_projection(state)
    if image_encoder is not None:
        folder = Path(image_encoder)
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"image encoder folder {folder} has no config.json (expected a local "
                                  "CLIPVisionModelWithProjection, e.g. the image_encoder/ of SD image-variations)")
        encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    else:
        warnings.warn("no image_encoder given: CLIP is randomly initialised; pass image_encoder=<local CLIP "
                      "folder> to encode images", stacklevel=2)
        model_config = preset("tiny")
        model_config.image_encoder.projection_dim = projection.config.in_channel - 4
        encoder = build_image_encoder(model_config)
    return OriginalComponents(unet, vae, encoder, projection, build_scheduler())
