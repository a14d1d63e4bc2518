"""Estimate the input view's elevation with the model (SPEC §7: "a good tool estimates it and says so").

Idea: the views we ask the model for (relative camera changes) do not depend on the elevation we
assume, but the absolute cameras we attach to them do. The model places them relative to the input's
true elevation, so a visual hull carved from the input mask and the generated views' masks is consistent
(reprojects onto every mask) only when the assumed elevation is right; a wrong one carves away parts
some view saw. The candidate with the best mean silhouette IoU wins. One batched sampling call, then
cheap carving per candidate. Views from a higher elevation make the score much more sensitive.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from zero1to3.camera import RelativePose, camera_at
from zero1to3.protocols import ScoreModel

from .baseline import hull_silhouette_iou, visual_hull
from .views import Reference, estimate_mask

log = logging.getLogger(__name__)


@dataclass
class ElevationEstimate:
    """The chosen elevation, each candidate's score (mean silhouette IoU), and a one-line reason."""

    elevation_deg: float
    method: str
    reason: str
    scores: dict[float, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scores"] = {str(k): v for k, v in self.scores.items()}
        return out


def score_elevations(ref_mask: np.ndarray, view_masks: list[np.ndarray], views: list[tuple[float, float]],
                     candidates: list[float], radius: float, fov_deg: float, resolution: int = 64
                     ) -> dict[float, float]:
    """Mean silhouette IoU of the hull carved under each candidate elevation (higher = consistent).

    ``views``: (elevation change, azimuth) in degrees of each generated view relative to the input.
    """
    masks = [ref_mask] + list(view_masks)
    scores = {}
    for elev in candidates:
        cams = [camera_at(elev, 0.0, radius)] + [camera_at(elev + d_elev, az, radius) for d_elev, az in views]
        hull = visual_hull(masks, cams, fov_deg, resolution)
        scores[float(elev)] = float(np.mean(hull_silhouette_iou(hull, masks, cams, fov_deg))) \
            if hull.any() else 0.0
    return scores


def estimate_elevation(pipe: ScoreModel, reference: Reference, candidates: list[float], radius: float,
                       fov_deg: float, default_deg: float = 0.0,
                       azimuths_deg: tuple[float, ...] = (45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0),
                       elevation_offsets_deg: tuple[float, ...] = (0.0, 30.0),
                       num_inference_steps: int = 30, guidance_scale: float = 3.0, seed: int = 0,
                       mask_resolution: int = 64, min_margin: float = 0.005) -> ElevationEstimate:
    """Pick the input elevation among ``candidates`` by silhouette consistency of generated views.

    Falls back to ``default_deg`` (and says so) when the scores are flat within ``min_margin`` (e.g. a
    rotationally symmetric object, whose silhouettes do not depend on elevation).
    """
    if not callable(pipe):
        raise ValueError("elevation estimation needs a pipeline that can sample views (pipe(image, poses))")
    views = [(d, az) for d in elevation_offsets_deg for az in azimuths_deg]
    # A higher camera is a negative polar change (polar = 90 deg - elevation).
    poses = [RelativePose.from_degrees(-d, az, 0.0) for d, az in views]
    out = pipe(reference.image, poses, num_samples=1, guidance_scale=guidance_scale,
               num_inference_steps=num_inference_steps, seed=seed)
    images = np.asarray(out.array)[:, 0].astype(np.float32) / 255.0       # [V, H, W, 3]
    def small(mask: np.ndarray) -> np.ndarray:
        img = Image.fromarray((mask * 255).astype(np.uint8)).resize((mask_resolution,) * 2, Image.BILINEAR)
        return np.asarray(img, np.float32) / 255.0

    ref_mask = small(reference.mask.detach().cpu().numpy())
    view_masks = [small(estimate_mask(v).astype(np.float32)) for v in images]
    scores = score_elevations(ref_mask, view_masks, views, list(candidates), radius, fov_deg, mask_resolution)
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    best, best_score = ranked[0]
    spread = best_score - ranked[-1][1]
    if spread < min_margin:
        reason = (f"silhouette consistency is flat across {min(candidates):g}..{max(candidates):g} deg "
                  f"(spread {spread:.4f}; a symmetric object?); keeping the default {default_deg:g} deg")
        result = ElevationEstimate(float(default_deg), "default (ambiguous estimate)", reason, scores)
    else:
        runner = (f"; next best {ranked[1][0]:g} deg ({ranked[1][1]:.3f})" if len(ranked) > 1 else "")
        reason = (f"{best:g} deg: the visual hull of the input and {len(views)} generated views "
                  f"(azimuth {', '.join(f'{a:g}' for a in azimuths_deg)}; elevation change "
                  f"{', '.join(f'{d:+g}' for d in elevation_offsets_deg)}) carved at this elevation "
                  f"reprojects best onto their masks (mean IoU {best_score:.3f}{runner})")
        result = ElevationEstimate(float(best), "silhouette consistency", reason, scores)
    log.info("elevation: %s", result.reason)
    return result
