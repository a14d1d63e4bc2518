"""Image -> 3D: optimise a voxel radiance field by score distillation through Zero-1-to-3, then mesh it.

Recipe (defaults in :class:`~zero1to3.recon.losses.ReconConfig`, documented in docs/recon.md):
every step renders the input camera (RGB + mask losses), a jittered near-input camera (near-view
consistency) and ``batch_size`` random cameras around the object (score distillation, sparsity,
opacity), plus total variation of density. Grid and render resolution grow coarse-to-fine; the
occupancy grid is refreshed every few steps so empty space is skipped. The mesh comes from marching
cubes at the iso level whose silhouette best matches the input mask.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import trimesh
from PIL import Image
from safetensors.torch import save_file
from tqdm.auto import tqdm

from zero1to3.atomic import atomic_path, write_text_atomic
from zero1to3.camera import camera_at
from zero1to3.cpu_threads import cpu_threads
from zero1to3.jsonable import json_safe
from zero1to3.media import check_animation_path, save_animation
from zero1to3.protocols import ScoreModel

from .config import ReconConfig
from .elevation import ElevationEstimate, estimate_elevation
from .field import VoxelField
from .losses import near_view_loss, opacity_entropy_loss, reference_losses, sample_timestep, sds_loss, sparsity_loss
from .mesh import IsoChoice, export_mesh, extract_mesh
from .views import Reference, jittered_camera, pose_vector, prepare_reference

__all__ = ["ReconConfig", "ReconResult", "reconstruct", "render_turntable", "render_views"]

log = logging.getLogger(__name__)


@dataclass
class ReconResult:
    """What :func:`reconstruct` produced: the field, the mesh, and everything needed to reproduce it."""

    field: VoxelField
    mesh: trimesh.Trimesh
    settings: dict[str, Any]
    timings: dict[str, float]
    iso: IsoChoice
    elevation_deg: float
    elevation: ElevationEstimate | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    reference: Reference | None = None

    def save(self, out_dir: str | Path, mesh_format: str = "glb", turntable: bool = True,
             turntable_frames: int = 60, turntable_resolution: int = 256,
             video_format: str = "gif", progress: bool = False) -> dict[str, Path]:
        """Write mesh, settings JSON, field tensors, turntable animation and input render; returns paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"mesh": export_mesh(self.mesh, out / f"mesh.{mesh_format}", mesh_format)}
        state = self.field.state()  # safetensors: a saved field is read back without unpickling anything
        with atomic_path(out / "field.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in state.items() if torch.is_tensor(v)}, str(tmp),
                      metadata={k: json.dumps(v) for k, v in state.items() if not torch.is_tensor(v)})
        paths["field"] = out / "field.safetensors"
        settings = dict(self.settings, timings=self.timings, history=self.history[-1:] if self.history else [])
        paths["settings"] = out / "settings.json"
        write_text_atomic(paths["settings"], json.dumps(json_safe(settings), indent=2))
        if turntable:
            paths["turntable"] = render_turntable(
                self.field, out / f"turntable.{video_format}", frames=turntable_frames,
                elevation_deg=self.elevation_deg, radius=self.settings["config"]["radius"],
                fov_deg=self.settings["config"]["fov_deg"], resolution=turntable_resolution, progress=progress)
        return paths


@torch.no_grad()
def render_views(field_: VoxelField, cameras: list[np.ndarray] | np.ndarray, fov_deg: float,
                 resolution: int, progress: bool = False, desc: str = "render") -> np.ndarray:
    """uint8 RGB renders [N, H, W, 3] of the field (one camera at a time: bounded memory)."""
    frames = []
    for cam in tqdm(cameras, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        rgb = field_.render(cam, fov_deg, resolution).rgb
        frames.append((rgb.clamp(0, 1) * 255).round().byte().cpu().numpy())
    return np.stack(frames)


def render_turntable(field_: VoxelField, path: str | Path, frames: int = 60, elevation_deg: float = 0.0,
                     radius: float = 2.0, fov_deg: float = 49.1, resolution: int = 256, fps: int = 20,
                     progress: bool = False) -> Path:
    """A full azimuth orbit of the field at the input elevation, as GIF (or .mp4 with imageio-ffmpeg)."""
    path = check_animation_path(path)
    cams = [camera_at(elevation_deg, 360.0 * i / frames, radius) for i in range(frames)]
    images = render_views(field_, cams, fov_deg, resolution, progress=progress, desc="turntable")
    return save_animation(path, list(images), fps)


def _write_preview(field_: VoxelField, preview_dir: Path, step: int, config: ReconConfig,
                   elevation: float, reference: Reference, resolution: int) -> None:
    cams = [camera_at(elevation, az, config.radius) for az in (0.0, 90.0, 180.0, 270.0)]
    views = render_views(field_, cams, config.fov_deg, resolution)
    ref = np.asarray(reference.image.resize((resolution, resolution)))
    Image.fromarray(np.concatenate([ref] + list(views), axis=1)).save(preview_dir / f"step_{step:05d}.png")


def _sample_novel(rng: np.random.Generator, config: ReconConfig, elevation: float, batch: int,
                  stable: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Random cameras on the sphere of radius ``config.radius`` and their pose vectors."""
    lo, hi = config.novel_elevation_range
    cams, poses = [], []
    for _ in range(batch):
        elev, az = rng.uniform(lo, hi), rng.uniform(0.0, 360.0)
        cams.append(camera_at(elev, az, config.radius))
        poses.append(pose_vector(elev, az, config.radius, elevation, config.radius, stable))
    return np.stack(cams), np.stack(poses)


def reconstruct(pipe: ScoreModel, image: Any, config: ReconConfig | None = None, *,
                preview_dir: str | Path | None = None, preview_every: int | None = None,
                progress: bool = True, callback: Callable[[int, dict[str, float]], None] | None = None
                ) -> ReconResult:
    """One image of an object -> a radiance field and a coloured mesh, supervised by ``pipe``.

    ``image``: path, PIL image or HxWx{3,4} array (object on white or with alpha). ``preview_dir``:
    write a strip of renders (input, then azimuth 0/90/180/270) every ``preview_every`` steps.
    Raises :class:`~zero1to3.recon.mesh.EmptyMeshError` (a ValueError) if no surface comes out.
    On a CPU it runs with the pipeline's thread choice (zero1to3.cpu_threads), as its sampler calls do.
    """
    threads = pipe.sampling_threads() if hasattr(pipe, "sampling_threads") else None
    with cpu_threads(threads):
        return _reconstruct(pipe, image, config, preview_dir=preview_dir, preview_every=preview_every,
                            progress=progress, callback=callback)


def _reconstruct(pipe: ScoreModel, image: Any, config: ReconConfig | None, *, preview_dir: str | Path | None,
                 preview_every: int | None, progress: bool,
                 callback: Callable[[int, dict[str, float]], None] | None) -> ReconResult:
    config = config or ReconConfig()
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    device = torch.device(pipe.device)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    size = int(pipe.image_size)

    # --- input view --------------------------------------------------------------------------------
    preprocess = getattr(pipe, "preprocess", None) if config.preprocess else None
    reference = prepare_reference(image, size, preprocess, device)
    stable = config.stable_pose or getattr(pipe, "pose_encoding", "zero123") == "stable-zero123"
    with torch.no_grad():
        cond = pipe.encode_condition((reference.rgb[None] * 2.0 - 1.0).to(pipe.dtype))
    elevation_est = None
    elevation = float(config.elevation_deg)
    if config.estimate_elevation:
        t0 = time.perf_counter()
        elevation_est = estimate_elevation(pipe, reference, list(config.elevation_candidates), config.radius,
                                           config.fov_deg, default_deg=config.elevation_deg,
                                           guidance_scale=config.guidance_scale, seed=config.seed)
        elevation = elevation_est.elevation_deg
        timings["elevation"] = time.perf_counter() - t0
    source = ("estimated" if elevation_est else
              "the default: give the photo's elevation if it is not at camera level" if elevation == 0.0 else "given")
    log.info("input view: elevation %.1f deg (%s), radius %.2f, fov %.1f deg, mask from %s", elevation, source, config.radius, config.fov_deg, reference.mask_source)
    ref_cam = camera_at(elevation, 0.0, config.radius)
    timings["prepare"] = time.perf_counter() - t_start - timings.get("elevation", 0.0)

    # --- optimisation ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    num_train = len(pipe.scheduler.alphas_cumprod)
    field_ = VoxelField(config.grid_resolutions[0], device=device)
    optimizer = torch.optim.Adam(field_.parameters(), lr=config.lr, betas=(0.9, 0.99))
    preview_path = Path(preview_dir) if preview_dir else None
    if preview_path:
        preview_path.mkdir(parents=True, exist_ok=True)
    every = preview_every or max(config.steps // 10, 1)
    history: list[dict[str, float]] = []
    bar = tqdm(range(config.steps), desc="recon", disable=not progress, dynamic_ncols=True)
    for step in bar:
        stage = config.stage(step)
        if field_.resolution != config.grid_resolutions[stage]:
            field_.upsample(config.grid_resolutions[stage])
            optimizer = torch.optim.Adam(field_.parameters(), lr=config.lr, betas=(0.9, 0.99))
        res = config.render_resolutions[stage]
        if step % config.occupancy_every == 0:
            field_.update_occupancy(dilate=2)
        terms: dict[str, torch.Tensor] = {}

        if config.w_rgb > 0 or config.w_mask > 0:
            out = field_.render(ref_cam, config.fov_deg, res, jitter=True, generator=gen)
            terms["rgb"], terms["mask"] = reference_losses(out.rgb, out.alpha, reference.rgb, reference.mask)
        if config.w_near > 0:
            cam = jittered_camera(elevation, config.radius, config.near_view_jitter, rng)
            terms["near"] = near_view_loss(field_.render(cam, config.fov_deg, res, jitter=True,
                                                         generator=gen).rgb, reference.rgb)
        timestep = None
        if config.w_sds > 0 or config.w_sparsity > 0 or config.w_opacity > 0:
            cams, poses = _sample_novel(rng, config, elevation, config.batch_size, stable)
            out = field_.render(cams, config.fov_deg, res, jitter=True, generator=gen)
            if config.w_sds > 0:
                timestep = sample_timestep(step, config, num_train, gen)
                terms["sds"], _ = sds_loss(pipe, out.rgb.permute(0, 3, 1, 2), cond,
                                           torch.from_numpy(poses).to(device), timestep,
                                           config.guidance_scale, gen)
            terms["sparsity"] = sparsity_loss(out.alpha)
            terms["opacity"] = opacity_entropy_loss(out.alpha)
        if config.w_tv > 0:
            terms["tv"] = field_.total_variation()

        total = sum(getattr(config, f"w_{name}") * value for name, value in terms.items())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

        if step % 10 == 0 or step == config.steps - 1:
            record = {name: float(value.detach()) for name, value in terms.items()}
            record.update(step=step, total=float(total.detach()), grid=field_.resolution, render=res)
            if timestep is not None:
                record["t"] = timestep
            if not all(math.isfinite(v) for v in record.values()):
                raise FloatingPointError(f"reconstruction diverged at step {step}: {record}")
            history.append(record)
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in terms or k == "total"},
                            refresh=False)
            if callback:
                callback(step, record)
        if preview_path and (step % every == 0 or step == config.steps - 1):
            _write_preview(field_, preview_path, step, config, elevation, reference, max(res, 64))
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings["optimise"] = time.perf_counter() - t0

    # --- mesh ---------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    field_.update_occupancy()
    mesh, iso = extract_mesh(field_, config.iso_level, reference=(ref_cam, config.fov_deg, reference.mask),
                             smooth=config.mesh_smooth, keep_largest=config.keep_largest_component)
    timings["mesh"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    log.info("mesh: %d vertices, %d faces, %s", len(mesh.vertices), len(mesh.faces), iso.describe())
    settings = {
        "config": config.to_dict(),
        "elevation_deg": elevation,
        "elevation_estimate": elevation_est.as_dict() if elevation_est else None,
        "iso": {"level": iso.level, "method": iso.method, "score": iso.score},
        "mask_source": reference.mask_source,
        "pose_encoding": "stable-zero123" if stable else "zero123",
        "image_size": size,
        "device": str(device),
        "dtype": str(pipe.dtype),
        "reference_camera": ref_cam.tolist(),
        "mesh": {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)),
                 "watertight": bool(mesh.is_watertight)},
    }
    return ReconResult(field=field_, mesh=mesh, settings=settings, timings=timings, iso=iso,
                       elevation_deg=elevation, elevation=elevation_est, history=history, reference=reference)
