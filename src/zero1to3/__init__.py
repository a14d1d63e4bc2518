"""zero1to3: one photo of an object -> new views from any camera, and a 3D mesh (Zero-1-to-3).

Heavy modules (torch, diffusers) load lazily, so ``import zero1to3.camera`` stays light.
"""

from __future__ import annotations

from zero1to3._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "Zero123Pipeline": "zero1to3.pipeline",
    "NovelViewOutput": "zero1to3.pipeline",
    "RelativePose": "zero1to3.camera",
    "orbit": "zero1to3.camera",
    "preprocess_image": "zero1to3.preprocess",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = list(_LAZY) + ["__version__"]
