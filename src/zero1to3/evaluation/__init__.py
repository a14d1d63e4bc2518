"""Evaluation: novel-view protocols (PSNR/SSIM/LPIPS/FID vs. ground-truth renders), 3D metrics, reports.

Public API (loaded lazily so ``import zero1to3.evaluation`` stays light)::

    from zero1to3.evaluation import evaluate_nvs, evaluate_3d
    result = evaluate_nvs(pipe, "renders/", protocol="orbit16", out_dir="eval/")
    print(result.markdown())

See docs/evaluation.md.
"""

from __future__ import annotations

from zero1to3._lazy import lazy_getattr

_LAZY = {
    "evaluate_nvs": "zero1to3.evaluation.nvs",
    "INPUT_COPY": "zero1to3.evaluation.nvs",
    "evaluate_3d": "zero1to3.evaluation.three_d",
    "EvalResult": "zero1to3.evaluation.results",
    "ResumeMismatch": "zero1to3.evaluation.results",
    "ImageMetrics": "zero1to3.evaluation.metrics",
    "MetricUnavailable": "zero1to3.evaluation.metrics",
    "summarize": "zero1to3.evaluation.stats",
    "select_views": "zero1to3.evaluation.views",
    "list_objects": "zero1to3.evaluation.views",
    "ProtocolError": "zero1to3.evaluation.views",
    "PROTOCOLS": "zero1to3.evaluation.views",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = list(_LAZY)
