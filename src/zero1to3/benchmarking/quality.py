"""Whether a faster setting changes the images: PSNR/SSIM of one path's uint8 outputs against another's."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from zero1to3.camera import RelativePose
from zero1to3.pipeline import Zero123Pipeline


def _psnr_ssim(a: np.ndarray, b: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-image PSNR (dB) and SSIM of uint8 [N,H,W,3] arrays, data range 1 (torchmetrics functional)."""
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255.0
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).double() / 255.0
    psnr = [float(peak_signal_noise_ratio(ta[i:i + 1], tb[i:i + 1], data_range=1.0)) for i in range(len(ta))]
    ssim = [float(structural_similarity_index_measure(ta[i:i + 1], tb[i:i + 1], data_range=1.0))
            for i in range(len(ta))]
    return psnr, ssim

@torch.no_grad()
def solver_agreement(pipe: Zero123Pipeline, images: Sequence[np.ndarray | object], poses: Sequence[RelativePose],
                     *, fast_steps: int = 20, ref_steps: int = 50, guidance_scale: float = 3.0,
                     seed: int = 0) -> dict:
    """PSNR/SSIM of ``fast_steps`` DPM-Solver++ outputs against ``ref_steps`` DDIM outputs, same initial noise.

    Why: fewer steps are only a speed-up if the images stay the same; the initial latent x_T is shared so
    any difference is the solver's. (With random weights this measures numerics only; give real weights.)
    """
    size = pipe.unet.config.sample_size
    psnr, ssim = [], []
    for k, image in enumerate(images):
        gen = torch.Generator().manual_seed(seed + k)
        x_t = torch.randn(len(poses), 4, size, size, generator=gen)
        common = dict(num_samples=1, guidance_scale=guidance_scale, seed=seed + k, latents=x_t,
                      preprocess=not isinstance(image, np.ndarray))
        ref = pipe(image, list(poses), num_inference_steps=ref_steps, scheduler="ddim", **common).array[:, 0]
        fast = pipe(image, list(poses), num_inference_steps=fast_steps, scheduler="dpmsolver++", **common).array[:, 0]
        p, s = _psnr_ssim(fast, ref)
        psnr += p
        ssim += s
    return {"fast": f"dpmsolver++ {fast_steps}", "reference": f"ddim {ref_steps}", "images": len(images),
            "views_per_image": len(poses), "psnr_mean": float(np.mean(psnr)), "ssim_mean": float(np.mean(ssim)),
            "psnr_min": float(np.min(psnr)), "ssim_min": float(np.min(ssim)), "psnr": psnr, "ssim": ssim}

def fidelity(fast: np.ndarray, ref: np.ndarray) -> dict:
    """How far the fast path's uint8 images are from the fp32 reference's (same seed, same views)."""
    fast, ref = fast.reshape(-1, *fast.shape[-3:]), ref.reshape(-1, *ref.shape[-3:])
    psnr, ssim = _psnr_ssim(fast, ref)
    diff = np.abs(fast.astype(np.int16) - ref.astype(np.int16))
    return {"images": len(fast), "psnr_mean": float(np.mean(psnr)), "ssim_mean": float(np.mean(ssim)),
            "max_abs_uint8": int(diff.max()), "mean_abs_uint8": float(diff.mean())}
