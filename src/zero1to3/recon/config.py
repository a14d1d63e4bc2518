"""Settings of image-to-3D (torch-free, so the CLI can build its flags without importing torch)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from zero1to3.camera import REFERENCE_FOV_DEG
from zero1to3.inputs import check_int, check_range, check_seed
from zero1to3.settings import option


@dataclass
class ReconConfig:
    """Every knob of :func:`zero1to3.recon.reconstruct`, with its default and why.

    Loss weights follow the most used public SDS recipe for Zero-1-to-3 (SPEC §7) where it has the same
    term (score 0.1 with a sum-reduced SDS loss, reference RGB 500 and mask 50 as means, sparsity and
    opacity 0.1); near-view and density-TV weights are ours. A weight of 0 switches a term off.
    """

    # --- schedule -------------------------------------------------------------------------------
    steps: int = option(600, "optimisation steps (SPEC §7: 600)")
    batch_size: int = option(4, "novel views per score-distillation step")
    lr: float = option(0.05, "Adam learning rate of the raw grid values (dense grid: > 0.01)")
    seed: int = option(0, "seed of cameras, timesteps and noise")
    grid_resolutions: tuple[int, ...] = option((64, 96, 128), "coarse-to-fine grid sizes ...")
    render_resolutions: tuple[int, ...] = option((64, 96, 128), "... and render sizes ...")
    milestones: tuple[float, ...] = option((0.0, 0.3, 0.6), "... from these fractions of the steps")
    occupancy_every: int = option(16, "steps between occupancy-grid (empty-space) refreshes")
    # --- cameras (SPEC §4/§7) ---------------------------------------------------------------------
    elevation_deg: float = option(0.0, "elevation of the input view in degrees (unless estimated)",
                                  flag="--elevation", exclusive="elevation")
    estimate_elevation: bool = option(False, "estimate the input elevation with the model (reports its choice "
                                             "and why)", exclusive="elevation")
    elevation_candidates: tuple[float, ...] = option((-20.0, -10.0, 0.0, 10.0, 20.0, 30.0, 40.0),
                                                     "elevations (degrees) the estimate chooses from")
    radius: float = option(2.0, "camera distance (SJC recipe; training renders: 1.5-2.2)")
    fov_deg: float = option(REFERENCE_FOV_DEG, "field of view in degrees (the training renders')", flag="--fov")
    novel_elevation_range: tuple[float, float] = option((-10.0, 40.0), "absolute elevations of sampled views")
    near_view_jitter: float = option(0.05, "camera-position jitter of the near-view term (SJC: 0.05)")
    stable_pose: bool = option(False, "force the Stable Zero123 pose vector (else: the pipeline's)")
    preprocess: bool = option(True, "crop and centre the object with the pipeline's preprocessing (off: the "
                                    "image is already centred on white)")
    # --- score distillation (SPEC §7) -------------------------------------------------------------
    guidance_scale: float = option(3.0, "classifier-free guidance scale", flag="--guidance")
    t_range_start: tuple[float, float] = option((0.4, 0.85), "timestep window (fraction of 1000) at step 0 ...")
    t_range_end: tuple[float, float] = option((0.2, 0.5), "... annealed linearly to this window ...")
    t_anneal_fraction: float = option(1.0 / 3.0, "... by this fraction of the steps (200/600)")
    # --- loss weights (0 switches a term off) --------------------------------------------------------
    w_sds: float = option(0.1, "score distillation through the model (sum over latent elements / batch)",
                          flag="--sds-weight")
    w_rgb: float = option(500.0, "input-view RGB, mean squared error", flag="--rgb-weight")
    w_mask: float = option(50.0, "input-view opacity vs mask, mean squared error", flag="--mask-weight")
    w_near: float = option(50.0, "near-view consistency (jittered input camera), MSE", flag="--near-weight")
    w_tv: float = option(1.0, "total variation of raw density (smooth, hole-free)", flag="--tv-weight")
    w_sparsity: float = option(0.1, "mean squared opacity of novel views (no floaters)", flag="--sparsity-weight")
    w_opacity: float = option(0.1, "binary entropy of novel-view opacity (crisp surfaces)", flag="--opacity-weight")
    # --- mesh --------------------------------------------------------------------------------------
    mesh_smooth: float = option(0.5, "Gaussian smoothing of density before marching cubes (voxels)")
    iso_level: float | None = option(None, "marching-cubes level (None: automatic, reference-silhouette match)",
                                     flag="--iso")
    keep_largest_component: bool = option(True, "keep only the mesh's largest connected part")

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1, 1_000_000)
        check_int("batch_size", self.batch_size, 1, 256)
        check_seed("seed", self.seed)
        if not (len(self.grid_resolutions) == len(self.render_resolutions) == len(self.milestones)):
            raise ValueError("grid_resolutions, render_resolutions and milestones must have equal length")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180) degrees, got {self.fov_deg}")
        for f in fields(self):
            value = getattr(self, f.name)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{f.name} must be finite, got {v}")
        check_range("lr", self.lr, 0.0, 10.0, low_open=True)
        check_range("guidance_scale", self.guidance_scale, 0.0, 100.0)
        check_range("elevation_deg", self.elevation_deg, -89.0, 89.0)
        if self.radius <= 1.0 * math.sqrt(3):
            # The camera must be outside the box [-1, 1]^3 the field lives in.
            raise ValueError(f"radius {self.radius} puts the camera inside the object box (need > 1.74)")
        for name in ("w_sds", "w_rgb", "w_mask", "w_near", "w_tv", "w_sparsity", "w_opacity"):
            check_range(name, getattr(self, name), 0.0, 1e6)

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


#: Named starting points for ReconConfig (the CLI's --preset and the demo's 3D quality). "fast" is a CPU
#: preview that finishes in minutes (coarse grids, small renders, 2 views a step, 60 steps); "full" is
#: the recipe above (SPEC §7), meant for a GPU: hours on a CPU.
RECON_PRESETS: dict[str, dict[str, Any]] = {
    "fast": dict(steps=60, batch_size=2, grid_resolutions=(32, 48), render_resolutions=(32, 48),
                 milestones=(0.0, 0.5)),
    "full": {},
}

#: Turntable written by each preset: (frames, resolution in pixels).
PRESET_TURNTABLE: dict[str, tuple[int, int]] = {"fast": (36, 128), "full": (60, 256)}


def default_preset(device: str) -> str:
    """The preset a device gets when none is named: the recipe on a GPU, the preview on a CPU."""
    return "fast" if str(device).startswith("cpu") else "full"
