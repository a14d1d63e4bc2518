"""Training and fine-tuning on accelerate: one GPU, DDP or FSDP (``accelerate launch``), mixed precision.

Recipe (SPEC §3, §5): AdamW (wd 0.01), lr 1e-4 constant after 100 warm-up steps, camera projection at
10x, EMA of the trained weights, frozen VAE (and CLIP unless asked), plain MSE on epsilon, CFG dropout
per sample (r<0.05 CLIP zeroed, 0.05-0.10 both, 0.10-0.15 concat zeroed; the pose is never dropped).

Checkpoints are written to a temporary folder and renamed into place, so a kill never leaves a half
checkpoint; the batch at step k is a pure function of (seed, k, rank), so a resumed run sees exactly
the data the interrupted one would have.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import CLIPVisionModelWithProjection

from zero1to3.atomic import write_text_atomic
from zero1to3.camera import conditioning_vector, spherical_of_camera, spherical_to_cartesian
from zero1to3.data.dataset import load_views_array
from zero1to3.data.shards import is_shard_folder, read_shards
from zero1to3.inputs import check_int, check_range
from zero1to3.model import (PRESETS, CameraProjection, build_camera_projection, build_image_encoder, build_scheduler,
                            build_unet, build_vae, clip_image_embedding, conv_in_surgery, grow_unet, latent_moments, preset)
from zero1to3.pipeline import Zero123Pipeline, to_uint8
from zero1to3.seeding import mix_seed
from zero1to3.settings import option

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Defaults are the paper's (SPEC §5) except where the small preset needs otherwise."""

    data: str = option("", "dataset folder in the render layout (one folder per object, NNN.png + NNN.npy) "
                           "or a shard folder (zero1to3 data pack)")
    output_dir: str = option("runs/train", "run folder: checkpoints/, samples/, metrics.jsonl, config.json")
    preset: str = option("tiny", "model size when training from scratch (or of the new UNet with "
                                 "--unet-from-scratch)", choices=PRESETS)
    init_from: str | None = option(None, "Zero-1-to-3 folder/.ckpt to fine-tune, or a 4-channel SD "
                                         "image-variations folder")
    vae_path: str | None = option(None, "trained VAE folder for the small preset (from --stage vae)")
    #: A larger UNet for the same codecs: the VAE, image encoder and camera projection learned with the
    #: smaller model are kept, the UNet starts over at --preset's size.
    unet_from_scratch: bool = option(False, "with --init-from: keep its VAE, image encoder and camera "
                                            "projection, start a new UNet of --preset's size")
    #: A deeper UNet that starts as the --init-from one: new attention layers add exactly zero at first
    #: (``zero1to3.model.grow_unet``), so the larger model keeps everything the smaller one learned.
    grow_unet: bool = option(False, "with --init-from: keep every weight and deepen its UNet to --preset's "
                                    "shape (e.g. tiny -> tiny-deep); new attention layers start as identity")
    #: Written into the export so inference crops photos the way the training images are framed.
    foreground_ratio: float | None = option(None, "object size / image size in the training renders, stored in "
                                                  "the export (None: the --init-from model's, else 200/256); "
                                                  "our renders: about 0.6")
    batch_size: int = option(192, "pairs per optimiser step (over all processes)")
    learning_rate: float = option(1e-4, "AdamW learning rate of the UNet")
    projection_lr_multiplier: float = option(10.0, "learning-rate multiplier of the new camera projection")
    weight_decay: float = option(0.01, "AdamW weight decay")
    warmup_steps: int = option(100, "linear learning-rate warm-up steps")
    #: The cosine decay ends with whichever budget of this run ends first, so a time-boxed call still finishes it.
    lr_schedule: str = option("constant", "constant (the paper's) or cosine (to --min-lr-ratio over --max-steps "
                                          "or --max-minutes)", choices=("constant", "cosine"))
    min_lr_ratio: float = option(0.1, "final learning rate of the cosine schedule, as a fraction")
    max_steps: int = option(1000, "optimiser steps of the run")
    max_minutes: float | None = option(None, "stop (with a checkpoint) after this many minutes; resume by "
                                             "running again")
    ema_decay: float = option(0.9999, "decay of the EMA weights that are exported")
    mixed_precision: str = option("no", "autocast precision", choices=("no", "fp16", "bf16"))
    gradient_checkpointing: bool = option(False, "recompute UNet activations in the backward pass (memory)")
    #: Same numbers (a layout change); cuDNN's tensor-core convolutions prefer NHWC.
    channels_last: bool = option(False, "UNet weights and inputs in channels-last layout (GPU speed)")
    #: Inductor has produced wrong gradients for this UNet on a CPU (docs/training.md): compile only where
    #: benchmarks/train_throughput.py has shown its gradients equal eager's on the same device.
    compile_unet: bool = option(False, "torch.compile the UNet (in place: checkpoints keep their keys); "
                                       "prove its gradients first with benchmarks/train_throughput.py")
    #: The official CLIP is frozen; the small preset has no pretrained CLIP, so it learns its encoder.
    train_image_encoder: bool = option(False, "also train CLIP (the small preset has no pretrained one)")
    uncond_probability: float = option(0.05, "share of pairs trained without conditioning (classifier-free "
                                             "guidance)")
    #: Departures from the paper's uniform pairs and timesteps, to test what makes a small model learn the
    #: direction of rotation (docs/model_card.md): the side a view shows is decided at high noise, and a
    #: near view differs from its input mostly by that direction.
    timestep_power: float = option(1.0, "timesteps drawn as T * u^(1/p): 1 = uniform (the paper's), 2 = density "
                                        "rising linearly towards pure noise")
    near_view_candidates: int = option(1, "input = the nearest (camera direction) of this many random other "
                                          "views of the target's object; 1 = uniform pairs (the paper's)")
    #: A mirrored pair is another valid pair (the world mirrored through the input camera's vertical plane:
    #: both images flip left-right and the azimuth change changes sign), and a white-background object with
    #: its colour channels reordered is another object: more pairs for a data-limited model.
    augment: str = option("none", "none (the paper's), mirror (pairs mirrored left-right, sin(d_azimuth) "
                                  "negated) or mirror+rgb (x the 6 orderings of the colour channels)",
                          choices=("none", "mirror", "mirror+rgb"))
    checkpoint_every: int = option(1000, "steps between checkpoints")
    keep_checkpoints: int = option(2, "checkpoints kept on disk")
    sample_every: int = option(1000, "steps between sample grids (0: never)")
    log_every: int = option(50, "steps between metrics.jsonl lines")
    seed: int = option(0, "seed of initialisation, pair draws and noise")
    resume: bool = option(True, "continue from the latest checkpoint in output_dir if there is one")
    #: The same distribution as encoding two images per pair every step, with less work.
    cache_latents: bool = option(True, "encode every view once with the frozen VAE and sample latents from "
                                       "the stored posterior")
    #: A collective on every step would stall the launch queue.
    stop_check_every: int = option(10, "multi-process runs agree on stopping (signal, time budget) every this "
                                       "many steps")
    #: No argparse choices: validate() names the allowed values in the one-line error.
    on_nonfinite: str = option("stop", "stop (exit code 3, the newest finite checkpoint kept) or skip (drop such "
                                       "updates) when the loss or a gradient is NaN/inf")
    #: The check is one host sync; the update itself is skipped on the device without one.
    nonfinite_check_every: int = option(10, "GPU steps between host checks of the non-finite flag (CPU: every step)")
    max_skipped_in_a_row: int = option(10, "with --on-nonfinite skip: stop (exit code 3) after this many "
                                           "non-finite updates in a row")
    cache_dir: str | None = option(None, "folder for the in-memory view cache (None: OUTPUT_DIR/cache; never the "
                                         "dataset folder)")
    override: bool = option(False, "on resume, continue with changed training settings (e.g. --learning-rate) "
                                   "instead of refusing")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """ValueError (one line) for a setting out of range, before any model is built."""
        for name in ("batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "stop_check_every",
                     "nonfinite_check_every", "max_skipped_in_a_row", "near_view_candidates"):
            check_int(name, int(getattr(self, name)), 1)
        for name in ("max_steps", "warmup_steps", "sample_every"):
            check_int(name, int(getattr(self, name)), 0)
        check_range("learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        check_range("projection_lr_multiplier", self.projection_lr_multiplier, 0.0, 1e3, low_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, 1.0)
        check_range("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0)
        check_range("uncond_probability", self.uncond_probability, 0.0, 1.0 / 3.0)
        check_range("timestep_power", self.timestep_power, 0.1, 10.0)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, 0.0, 1e7, low_open=True)
        if self.foreground_ratio is not None:
            check_range("foreground_ratio", self.foreground_ratio, 0.05, 1.0)
        if self.grow_unet and (self.unet_from_scratch or self.init_from is None):
            raise ValueError("grow_unet needs init_from (the UNet to grow) and excludes unet_from_scratch")
        choices = {"lr_schedule": ("constant", "cosine"), "mixed_precision": ("no", "fp16", "bf16"),
                   "on_nonfinite": ("stop", "skip"), "preset": PRESETS, "augment": tuple(AUGMENTATIONS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


#: Settings a resumed run may change freely (budgets and bookkeeping); any other change needs ``override``.
RESUME_FREE_SETTINGS = ("max_steps", "max_minutes", "checkpoint_every", "keep_checkpoints", "sample_every",
                        "log_every", "resume", "stop_check_every", "override", "nonfinite_check_every", "max_skipped_in_a_row",
                        "on_nonfinite", "cache_dir", "data", "output_dir")


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient (the run stops; its newest finite checkpoint is kept)."""


class ResumeSettingsError(ValueError):
    """A resumed run was given training settings other than those it started with (and no override)."""


@dataclass
class VAETrainConfig:
    """The small preset's autoencoder (``zero1to3 train --stage vae``); flags shared with TrainConfig keep
    this stage's own defaults unless given."""

    data: str = option("", "dataset folder in the render layout or a shard folder")
    output_dir: str = option("runs/vae", "run folder of the VAE stage")
    preset: str = option("tiny", "model size", choices=PRESETS)
    batch_size: int = option(64, "images per optimiser step")
    learning_rate: float = option(4e-4, "Adam learning rate")
    max_steps: int = option(2000, "optimiser steps")
    kl_weight: float = option(1e-6, "weight of the KL term (VAE stage only)")
    mixed_precision: str = option("no", "autocast precision", choices=("no", "fp16", "bf16"))
    seed: int = option(0, "seed")
    log_every: int = option(50, "steps between metrics lines")
    cache_dir: str | None = option(None, "folder for the in-memory view cache (None: OUTPUT_DIR/cache)")


# ---------------------------------------------------------------------------------------------- data
#: TrainConfig.augment -> number of augmentation codes (see :func:`augment_views`).
AUGMENTATIONS: dict[str, int] = {"none": 1, "mirror": 2, "mirror+rgb": 12}
@functools.lru_cache(maxsize=None)
def rgb_orders(device: torch.device) -> torch.Tensor:
    """Colour-channel orderings [6, 3] on ``device``, the identity first (code 0 is the render as it is);
    made once per device, so a training step copies nothing from the host."""
    return torch.tensor(list(itertools.permutations(range(3))), device=device)


def augment_views(images: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Views [B, H, W, 3] under augmentation ``code`` [B]: odd codes mirror left-right, ``code // 2`` picks
    the RGB order. Both keep a white background white; the pair's pose must be mirrored with the images."""
    code = code.to(images.device)
    order = rgb_orders(images.device)[code // 2]
    out = torch.gather(images, -1, order[:, None, None, :].expand_as(images))
    return torch.where((code % 2 == 1)[:, None, None, None], out.flip(-2), out)


class PairBatcher:
    """Random pairs of distinct views of one object, drawn on the device from in-memory renders.

    ``images`` uint8 [N, V, H, W, 3] (composited on white), ``poses`` world->camera [N, V, 3, 4].
    The pose vector is camera.conditioning_vector of the spherical change from cond to target.
    """

    def __init__(self, images: np.ndarray, poses: np.ndarray, device: torch.device | str = "cpu") -> None:
        if images.ndim != 5 or images.shape[-1] != 3 or poses.shape[:2] != images.shape[:2]:
            raise ValueError(f"expected images [N,V,H,W,3] and poses [N,V,3,4], got {images.shape}, {poses.shape}")
        if images.shape[1] < 2:
            raise ValueError("each object needs at least 2 views to form pairs")
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        spherical = spherical_of_camera(poses)
        self.spherical = torch.from_numpy(spherical).to(self.device, torch.float64)
        #: Unit vectors towards each camera, for near-view pairs.
        self.directions = torch.from_numpy(spherical_to_cartesian(spherical[..., 0], spherical[..., 1], 1.0)).to(
            self.device, torch.float64)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_views(self) -> int:
        return self.images.shape[1]

    def batch(self, step: int, batch_size: int, seed: int = 0, rank: int = 0,
              with_target_pixels: bool = True, near_view_candidates: int = 1,
              augmentations: int = 1) -> dict[str, torch.Tensor]:
        """Drawn with a generator on the data's device: no host->device copy (a stream sync) per step.

        ``target_index`` / ``cond_index`` are flat view indices (object * views + view), for caches; a
        trainer with a latent cache needs no target pixels (``with_target_pixels=False`` skips them).
        ``near_view_candidates`` > 1: the input is the one of that many random other views whose camera
        direction is closest to the target's (TrainConfig.near_view_candidates).
        ``augmentations`` > 1: each pair gets a random code of :func:`augment_views` (both views alike, the
        pose mirrored with them); flat indices then count views x codes (code * N * V + object * V + view),
        as a cache built by :meth:`Trainer.encode_all` over the codes. 1: the same draws as without it.
        """
        g = torch.Generator(device=self.device).manual_seed(mix_seed(seed, step, rank, 0))
        n, v = self.images.shape[:2]
        obj = torch.randint(n, (batch_size,), generator=g, device=self.device)
        first = torch.randint(v, (batch_size,), generator=g, device=self.device)
        second = (first[:, None] + torch.randint(1, v, (batch_size, max(1, near_view_candidates)), generator=g,
                                                  device=self.device)) % v  # distinct
        if second.shape[1] > 1:
            cosine = (self.directions[obj[:, None], second] * self.directions[obj, first][:, None]).sum(-1)
            second = second.gather(1, cosine.argmax(1, keepdim=True))
        second = second[:, 0]
        pose = conditioning_vector(self.spherical[obj, first] - self.spherical[obj, second]).float()
        code = torch.zeros_like(obj)
        if augmentations > 1:
            code = torch.randint(augmentations, (batch_size,), generator=g, device=self.device)
            pose[:, 1] = torch.where(code % 2 == 1, -pose[:, 1], pose[:, 1])

        def views(index: torch.Tensor) -> torch.Tensor:
            pixels = self.images[obj, index]
            return to_unit(augment_views(pixels, code) if augmentations > 1 else pixels)

        offset = code * (n * v)
        batch = {"cond": views(second), "pose": pose,
                 "target_index": offset + obj * v + first, "cond_index": offset + obj * v + second}
        if with_target_pixels:
            batch["target"] = views(first)
        return batch

    def flat_images(self) -> torch.Tensor:
        """Every view, uint8 [N*V, H, W, 3], in the order of the flat indices (of code 0)."""
        return self.images.reshape(-1, *self.images.shape[2:])


class PoseAlteredBatcher:
    """A batcher whose pose vectors are altered, to measure how much a model uses them (``Trainer.pose_use``).

    ``mirror`` turns the azimuth change the other way (sin -> -sin: the object's other side), ``shuffle``
    gives each pair another pair's pose, ``zero`` removes it. A model whose loss does not move under
    ``mirror`` cannot tell left from right, whatever its image quality.
    """

    ALTERATIONS = ("mirror", "shuffle", "zero")

    def __init__(self, inner: PairBatcher, alteration: str) -> None:
        if alteration not in self.ALTERATIONS:
            raise ValueError(f"alteration must be one of {', '.join(self.ALTERATIONS)}, got {alteration!r}")
        self.inner, self.alteration = inner, alteration

    def batch(self, step: int, batch_size: int, seed: int = 0, rank: int = 0,
              with_target_pixels: bool = True, near_view_candidates: int = 1,
              augmentations: int = 1) -> dict[str, torch.Tensor]:
        batch = self.inner.batch(step, batch_size, seed, rank, with_target_pixels, near_view_candidates,
                                 augmentations)
        pose = batch["pose"].clone()
        if self.alteration == "mirror":
            pose[:, 1] = -pose[:, 1]
        elif self.alteration == "zero":
            pose.zero_()
        else:  # a fixed derangement-like permutation, the same every call
            g = torch.Generator().manual_seed(mix_seed(seed, step, 99))
            pose = pose[torch.randperm(len(pose), generator=g).to(pose.device)]
        batch["pose"] = pose
        return batch


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    return images.movedim(-1, -3).float() / 127.5 - 1.0


def load_training_arrays(data: str, image_size: int,
                         cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All views of a render-layout folder or a shard folder (``zero1to3 data pack``), in memory; a render
    folder's cache goes to ``cache_dir`` (never into the data)."""

    if is_shard_folder(data):
        views = read_shards(data)
        if views.images.shape[2] != image_size:
            raise ValueError(f"{data}: shards hold {views.images.shape[2]} px views, the model needs {image_size} px "
                             "(pack the renders again with --size)")
        return views.images, views.poses, views.names
    return load_views_array(data, image_size, cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------------- model
class TrainModule(torch.nn.Module):
    """The trained parts in one module, so accelerate can wrap it (DDP/FSDP) as a whole."""

    def __init__(self, unet: torch.nn.Module, camera_projection: CameraProjection,
                 image_encoder: torch.nn.Module | None, channels_last: bool = False) -> None:
        super().__init__()
        self.unet = unet
        self.camera_projection = camera_projection
        self.image_encoder = image_encoder  # None when frozen (kept outside, not wrapped)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, concat: torch.Tensor, clip_embedding: torch.Tensor | None,
                cond_images: torch.Tensor | None, pose: torch.Tensor, clip_keep: torch.Tensor) -> torch.Tensor:
        if clip_embedding is None:
            clip_embedding = clip_image_embedding(self.image_encoder, cond_images)
        clip_embedding = clip_embedding * clip_keep[:, None, None].to(clip_embedding.dtype)
        context = self.camera_projection(clip_embedding, pose)
        unet_input = torch.cat([noisy, concat], 1).contiguous(memory_format=self.memory_format)
        return self.unet(unet_input, t, encoder_hidden_states=context).sample


def compile_in_place(module: torch.nn.Module) -> None:
    """``module.compile()`` (state-dict keys unchanged), without Inductor's fused mixed-order reductions:
    public reports (pytorch/pytorch #190796, #193061) tie them to silently wrong gradients."""
    import torch._inductor.config as inductor_config

    triton = getattr(inductor_config, "triton", None)
    if triton is not None and hasattr(triton, "mix_order_reduction"):
        triton.mix_order_reduction = False
    module.compile()


def draw_timesteps(count: int, steps: int, power: float, generator: torch.Generator) -> torch.Tensor:
    """Training timesteps in [0, steps) with density proportional to t^(power - 1): T * u^(1/power).

    ``power`` 1 is the paper's uniform draw (``randint``, so runs before this option draw the same steps)."""
    if power == 1.0:
        return torch.randint(0, steps, (count,), generator=generator, device=generator.device)
    u = torch.rand(count, generator=generator, device=generator.device)
    return (steps * u.pow(1.0 / power)).long().clamp(max=steps - 1)


def cfg_dropout_masks(batch: int, p: float, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep_clip, keep_concat) per sample: r<p CLIP dropped; p<=r<2p both; 2p<=r<3p concat dropped.

    Drawn on the generator's device (``device`` defaults to it)."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    r = torch.rand(batch, generator=generator, device=gen_device).to(device or gen_device)
    keep_clip = (r >= 2 * p).float()
    keep_concat = 1.0 - ((r >= p) & (r < 3 * p)).float()
    return keep_clip, keep_concat


def initial_components(config: TrainConfig):
    """(unet, vae, image_encoder, camera_projection, foreground_ratio or None) to start from: preset,
    Zero-1-to-3 model, or SD variations."""

    if config.init_from is None:
        model_config = preset(config.preset)
        torch.manual_seed(config.seed)
        return build_unet(model_config), build_vae(model_config), build_image_encoder(model_config), \
            build_camera_projection(model_config), None
    path = Path(config.init_from)
    unet_config = path / "unet" / "config.json"
    if path.is_dir() and unet_config.is_file() and json.loads(unet_config.read_text()).get("in_channels") == 4:
        return (*_from_image_variations(path), None)
    pipe = Zero123Pipeline.from_pretrained(path, dtype=torch.float32)  # shipped weights may be fp16
    unet = pipe.unet
    if config.unet_from_scratch:
        model_config = preset(config.preset)
        if model_config.context_dim != pipe.camera_projection.config.out_channel:
            raise ValueError(f"--unet-from-scratch: preset {config.preset!r} has context size "
                             f"{model_config.context_dim}, the camera projection of {path} "
                             f"{pipe.camera_projection.config.out_channel}")
        torch.manual_seed(config.seed)
        unet = build_unet(model_config)
    elif config.grow_unet:
        torch.manual_seed(config.seed)
        unet = grow_unet(unet, preset(config.preset))
    return unet, pipe.vae, pipe.image_encoder, pipe.camera_projection, pipe.foreground_ratio


def _from_image_variations(path: Path):
    """SD image-variations (4-channel UNet): conv_in surgery to 8 channels, identity camera projection."""

    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", local_files_only=True, use_safetensors=True)
    unet.conv_in = conv_in_surgery(unet.conv_in, 8)
    unet.register_to_config(in_channels=8)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, use_safetensors=True)
    encoder = CLIPVisionModelWithProjection.from_pretrained(path / "image_encoder", local_files_only=True,
                                                          use_safetensors=True)
    projection = CameraProjection(encoder.config.projection_dim + 4, unet.config.cross_attention_dim)
    projection.reset_to_identity()
    return unet, vae, encoder, projection


# ---------------------------------------------------------------------------------------------- checkpoints
def _atomic_dir(final: Path) -> Path:
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = Path(output_dir) / "checkpoints"
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / "trainer_state.json").is_file())
    return done[-1] if done else None


def _prune(root: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints, never the newest one marked finite."""
    done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    finite = [p for p in done if _checkpoint_state(p).get("finite") is True]
    protected = {finite[-1]} if finite else set()
    for old in done[:-keep] if keep > 0 else []:
        if old not in protected:
            shutil.rmtree(old, ignore_errors=True)


def _checkpoint_state(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return {}


def save_ema(ema, path: Path) -> None:
    """The EMA state as safetensors (tensors) + its scalars in the metadata: nothing to unpickle on resume."""
    state = ema.state_dict()
    tensors = {f"shadow.{i:05d}": t.detach().contiguous().cpu() for i, t in enumerate(state["shadow_params"])}
    scalars = {k: v for k, v in state.items() if k != "shadow_params"}
    save_file(tensors, str(path), metadata={"ema": json.dumps(scalars)})


def load_ema(ema, path: Path) -> None:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        scalars = json.loads((f.metadata() or {}).get("ema", "{}"))
        shadow = [f.get_tensor(k) for k in sorted(f.keys())]
    if len(shadow) != len(ema.shadow_params):
        raise ValueError(f"{path}: {len(shadow)} EMA tensors, the model has {len(ema.shadow_params)}")
    ema.load_state_dict({**scalars, "shadow_params": shadow})


class Trainer:
    """Owns the accelerate state; ``fit`` runs until ``max_steps`` or ``max_minutes`` or a signal."""

    def __init__(self, config: TrainConfig, batcher: PairBatcher | None = None,
                 arrays: tuple[np.ndarray, np.ndarray] | None = None) -> None:

        self.config = config
        # cpu=True without CUDA lets torchrun-launched CPU processes join over gloo (else each runs alone)
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
        acc = self.accelerator
        unet, vae, encoder, projection, init_ratio = initial_components(config)
        self.foreground_ratio = config.foreground_ratio or init_ratio
        if config.vae_path:
            vae = AutoencoderKL.from_pretrained(config.vae_path, local_files_only=True, use_safetensors=True).float()
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        if config.channels_last:
            unet.to(memory_format=torch.channels_last)
        if config.compile_unet:
            compile_in_place(unet)
        self.weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision, torch.float32)
        self.vae = vae.to(acc.device, self.weight_dtype).requires_grad_(False).eval()
        self.scaling_factor = float(vae.config.scaling_factor)
        self.frozen_encoder = None
        if not config.train_image_encoder:
            self.frozen_encoder = encoder.to(acc.device, self.weight_dtype).requires_grad_(False).eval()
            encoder = None
        for trained in (unet, projection, encoder):
            if trained is not None:  # a loaded pipeline arrives frozen
                trained.requires_grad_(True).train()
        module = TrainModule(unet, projection, encoder, channels_last=config.channels_last)
        module = acc.prepare(module)
        # Built after wrapping, so under FSDP each rank keeps the EMA of its own shards.
        self.ema = EMAModel([p for p in module.parameters() if p.requires_grad], decay=config.ema_decay, foreach=True)
        self.fsdp = acc.distributed_type.name == "FSDP"
        self.latent_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        groups: dict[str, list] = {"base": [], "projection": []}
        for name, param in module.named_parameters():
            if param.requires_grad:
                groups["projection" if "camera_projection" in name else "base"].append(param)
        lr = config.learning_rate
        # fused: one kernel per step instead of several per tensor group (not for FSDP's sharded params)
        fused = acc.device.type == "cuda" and not self.fsdp
        self.optimizer = torch.optim.AdamW(
            [{"params": groups["base"], "lr": lr},
             {"params": groups["projection"], "lr": lr * config.projection_lr_multiplier}],
            weight_decay=config.weight_decay, fused=fused or None)
        if config.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {config.lr_schedule!r}")
        self._fit_start: float | None = None
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.optimizer, self.lr_scheduler = acc.prepare(self.optimizer, self.lr_scheduler)
        self.module = module
        self.ema.to(acc.device)
        self.noise_scheduler = build_scheduler()
        self.alphas = self.noise_scheduler.alphas_cumprod.to(acc.device)
        if batcher is None:
            if arrays is None:
                cache_dir = config.cache_dir or str(Path(config.output_dir) / "cache")
                images, poses, _ = load_training_arrays(config.data, preset(config.preset).image_size, cache_dir)
            else:
                images, poses = arrays
            batcher = PairBatcher(images, poses, acc.device)
        self.batcher = batcher
        if config.cache_latents:
            self.latent_cache = self.encode_all(batcher.flat_images(), augmentations=AUGMENTATIONS[config.augment])
        self.step = 0
        self.out = Path(config.output_dir)
        self._stop = False
        self.stop_signal: int | None = None
        #: Device-side count of steps whose loss or gradient norm was non-finite (read at check steps).
        self._nonfinite = torch.zeros((), dtype=torch.int64, device=acc.device)
        self._nonfinite_seen = 0
        self._skipped_in_a_row = 0
        self.skipped_steps = 0
        self.changed_settings: dict[str, tuple[Any, Any]] = {}
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        resumed = config.resume and self.resume()
        if acc.is_main_process and (not resumed or self.changed_settings or not (self.out / "config.json").is_file()):
            write_text_atomic(self.out / "config.json", config.to_json())

    # -------------------------------------------------------------- state
    def _all_finite(self) -> bool:
        """Every trained weight and EMA tensor finite (one device sync; run before a checkpoint is kept)."""
        tensors = [p for p in self.module.parameters() if p.requires_grad] + list(self.ema.shadow_params)
        flags = torch.stack([torch.isfinite(t).all() for t in tensors]).all().float().reshape(1)
        if self.accelerator.num_processes > 1:
            flags = self.accelerator.gather(flags)
        return bool(flags.min().item() > 0)

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_N`` atomically, only if its tensors are finite (else None: nothing kept)."""
        acc = self.accelerator
        final = self.out / "checkpoints" / f"step_{self.step:08d}"
        if not self._all_finite():
            logger.error("step %d: non-finite weights, no checkpoint written (newest finite one: %s)",
                         self.step, latest_checkpoint(self.out))
            return None
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            _atomic_dir(final)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        if self.fsdp or acc.is_main_process:
            save_ema(self.ema, tmp / self._ema_file())
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "trainer_state.json").write_text(json.dumps({"step": self.step, "finite": True,
                                                                "skipped_steps": self.skipped_steps}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _prune(final.parent, self.config.keep_checkpoints)
        acc.wait_for_everyone()
        return final

    def _ema_file(self) -> str:
        return f"ema_rank{self.accelerator.process_index}.safetensors" if self.fsdp else "ema.safetensors"

    def resume(self) -> bool:
        """Continue from the newest checkpoint; settings other than the run's own need ``override``."""
        ckpt = latest_checkpoint(self.out)
        if ckpt is None:
            return False
        self._check_resume_settings()
        ema_file = ckpt / self._ema_file()
        if not ema_file.is_file():
            raise ValueError(f"{ckpt} has no {ema_file.name} (checkpoints with a pickled ema.pt are not loaded; "
                             "resume them with the version that wrote them, or start a new run)")
        try:
            self.accelerator.load_state(str(ckpt))  # weights_only loading for everything but safetensors
            load_ema(self.ema, ema_file)
        except Exception as exc:  # a planted pickle or a damaged file: one line naming the checkpoint
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"cannot resume from {ckpt}: {type(exc).__name__}: {first[:200]}") from None
        self.ema.to(self.accelerator.device)
        state = _checkpoint_state(ckpt)
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if self.changed_settings:
            self._apply_learning_rates()
        if self.accelerator.is_main_process:
            self._truncate_metrics(self.step)
            logger.info("resumed from %s at step %d", ckpt, self.step)
        return True

    def _check_resume_settings(self) -> None:
        path = self.out / "config.json"
        if not path.is_file():
            return
        try:
            before = json.loads(path.read_text())
        except ValueError:
            return
        now = asdict(self.config)
        changed = {k: (before[k], v) for k, v in now.items()
                   if k in before and before[k] != v and k not in RESUME_FREE_SETTINGS}
        if changed and not self.config.override:
            listing = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
            raise ResumeSettingsError(f"{self.out} was started with other settings ({listing}); pass --override to "
                                      "continue with the new ones, or use another --output-dir")
        if changed:
            logger.warning("resume with changed settings: %s",
                           ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
        self.changed_settings = changed

    def _apply_learning_rates(self) -> None:
        """After loading an optimizer saved with other learning rates: the configured ones from here on."""
        base = [self.config.learning_rate, self.config.learning_rate * self.config.projection_lr_multiplier]
        scheduler = self.lr_scheduler.scheduler if hasattr(self.lr_scheduler, "scheduler") else self.lr_scheduler
        scheduler.base_lrs = list(base)
        factor = self._lr_factor(self.step)
        for group, lr in zip(self.optimizer.param_groups, base):
            group["initial_lr"] = lr
            group["lr"] = lr * factor
        for group in self.optimizer.param_groups:
            group["weight_decay"] = self.config.weight_decay

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines past the checkpoint being resumed (they will be logged again): one line per step."""
        log_path = self.out / "metrics.jsonl"
        if not log_path.is_file():
            return
        kept = []
        for line in log_path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill
        write_text_atomic(log_path, "".join(x + "\n" for x in kept))

    # -------------------------------------------------------------- step
    @torch.no_grad()
    def encode_all(self, images: torch.Tensor, chunk: int = 512,
                   augmentations: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """VAE posterior (mean, std) of uint8 [N, H, W, 3] views, float32, on the device; with
        ``augmentations`` > 1, of every view under each code in turn ([codes * N], the order of
        PairBatcher's flat indices), augmented chunk by chunk so no augmented copy of the data is held."""
        dev = self.accelerator.device
        means, stds = [], []
        for code in range(augmentations):
            for part in images.split(chunk):
                part = part.to(dev)
                if augmentations > 1:
                    part = augment_views(part, torch.full((len(part),), code, device=dev))
                with self.accelerator.autocast():
                    mean, std = latent_moments(self.vae, to_unit(part).to(self.weight_dtype))
                means.append(mean.float())
                stds.append(std.float())
        return torch.cat(means), torch.cat(stds)

    def _moments(self, batch: dict[str, torch.Tensor],
                 use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target mean, target std, cond mean): from the cache when there is one and ``use_cache``, else
        encoded from the batch's pixels (the cache indexes the training batcher's views only)."""
        if use_cache and self.latent_cache is not None:
            mean, std = self.latent_cache
            return mean[batch["target_index"]], std[batch["target_index"]], mean[batch["cond_index"]]
        dev = self.accelerator.device
        with torch.no_grad():
            t_mean, t_std = latent_moments(self.vae, batch["target"].to(dev, self.weight_dtype))
            c_mean, _ = latent_moments(self.vae, batch["cond"].to(dev, self.weight_dtype))
        return t_mean.float(), t_std.float(), c_mean.float()

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator,
             use_cache: bool = True, timestep_power: float | None = None) -> torch.Tensor:
        """Epsilon MSE of one batch; all randomness from ``generator`` (on the training device).

        ``timestep_power``: that of the config when None (evaluation passes 1: the paper's uniform draw)."""
        acc = self.accelerator
        dev = acc.device
        cond = batch["cond"].to(dev, self.weight_dtype)
        t_mean, t_std, concat = self._moments(batch, use_cache)
        bsz = t_mean.shape[0]
        draw = dict(generator=generator, device=generator.device)
        latents = (t_mean + t_std * torch.randn(t_mean.shape, **draw).to(dev)) * self.scaling_factor
        clip = None
        if self.frozen_encoder is not None:
            with torch.no_grad():
                clip = clip_image_embedding(self.frozen_encoder, cond)
        keep_clip, keep_concat = cfg_dropout_masks(bsz, self.config.uncond_probability, generator, dev)
        concat = (concat * keep_concat[:, None, None, None]).to(self.weight_dtype)
        noise = torch.randn(latents.shape, **draw).to(dev)
        power = self.config.timestep_power if timestep_power is None else timestep_power
        t = draw_timesteps(bsz, self.noise_scheduler.config.num_train_timesteps, power, generator).to(dev)
        a = self.alphas[t][:, None, None, None]
        noisy = (a.sqrt() * latents + (1 - a).sqrt() * noise).to(self.weight_dtype)
        pred = self.module(noisy, t, concat, clip, None if clip is not None else cond, batch["pose"].to(dev), keep_clip)
        return F.mse_loss(pred.float(), noise)

    def _lr_factor(self, step: int) -> float:
        """Warm-up, then constant or cosine over the run's step or time budget (whichever ends first)."""
        cfg = self.config
        warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        if cfg.lr_schedule == "constant":
            return warm
        progress = step / max(1, cfg.max_steps)
        if cfg.max_minutes and self._fit_start is not None:
            progress = max(progress, (time.perf_counter() - self._fit_start) / (60 * cfg.max_minutes))
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)

    def _generator(self, *key: int) -> torch.Generator:
        device = self.accelerator.device
        return torch.Generator(device=device).manual_seed(mix_seed(self.config.seed, *key))

    @torch.no_grad()
    def evaluation_loss(self, batcher: PairBatcher | None = None, batches: int = 8, batch_size: int = 256,
                        use_ema: bool = True) -> float:
        """Mean loss on fixed pairs, noise and timesteps (the same every call): compare runs, or train vs
        held-out objects (pass their batcher) to see over-fitting. Encodes with the VAE (no cache)."""
        batcher = batcher or self.batcher
        params = [p for p in self.module.parameters() if p.requires_grad]
        if use_ema:
            self.ema.store(params)
            self.ema.copy_to(params)
        self.module.eval()
        total = 0.0
        try:
            # eager even under compile_unet: its other batch size and eval mode would each recompile
            with (torch.compiler.set_stance("force_eager") if self.config.compile_unet else contextlib.nullcontext()):
                for k in range(batches):
                    batch = batcher.batch(10**9 + k, batch_size, seed=self.config.seed + 7)
                    with self.accelerator.autocast():
                        total += self.loss(batch, self._generator(10**9 + k, 2), use_cache=False,
                                           timestep_power=1.0).item()
        finally:
            if use_ema:
                self.ema.restore(params)
            self.module.train()
        return total / batches

    def pose_use(self, batcher: PairBatcher | None = None, use_ema: bool = True, **kwargs: Any) -> dict[str, float]:
        """Fixed-pair loss with the true poses, and its increase when they are mirrored, shuffled or zeroed
        (:class:`PoseAlteredBatcher`): how much of the loss the camera conditioning explains."""
        batcher = batcher or self.batcher
        true = self.evaluation_loss(batcher, use_ema=use_ema, **kwargs)
        out = {"loss": true}
        for how in PoseAlteredBatcher.ALTERATIONS:
            out[f"{how}_increase"] = self.evaluation_loss(PoseAlteredBatcher(batcher, how), use_ema=use_ema,
                                                          **kwargs) - true
        return out

    def fit(self) -> dict[str, Any]:
        """Train to ``max_steps`` (or the time budget, or a signal). Raises :class:`NonFiniteError` when the
        loss or gradients stop being finite (``on_nonfinite="stop"``, or a whole window of skipped steps)."""
        acc = self.accelerator
        cfg = self.config
        start = time.perf_counter()
        self._fit_start = start
        per_rank = max(1, cfg.batch_size // acc.num_processes)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self._on_signal)
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", disable=not acc.is_local_main_process)
        log_path = self.out / "metrics.jsonl"
        running, seen, t_log = 0.0, 0, time.perf_counter()
        # fused AdamW skips a flagged update on the device (as under GradScaler): no host sync per step
        base_optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        # under fp16 autocast GradScaler owns overflowing gradients (it skips those steps and lowers its scale)
        scaled = getattr(acc, "scaler", None) is not None
        device_skip = bool(base_optimizer.param_groups[0].get("fused")) and not scaled
        check_every = cfg.nonfinite_check_every if acc.device.type == "cuda" else 1
        window_start = self.step
        try:
            while self.step < cfg.max_steps:
                g = self._generator(self.step, acc.process_index, 1)
                batch = self.batcher.batch(self.step, per_rank, cfg.seed, acc.process_index,
                                           with_target_pixels=self.latent_cache is None,
                                           near_view_candidates=cfg.near_view_candidates,
                                           augmentations=AUGMENTATIONS[cfg.augment])
                self.module.train()
                with acc.autocast():
                    loss = self.loss(batch, g)
                acc.backward(loss)
                grad_norm = acc.clip_grad_norm_(self.module.parameters(), 1.0) if acc.sync_gradients else None
                bad = ~torch.isfinite(loss.detach())
                if grad_norm is not None and not scaled:
                    bad = bad | ~torch.isfinite(torch.as_tensor(grad_norm, device=bad.device))
                self._nonfinite += bad
                if scaled:
                    self._optimizer_step()
                elif device_skip:
                    base_optimizer.found_inf = bad.float()
                    self._optimizer_step()
                elif not bool(bad.item()):  # CPU, FSDP: decided on the host (free on a CPU)
                    self._optimizer_step()
                self.optimizer.zero_grad(set_to_none=True)
                self.lr_scheduler.step()
                self.step += 1
                running += loss.detach().nan_to_num(0.0, 0.0, 0.0)
                seen += 1
                bar.update(1)
                if self.step % check_every == 0 or self.step == cfg.max_steps:
                    self._check_finite(self.step - window_start)
                    window_start = self.step
                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    now = time.perf_counter()
                    mean = acc.gather((running / seen).reshape(1)).mean().item()
                    record = {"step": self.step, "loss": mean, "lr": self.lr_scheduler.get_last_lr()[0],
                              "images_per_s": seen * per_rank * acc.num_processes / (now - t_log),
                              "elapsed_s": now - start}
                    if self.skipped_steps:
                        record["skipped_steps"] = self.skipped_steps
                    if torch.cuda.is_available():
                        record["max_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
                    bar.set_postfix(loss=f"{mean:.4f}")
                    if acc.is_main_process:
                        with log_path.open("a") as f:
                            f.write(json.dumps(record) + "\n")
                    running, seen, t_log = 0.0, 0, now
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self.write_samples()
                out_of_time = cfg.max_minutes is not None and time.perf_counter() - start > 60 * cfg.max_minutes
                stop = self._stop
                if acc.num_processes > 1:  # every rank must stop (and checkpoint) at the same step
                    if self.step % max(1, cfg.stop_check_every) == 0:
                        flags = acc.gather(torch.tensor([float(stop), float(out_of_time)], device=acc.device))
                        stop, out_of_time = (bool(f) for f in flags.reshape(-1, 2).amax(0))
                        self._stop = stop
                    else:
                        stop = out_of_time = False  # decided together at the next check step
                if self.step % cfg.checkpoint_every == 0 or stop or out_of_time:
                    self._check_finite(self.step - window_start)
                    window_start = self.step
                    self.save_checkpoint()
                if stop or out_of_time:
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if device_skip:
                base_optimizer.found_inf = None
            bar.close()
        if self.step >= cfg.max_steps and latest_checkpoint(self.out) != self.out / "checkpoints" / f"step_{self.step:08d}":
            self.save_checkpoint()
        return {"step": self.step, "seconds": time.perf_counter() - start, "stopped": self._stop,
                "signal": self.stop_signal, "skipped_steps": self.skipped_steps}

    def _optimizer_step(self) -> None:
        self.optimizer.step()
        self.ema.step([p for p in self.module.parameters() if p.requires_grad])

    def _check_finite(self, window: int) -> None:
        """Read the device's non-finite count (one sync): stop, or account skipped steps."""
        count = self._nonfinite.reshape(1)
        if self.accelerator.num_processes > 1:
            count = self.accelerator.gather(count).amax().reshape(1)
        total = int(count.item())
        new = total - self._nonfinite_seen
        self._nonfinite_seen = total
        if new <= 0:
            self._skipped_in_a_row = 0
            return
        newest = latest_checkpoint(self.out)
        kept = f"the newest finite checkpoint is {newest}" if newest else "no checkpoint was written"
        if self.config.on_nonfinite == "stop":
            raise NonFiniteError(f"non-finite loss or gradient by step {self.step} (learning rate "
                                 f"{self.config.learning_rate:g}); training stopped, {kept}. Lower --learning-rate, "
                                 "or --on-nonfinite skip to drop such steps")
        self.skipped_steps += new
        logger.warning("skipped %d update(s) with a non-finite loss or gradient by step %d", new, self.step)
        # a whole window of bad steps continues a streak; a partly good window (on a GPU) ends it
        self._skipped_in_a_row = self._skipped_in_a_row + new if new >= window else new
        if self._skipped_in_a_row >= self.config.max_skipped_in_a_row:
            raise NonFiniteError(f"{self._skipped_in_a_row} updates in a row were non-finite (by step {self.step}); "
                                 f"training stopped, {kept}. Lower --learning-rate")

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        logger.warning("signal %d: saving a checkpoint and stopping", signum)
        self._stop = True
        self.stop_signal = signum

    # -------------------------------------------------------------- outputs
    def pipeline(self, use_ema: bool = True):
        """A Zero123Pipeline over copies of the current (EMA) weights, for samples and export."""


        if self.fsdp:
            raise NotImplementedError("export under FSDP: resume the run on one GPU (or DDP) and export there")
        trained = self.accelerator.unwrap_model(self.module)
        # a compiled forward does not deep-copy: the copy gets the plain one
        compiled = trained.unet.__dict__.pop("_compiled_call_impl", None)
        try:
            module = copy.deepcopy(trained).float()
        finally:
            if compiled is not None:
                trained.unet._compiled_call_impl = compiled
        module.unet.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
        if use_ema:
            self.ema.copy_to([p for p in module.parameters() if p.requires_grad])
        encoder = module.image_encoder if module.image_encoder is not None else copy.deepcopy(self.frozen_encoder)
        framing = {} if self.foreground_ratio is None else {"foreground_ratio": self.foreground_ratio}
        return Zero123Pipeline(module.unet, copy.deepcopy(self.vae).float(), encoder.float(), module.camera_projection,
                               **framing)

    def write_samples(self, count: int = 4) -> Path | None:
        if not self.accelerator.is_main_process:
            return None


        pipe = self.pipeline()
        batch = self.batcher.batch(10**9, count, seed=self.config.seed + 1)  # fixed pairs, same every time
        dev = self.accelerator.device
        cond = pipe.encode_condition(batch["cond"].to(dev))
        lat = pipe.sample_latents(cond, batch["pose"].to(dev), num_inference_steps=30,
                                  generator=torch.Generator().manual_seed(0))
        rows = [to_uint8(batch["cond"]), to_uint8(batch["target"]), to_uint8(pipe.decode_latents(lat).float())]
        grid = np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)
        path = self.out / "samples" / f"step_{self.step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(path)
        return path

    def export(self, path: str | Path, dtype: torch.dtype = torch.float16, unet_weight_bits: int | None = None) -> Path:
        """Save the EMA pipeline in the diffusers layout (what gets shipped; ``unet_weight_bits=8``: int8 UNet)."""
        if self.accelerator.is_main_process:
            self.pipeline().save_pretrained(path, dtype=dtype, unet_weight_bits=unet_weight_bits)
        self.accelerator.wait_for_everyone()
        return Path(path)


# ---------------------------------------------------------------------------------------------- VAE
def train_vae(config: VAETrainConfig, images: np.ndarray | None = None) -> Path:
    """Train the small preset's autoencoder (L1 + MSE + tiny KL) and set its latent scaling factor.

    The official model uses SD's VAE; the small preset has none to borrow, so it learns its own, then
    sets ``scaling_factor`` = 1/std of its latents, as SD chose 0.18215 for its VAE.
    """

    acc = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    model_config = preset(config.preset)
    if images is None:
        images, _, _ = load_training_arrays(config.data, model_config.image_size,
                                            config.cache_dir or str(Path(config.output_dir) / "cache"))
    flat = torch.from_numpy(images.reshape(-1, *images.shape[-3:])).to(acc.device)
    torch.manual_seed(config.seed)
    vae = build_vae(model_config)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.max_steps, eta_min=config.learning_rate * 0.1)
    vae, optimizer = acc.prepare(vae, optimizer)
    g = torch.Generator().manual_seed(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(config.max_steps), desc="vae", disable=not acc.is_local_main_process)
    for step in bar:
        idx = torch.randint(flat.shape[0], (config.batch_size,), generator=g).to(acc.device)
        x = to_unit(flat[idx])
        with acc.autocast():
            posterior = acc.unwrap_model(vae).encode(x).latent_dist
            recon = acc.unwrap_model(vae).decode(posterior.sample()).sample
            loss = F.l1_loss(recon.float(), x) + F.mse_loss(recon.float(), x) + config.kl_weight * posterior.kl().mean()
        acc.backward(loss)
        optimizer.step()
        sched.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % config.log_every == 0 or step + 1 == config.max_steps:
            if not math.isfinite(loss.item()):  # checked where the loss is read anyway (no extra sync)
                raise NonFiniteError(f"VAE training: non-finite loss by step {step + 1}; nothing was saved. "
                                     "Lower the learning rate")
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if acc.is_main_process:
                with (out / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps({"step": step + 1, "loss": loss.item()}) + "\n")
    vae = acc.unwrap_model(vae).eval()
    with torch.no_grad():
        idx = torch.randint(flat.shape[0], (min(1024, flat.shape[0]),), generator=g).to(acc.device)
        x = to_unit(flat[idx])
        std = torch.cat([vae.encode(c).latent_dist.mean for c in x.split(128)]).std().item()
    if not math.isfinite(std) or std <= 0:
        raise NonFiniteError(f"VAE training: latent std {std} is not a positive finite number; nothing was saved")
    vae.register_to_config(scaling_factor=1.0 / std)
    if acc.is_main_process:
        vae.save_pretrained(out / "vae", safe_serialization=True)
    return out / "vae"
