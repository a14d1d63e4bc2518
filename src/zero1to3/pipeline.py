"""Zero123Pipeline: one image + target cameras -> novel views, batched, with classifier-free guidance.

Sampling follows the authors' demo exactly (SPEC §3, checked against ../shared/peer-kit): batch order
[uncond, cond], a zero unconditional branch, DDIM on the "reference" trajectory (N requested steps run
N-1 UNet steps from 1+(N-2)k down to 1, final alpha_prev = alphā[0]), x_T then one noise draw per step
from the same generator (drawn only at eta > 0, where the step uses it), and uint8 output by truncation.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image
from tqdm.auto import tqdm
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from zero1to3 import fast
from zero1to3.camera import RelativePose
from zero1to3.checkpoint import load_original_components
from zero1to3.cpu_threads import choose_cpu_threads, cpu_threads
from zero1to3.fast import denoise_fn, enable_fast_path
from zero1to3.model import (CLIP_MEAN, CLIP_STD, CameraProjection, PoseEncoding, build_camera_projection,
                            build_image_encoder, build_scheduler, build_unet, build_vae, clip_image_embedding,
                            latent_moments, pose_vector_tensor, preset, timestep_tensor)
from zero1to3.preprocess import DEFAULT_FOREGROUND_RATIO, ImageInput, PreprocessConfig, preprocess_image, to_model_input
from zero1to3.quantized import QuantizedFormatError, is_quantized, load_quantized, save_quantized
from zero1to3.seeding import view_seed

#: Sampler names every command and the demo accept.
SCHEDULERS: tuple[str, ...] = ("ddim", "dpmsolver++")
#: Precision names of the CLI and configs -> torch dtypes.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

#: Where the embedded default model lives inside the package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights" / "tiny"
COMPONENT_FOLDERS = ("unet", "vae", "image_encoder", "scheduler", "cc_projection")


#: No weight file over 16 MB (shipping budget); transformers and diffusers take this string.
MAX_SHARD_SIZE = "15MB"


def _load_component(cls, path: Path, subfolder: str):
    """A diffusers component from ``path/subfolder``: int8 storage when the folder has it, else safetensors."""
    folder = path / subfolder
    if is_quantized(folder):
        return load_quantized(cls, folder)
    return cls.from_pretrained(path, subfolder=subfolder, local_files_only=True, use_safetensors=True)


class ModelLoadError(FileNotFoundError):
    """A model path that is missing or not in an expected layout (message is one line)."""


@dataclass
class Conditioning:
    """Everything the denoiser needs from the input image, computed once per request."""

    clip_embedding: torch.Tensor  # [B, 1, D] projected CLIP image embedding (not normalised)
    concat_latent: torch.Tensor  # [B, 4, h, w] VAE posterior mode, NOT scaled

    def repeat(self, n: int) -> "Conditioning":
        return Conditioning(self.clip_embedding.repeat_interleave(n, 0), self.concat_latent.repeat_interleave(n, 0))

    def __len__(self) -> int:
        return self.clip_embedding.shape[0]


#: What ``output_type`` may ask for (diffusers' names).
OUTPUT_TYPES: tuple[str, ...] = ("pil", "np", "pt", "latent")


@dataclass
class NovelViewOutput:
    """Generated views, diffusers-style: ``images`` is flat (pose-major: all samples of pose 0, then pose 1 ...).

    ``array`` is uint8 [poses, samples, H, W, 3] (None for ``output_type="latent"``); ``images_per_pose``
    keeps the per-pose structure. ``images`` follows ``output_type``: a list of PIL images ("pil"), float32
    [N, H, W, 3] in [0, 1] ("np"), float32 [N, 3, H, W] in [0, 1] ("pt"), all the same quantised pixels as
    ``array``; or the final scaled latents [N, 4, h, w] ("latent").
    """

    array: np.ndarray | None
    poses: list[RelativePose]
    input_image: Image.Image | None = None
    latents: torch.Tensor | None = None
    decoded: torch.Tensor | None = None
    output_type: str = "pil"

    @property
    def num_samples(self) -> int:
        if self.array is not None:
            return int(self.array.shape[1])
        return int(self.latents.shape[0]) // max(len(self.poses), 1)

    @property
    def images(self) -> list[Image.Image] | np.ndarray | torch.Tensor:
        if self.output_type == "latent":
            return self.latents
        flat = self.array.reshape(-1, *self.array.shape[2:])
        if self.output_type == "np":
            return flat.astype(np.float32) / 255.0
        if self.output_type == "pt":
            return torch.from_numpy(flat).permute(0, 3, 1, 2).float() / 255.0
        return [Image.fromarray(s) for s in flat]

    @property
    def images_per_pose(self) -> list[list[Image.Image]]:
        """PIL images, a list per target camera of its samples (whatever ``output_type`` was)."""
        if self.array is None:
            raise ValueError('output_type="latent" has no decoded images')
        return [[Image.fromarray(s) for s in per_pose] for per_pose in self.array]

    def grid(self, include_input: bool = True) -> Image.Image:
        """One image: a row per pose (input first if given), a column per sample."""
        if self.array is None:
            raise ValueError('output_type="latent" has no decoded images to lay out')
        poses, samples, h, w, _ = self.array.shape
        cols = samples + (1 if include_input and self.input_image is not None else 0)
        canvas = Image.new("RGB", (cols * w, poses * h), (255, 255, 255))
        for p in range(poses):
            c0 = 0
            if cols > samples:
                canvas.paste(self.input_image.resize((w, h)), (0, p * h))
                c0 = 1
            for s in range(samples):
                canvas.paste(Image.fromarray(self.array[p, s]), ((c0 + s) * w, p * h))
        return canvas


#: The diffusers-style name of the output type.
Zero123PipelineOutput = NovelViewOutput

#: Target cameras in every accepted form: RelativePose(s), [polar, azimuth, radius] degree triples (a list
#: or a [P, 3] array), or pose vectors [P, 4] (a tensor, or a [P, 4] array).
PoseInput = RelativePose | Sequence[RelativePose] | Sequence[Sequence[float]] | torch.Tensor | np.ndarray


def normalize_poses(poses: PoseInput) -> tuple[list[RelativePose | None], torch.Tensor | None]:
    """Target cameras as RelativePose objects, or (for [P, 4] pose vectors) placeholders and the vectors."""
    if isinstance(poses, RelativePose):
        return [poses], None
    if torch.is_tensor(poses):  # raw pose vectors [P, 4] (e.g. ablations with T zeroed); validated later
        return [None] * (poses.shape[0] if poses.dim() == 2 else 1), poses
    if isinstance(poses, np.ndarray):
        if poses.ndim == 2 and poses.shape[1] == 4:
            return [None] * poses.shape[0], torch.from_numpy(poses)
        poses = poses.tolist()
    poses = list(poses)
    if poses and all(isinstance(v, (int, float)) for v in poses):  # one [polar, azimuth, radius] triple
        poses = [poses]
    out = []
    for pose in poses:
        if isinstance(pose, RelativePose):
            out.append(pose)
        elif isinstance(pose, (list, tuple)) and len(pose) in (2, 3):
            out.append(RelativePose.from_degrees(*map(float, pose)))
        else:
            raise ValueError(f"a target camera must be a RelativePose or [polar_deg, azimuth_deg, radius], got {pose!r}")
    return out, None


def make_scheduler(name, base_config) -> DDIMScheduler | DPMSolverMultistepScheduler:
    """A fresh scheduler for one run: by name, or a copy of a scheduler object (its class and config)."""
    if isinstance(name, SchedulerMixin):
        return type(name).from_config(name.config)
    if name == "ddim":
        return DDIMScheduler.from_config(base_config)
    if name in ("dpmsolver++", "dpm++", "dpmsolver"):
        return DPMSolverMultistepScheduler.from_config(base_config, algorithm_type="dpmsolver++", solver_order=2,
                                                       timestep_spacing="trailing")
    raise ValueError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


def reference_ddim_timesteps(scheduler: DDIMScheduler, num_inference_steps: int) -> torch.Tensor:
    """The authors' trajectory: diffusers' "leading" timesteps minus the first (N requested -> N-1 run)."""
    scheduler.set_timesteps(num_inference_steps)
    return scheduler.timesteps[1:] if num_inference_steps > 1 else scheduler.timesteps


def sampler_timesteps(scheduler: DDIMScheduler | DPMSolverMultistepScheduler,
                      num_inference_steps: int) -> torch.Tensor:
    """The timesteps a sampler run visits: DDIM on the reference trajectory, other solvers as diffusers sets them."""
    if isinstance(scheduler, DDIMScheduler):
        return reference_ddim_timesteps(scheduler, num_inference_steps)
    scheduler.set_timesteps(num_inference_steps)
    return scheduler.timesteps


def denoiser_steps(num_inference_steps: int, scheduler: str = "ddim") -> int:
    """Guided UNet evaluations a request runs: DDIM runs N-1 of N requested (at least 1), DPM-Solver++ runs N."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULERS)}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    return max(num_inference_steps - 1, 1) if scheduler == "ddim" else num_inference_steps


class Zero123Pipeline:
    """Components composed like a diffusers pipeline; see docs/architecture.md for the API."""

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL,
                 image_encoder: CLIPVisionModelWithProjection, camera_projection: CameraProjection,
                 scheduler: DDIMScheduler | None = None, feature_extractor=None,
                 pose_encoding: PoseEncoding = "zero123",
                 foreground_ratio: float = DEFAULT_FOREGROUND_RATIO) -> None:
        self.unet = unet
        self.vae = vae
        self.image_encoder = image_encoder
        self.camera_projection = camera_projection
        self.scheduler = scheduler or build_scheduler()
        self.feature_extractor = feature_extractor
        self.pose_encoding: PoseEncoding = pose_encoding
        #: Share of the frame the object's longest side should fill after preprocessing: the framing of
        #: the model's training renders (reference: 200/256).
        self.foreground_ratio = float(foreground_ratio)
        #: CPU threads for sampling; None picks the fastest for the model's size (zero1to3.cpu_threads).
        self.cpu_threads: int | None = None
        for module in self.modules():
            module.eval().requires_grad_(False)

    # ------------------------------------------------------------------ construction / I/O
    @classmethod
    def from_preset(cls, name: str = "tiny", seed: int = 0, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None) -> "Zero123Pipeline":
        """Random weights of a preset (``tiny`` or the official-size ``zero123``): for tests and speed work.

        The modules are constructed directly on ``device`` (the 860M UNet builds in seconds on a GPU instead
        of running its initialisers on the CPU and copying).
        """
        config = preset(name)
        torch.manual_seed(seed)
        with torch.device(device or "cpu"):
            parts = (build_unet(config), build_vae(config), build_image_encoder(config),
                     build_camera_projection(config))
        return cls(*parts, build_scheduler(), pose_encoding=config.pose_encoding).to(device, dtype)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, *, image_encoder: str | os.PathLike | None = None,
                        use_ema: bool = True, original_config: str | os.PathLike | None = None,
                        pose_encoding: PoseEncoding | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, torch_dtype: torch.dtype | None = None,
                        ) -> "Zero123Pipeline":
        """Load from a local path only: a diffusers-layout folder, an original ``.ckpt`` or None (embedded).

        For a ``.ckpt``, ``use_ema`` picks the UNet copy the authors' demo samples with; ``image_encoder`` is a
        local CLIPVisionModelWithProjection folder (the checkpoint's CLIP was frozen, so SD image-variations'
        encoder is the same one). ``torch_dtype`` is diffusers' name for ``dtype``.
        """
        if torch_dtype is not None:
            if dtype is not None and dtype != torch_dtype:
                raise ValueError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; give one")
            dtype = torch_dtype
        if path is None:
            path = DEFAULT_MODEL_DIR
            if not (path / "model_index.json").is_file():
                raise ModelLoadError(f"no embedded default model is installed (expected {path}/model_index.json); "
                                     "pass a model folder or .ckpt with --model")
        path = Path(path)
        if not path.exists():
            raise ModelLoadError(f"model path not found: {path} (expected a diffusers-layout folder with "
                                 f"{', '.join(COMPONENT_FOLDERS)}/ or an original .ckpt file)")
        if path.is_file():
            parts = load_original_components(path, image_encoder=image_encoder, use_ema=use_ema,
                                             original_config=original_config)
            pipe = cls(parts.unet, parts.vae, parts.image_encoder, parts.camera_projection, parts.scheduler)
        else:
            pipe = cls._from_folder(path, image_encoder)
        if pose_encoding is not None:
            pipe.pose_encoding = pose_encoding
        return pipe.to(device, dtype)

    @classmethod
    def _from_folder(cls, path: Path, image_encoder: str | os.PathLike | None) -> "Zero123Pipeline":
        missing = [f for f in COMPONENT_FOLDERS if not (path / f).is_dir()]
        if image_encoder is not None and "image_encoder" in missing:
            missing.remove("image_encoder")
        if missing:
            raise ModelLoadError(f"{path} is not a Zero-1-to-3 model folder: missing {', '.join(m + '/' for m in missing)} "
                                 f"(expected the diffusers layout {', '.join(f + '/' for f in COMPONENT_FOLDERS)})")
        meta = {}
        if (path / "model_index.json").is_file():
            meta = json.loads((path / "model_index.json").read_text()).get("zero1to3", {})
        try:
            # safetensors only: a folder with pickled .bin weights is refused, never unpickled
            safe = dict(local_files_only=True, use_safetensors=True)
            unet = _load_component(UNet2DConditionModel, path, "unet")
            vae = _load_component(AutoencoderKL, path, "vae")
            encoder = CLIPVisionModelWithProjection.from_pretrained(image_encoder or path / "image_encoder", **safe)
            projection = _load_component(CameraProjection, path, "cc_projection")
            scheduler = DDIMScheduler.from_pretrained(path, subfolder="scheduler", local_files_only=True)
        except QuantizedFormatError as exc:
            raise ModelLoadError(f"cannot load model from {path}: {exc}") from None
        except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
            # RuntimeError/TypeError: weights of another architecture ("Cannot copy out of meta tensor" ...)
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load model from {path}: {first} (weights must be .safetensors of the "
                                 "architecture in each config.json)") from None
        extractor = None
        if (path / "feature_extractor").is_dir():
            extractor = CLIPImageProcessor.from_pretrained(path / "feature_extractor")
        return cls(unet, vae, encoder, projection, scheduler, extractor,
                   pose_encoding=meta.get("pose_encoding", "zero123"),
                   foreground_ratio=meta.get("foreground_ratio", DEFAULT_FOREGROUND_RATIO))

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None,
                        unet_weight_bits: int | None = None) -> None:
        """Write the diffusers layout of the public conversions (safetensors), plus model_index.json.

        Weight files are sharded under 16 MB (the shipping budget's file limit). ``unet_weight_bits=8`` stores
        the UNet as per-channel int8 (:mod:`zero1to3.quantized`; only this package's loader reads it).
        """
        if unet_weight_bits not in (None, 8):
            raise ValueError(f"unet_weight_bits must be None or 8, got {unet_weight_bits!r}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("unet", "vae", "image_encoder", "camera_projection"):
            module = getattr(self, name)
            folder = path / ("cc_projection" if name == "camera_projection" else name)
            for stale in [*folder.glob("*.safetensors"), *folder.glob("*.safetensors.index.json")]:
                stale.unlink()  # a re-save in another format or shard count must not leave old weights beside
            if name == "unet" and unet_weight_bits == 8:
                save_quantized(module, folder)
                continue
            if dtype is not None and any(p.dtype != dtype for p in module.parameters()):
                # a cast copy, one module at a time: casting in place and back would round the live weights
                module = copy.deepcopy(module).to(dtype)
            module.save_pretrained(folder, safe_serialization=True, max_shard_size=MAX_SHARD_SIZE)
        self.scheduler.save_pretrained(path / "scheduler")

        size = self.image_encoder.config.image_size
        extractor = self.feature_extractor or CLIPImageProcessor(
            crop_size={"height": size, "width": size}, size={"shortest_edge": size},
            image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), do_convert_rgb=True)
        extractor.save_pretrained(path / "feature_extractor")
        index = {
            "_class_name": "Zero1to3StableDiffusionPipeline", "_diffusers_version": _diffusers_version(),
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "feature_extractor": ["transformers", "CLIPImageProcessor"], "scheduler": ["diffusers", "DDIMScheduler"],
            "cc_projection": ["zero1to3.model", "CameraProjection"],
            "zero1to3": {"image_size": self.image_size, "pose_encoding": self.pose_encoding,
                         "foreground_ratio": self.foreground_ratio},
        }
        (path / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, self.image_encoder, self.camera_projection]

    def to(self, *args: str | torch.device | torch.dtype | None, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> "Zero123Pipeline":
        """Move and/or cast every module, as diffusers: ``to("cuda")``, ``to(torch.float16)``, ``to("cuda", dtype)``."""
        for arg in args:
            if isinstance(arg, torch.dtype):
                dtype = arg
            elif arg is not None:
                device = arg
        if device is None and dtype is None:
            return self
        for module in self.modules():
            module.to(device=device, dtype=dtype)
        return self

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for m in self.modules() for p in m.parameters())

    def sampling_threads(self) -> int | None:
        """CPU threads a call runs with (zero1to3.cpu_threads; None on a GPU or for PyTorch's default)."""
        if self.device.type != "cpu":
            return None
        return choose_cpu_threads(self.num_parameters, self.cpu_threads)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    # ------------------------------------------------------------------ building blocks
    def preprocess(self, image: ImageInput, foreground_ratio: float | None = None) -> Image.Image:
        """Crop, rescale (``foreground_ratio``, default: the model's) and composite on white."""
        ratio = self.foreground_ratio if foreground_ratio is None else foreground_ratio
        return preprocess_image(image, PreprocessConfig(size=self.image_size, foreground_ratio=ratio))

    def image_to_tensor(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """RGB uint8 image -> [1,3,H,W] float in [-1,1] on the pipeline's device."""
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"expected an RGB image, got array shape {array.shape}")
        x = torch.from_numpy(array.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        return x.to(device=self.device, dtype=self.dtype)

    def encode_clip(self, images: torch.Tensor) -> torch.Tensor:
        return clip_image_embedding(self.image_encoder, images.to(self.dtype))

    def encode_condition(self, images: torch.Tensor, clip_embedding: torch.Tensor | None = None) -> Conditioning:
        """[B,3,H,W] in [-1,1] -> CLIP embedding and unscaled posterior-mode latent."""
        images = images.to(device=self.device, dtype=self.dtype)
        if clip_embedding is None:
            clip_embedding = self.encode_clip(images)
        concat = latent_moments(self.vae, images)[0]  # posterior mode = mean, unscaled
        return Conditioning(clip_embedding.to(device=self.device, dtype=self.dtype), concat)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """[-1,1] images -> scaled diffusion latents (mean of the posterior times the scaling factor)."""
        return self.vae.encode(images.to(self.dtype)).latent_dist.mean * self.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.dtype) / self.scaling_factor).sample

    def context(self, cond: Conditioning, pose_vectors: torch.Tensor) -> torch.Tensor:
        """One-token cross-attention context [B,1,D]."""
        return self.camera_projection(cond.clip_embedding, pose_vectors.to(self.dtype))

    def unet_eps(self, x_t: torch.Tensor, t: torch.Tensor, concat: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([x_t, concat.to(x_t.dtype)], dim=1), t, encoder_hidden_states=context).sample

    def guided_noise(self, x_t: torch.Tensor, t: int | torch.Tensor, cond: Conditioning, pose_vectors: torch.Tensor,
                     guidance_scale: float = 3.0, context: torch.Tensor | None = None) -> torch.Tensor:
        """Classifier-free guided epsilon: e_u + s (e_c - e_u), uncond = zero context and zero concat."""
        batch = x_t.shape[0]
        x_t = x_t.to(self.dtype)
        if context is None:
            context = self.context(cond, pose_vectors)
        if guidance_scale == 1.0:
            return self.unet_eps(x_t, timestep_tensor(t, batch, x_t.device), cond.concat_latent, context)
        x_in = torch.cat([x_t, x_t])
        concat = torch.cat([torch.zeros_like(cond.concat_latent), cond.concat_latent])
        ctx = torch.cat([torch.zeros_like(context), context])
        t_batch = timestep_tensor(t, batch, x_t.device)  # a scalar or one timestep per sample
        eps_u, eps_c = self.unet_eps(x_in, torch.cat([t_batch, t_batch]), concat, ctx).chunk(2)
        return eps_u + guidance_scale * (eps_c - eps_u)

    def pose_vectors(self, poses: RelativePose | Sequence[RelativePose] | torch.Tensor,
                     input_polar: float | None = None) -> torch.Tensor:
        return pose_vector_tensor(poses, self.device, self.dtype, input_polar, self.pose_encoding)

    def enable_fast_path(self, mode: str | None = "cuda_graph", **options) -> "Zero123Pipeline":
        """Sampling speed (zero1to3.fast): "cuda_graph" (default on CUDA), "compile", "auto", or None for eager."""
        return enable_fast_path(self, mode, **options)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_latents(self, cond: Conditioning, pose_vectors: torch.Tensor, *, num_inference_steps: int = 50,
                       guidance_scale: float = 3.0, scheduler: str = "ddim", eta: float = 0.0,
                       generator: torch.Generator | Sequence[torch.Generator] | None = None,
                       latents: torch.Tensor | None = None,
                       noises: Sequence[torch.Tensor] | None = None, progress: bool = False,
                       callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
                       step_end: Callable[[int, int, torch.Tensor], torch.Tensor | None] | None = None) -> torch.Tensor:
        """Run the sampler for a batch whose conditioning rows align with ``pose_vectors`` rows.

        ``generator``: one generator for the batch (the authors' order: x_T, then one draw per step), or one
        per row, each drawing that row's x_T and step noise (so a row's noise does not depend on the batch).
        ``callback(i, t, x, eps)`` runs before step i's update; ``step_end(i, t, x)`` after it and may
        return replacement latents (diffusers' callback_on_step_end).
        """
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if not math.isfinite(guidance_scale):
            raise ValueError("guidance_scale must be finite")
        batch = len(cond)
        shape = (batch, 4, self.unet.config.sample_size, self.unet.config.sample_size)
        sched = make_scheduler(scheduler, self.scheduler.config)
        timesteps = sampler_timesteps(sched, num_inference_steps)  # DDIM (named or assigned): reference
        if isinstance(generator, Sequence) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch}")

        def draw() -> torch.Tensor:
            if isinstance(generator, Sequence):
                return torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generator])
            return torch.randn(shape, generator=generator, dtype=torch.float32)

        if latents is None:
            latents = draw()
        x = latents.to(device=self.device, dtype=torch.float32)
        context = self.context(cond, pose_vectors)
        step_eps = denoise_fn(self, cond, pose_vectors, context, guidance_scale)  # CUDA graph on GPU (fast.py)
        stochastic = isinstance(sched, DDIMScheduler) and eta > 0  # else the step ignores noise: draw none
        for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
            noise = (noises[i] if noises is not None else draw()) if stochastic else None
            eps = step_eps(x, t)
            if callback is not None:
                callback(i, int(t), x, eps)
            if isinstance(sched, DDIMScheduler):
                x = sched.step(eps, t, x, eta=eta,
                               variance_noise=noise.to(x.device) if stochastic else None).prev_sample
            else:
                x = sched.step(eps, t, x).prev_sample
            if step_end is not None:
                replaced = step_end(i, int(t), x)
                if replaced is not None:
                    x = replaced.to(device=x.device, dtype=torch.float32)
        return x

    def prepare_input(self, image: ImageInput, preprocess: bool = True,
                      foreground_ratio: float | None = None) -> Image.Image:
        if preprocess:
            return self.preprocess(image, foreground_ratio)
        return to_model_input(image, self.image_size)

    def _check_tensor_image(self, image: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        if image.dim() == 3:
            image = image[None]
        if tuple(image.shape) != (1, 3, size, size):
            raise ValueError(f"a tensor input image must have shape [1, 3, {size}, {size}] in [-1, 1], "
                             f"got {tuple(image.shape)}")
        if not torch.isfinite(image).all():
            raise ValueError("input image tensor contains NaN or inf")
        return image.to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def __call__(self, image: ImageInput, poses: PoseInput, *, num_samples: int | None = None,
                 num_images_per_prompt: int | None = None, guidance_scale: float = 3.0,
                 num_inference_steps: int = 50, scheduler: str | SchedulerMixin | None = None,
                 eta: float = 0.0, seed: int | None = 0,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None,
                 output_type: str = "pil", return_dict: bool = True,
                 preprocess: bool = True, foreground_ratio: float | None = None,
                 input_polar: float | None = None, batch_size: int | None = None, progress: bool = False,
                 clip_embedding: torch.Tensor | None = None, latents: torch.Tensor | None = None,
                 return_latents: bool = False,
                 callback: Callable[[int, int, torch.Tensor, torch.Tensor], None] | None = None,
                 callback_on_step_end: Callable[["Zero123Pipeline", int, int, dict], dict | None] | None = None,
                 ) -> NovelViewOutput | tuple:
        """Generate ``num_samples`` views for each target camera in one batched sampler run.

        ``poses``: RelativePose(s), ``[polar, azimuth, radius]`` changes in degrees (the community Zero1to3
        form), or pose vectors [P, 4]. ``seed`` gives every generated image its own CPU generator
        (:func:`zero1to3.seeding.view_seed`), so results depend neither on the device nor on ``batch_size``,
        which caps how many views run through the UNet at once (memory); a ``generator`` given instead is
        shared by the whole request, as in the authors' code; a list of generators gives one per image
        (pose-major), as in diffusers. ``scheduler``: "ddim",
        "dpmsolver++", a diffusers scheduler object, or None for ``self.scheduler`` (assign
        ``pipe.scheduler = X.from_config(pipe.scheduler.config)`` as in diffusers; DDIM always runs the
        reference trajectory). ``input_polar`` (radians) is used by the Stable Zero123 pose encoding.
        ``callback(step, t, x, eps)`` runs before every sampler step (progress; it may raise to cancel a
        request); ``callback_on_step_end(pipe, step, t, {"latents": x})`` after it, as in diffusers, and may
        return ``{"latents": new}``. Diffusers' names work as aliases: ``num_images_per_prompt``,
        ``output_type`` ("pil", "np", "pt", "latent"), ``return_dict=False`` (a tuple ``(images,)``).
        """
        if num_images_per_prompt is not None:
            if num_samples is not None and num_samples != num_images_per_prompt:
                raise ValueError(f"num_samples={num_samples} and num_images_per_prompt={num_images_per_prompt} "
                                 "disagree; give one")
            num_samples = num_images_per_prompt
        num_samples = 4 if num_samples is None else num_samples
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        poses, vectors = normalize_poses(poses)
        if not poses:
            raise ValueError("give at least one target camera")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if vectors is not None:
            vectors = pose_vector_tensor(vectors, self.device, self.dtype)
        many = isinstance(generator, Sequence)
        if many and len(generator) != len(poses) * num_samples:
            raise ValueError(f"got {len(generator)} generators for {len(poses) * num_samples} images "
                             "(one per image, pose-major, or one shared)")
        if generator is not None and not many and batch_size is not None and batch_size < len(poses) * num_samples:
            raise ValueError("batch_size with one shared generator would make the noise depend on the "
                             "chunking; pass seed= (or one generator per image) instead")
        if scheduler is None:
            scheduler = self.scheduler
        step_end = None
        if callback_on_step_end is not None:
            def step_end(i: int, t: int, x: torch.Tensor) -> torch.Tensor | None:
                result = callback_on_step_end(self, i, t, {"latents": x})
                return result.get("latents") if result else None
        with cpu_threads(self.sampling_threads()):
            if torch.is_tensor(image):
                x = self._check_tensor_image(image)
                pil = Image.fromarray(to_uint8(x)[0])
            else:
                pil = self.prepare_input(image, preprocess, foreground_ratio)
                x = self.image_to_tensor(pil)
            if clip_embedding is None:
                cond1 = Conditioning(*fast.encode_condition(self, x))
            else:
                cond1 = self.encode_condition(x, clip_embedding)
            if vectors is None:
                vectors = self.pose_vectors(poses, input_polar)
            vectors = vectors.repeat_interleave(num_samples, 0)
            total = vectors.shape[0]
            chunk = batch_size or total
            generators: list[torch.Generator] | None = list(generator) if many else None
            if generator is None:
                base = seed if seed is not None else torch.seed()
                generators = [torch.Generator().manual_seed(view_seed(base, k)) for k in range(total)]
            outs, lats, decs = [], [], []
            for start in range(0, total, chunk):
                stop = min(total, start + chunk)
                lat_in = latents[start:stop] if latents is not None else None
                lat = self.sample_latents(cond1.repeat(stop - start), vectors[start:stop], eta=eta,
                                          num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                          scheduler=scheduler, latents=lat_in, progress=progress,
                                          generator=generators[start:stop] if generators is not None else generator,
                                          callback=callback, step_end=step_end)
                if return_latents or output_type == "latent":
                    lats.append(lat)
                if output_type == "latent":
                    continue
                decoded = fast.decode_latents(self, lat).float()
                outs.append(to_uint8(decoded))
                if return_latents:
                    decs.append(decoded)
        array = None
        if outs:
            array = np.concatenate(outs).reshape(len(poses), num_samples, *outs[0].shape[1:])
        out = NovelViewOutput(array, poses, pil, torch.cat(lats) if lats else None,
                              torch.cat(decs) if decs else None, output_type)
        return out if return_dict else (out.images,)


def to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] in [-1,1] -> uint8 [B,H,W,3] as the reference: clamp((x+1)/2) then 255*x truncated."""
    image = torch.clamp((decoded.float() + 1.0) / 2.0, 0.0, 1.0)
    # truncation on the device (a quarter of the bytes to copy back); values are >= 0, so the same as numpy's
    return (255.0 * image.permute(0, 2, 3, 1)).to(torch.uint8).cpu().numpy()


def _diffusers_version() -> str:
    return diffusers.__version__
