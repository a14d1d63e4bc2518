"""Image -> radiance field by score distillation through Zero-1-to-3 -> mesh; 3D metrics and baselines.

Main entry point (the function lives in the submodule of the same name, so import it from there)::

    from zero1to3.recon.reconstruct import ReconConfig, reconstruct
    result = reconstruct(pipe, "object.png", ReconConfig(steps=600))
    result.save("out/")                       # mesh.glb, settings.json, field.safetensors, turntable.gif

The other public names below load lazily from here (``import zero1to3.recon`` stays light).
See docs/recon.md for the recipe and its defaults.
"""

from __future__ import annotations

from zero1to3._lazy import lazy_getattr

_LAZY = {
    "ReconConfig": "zero1to3.recon.config",
    "ReconResult": "zero1to3.recon.reconstruct",
    "render_turntable": "zero1to3.recon.reconstruct",
    "VoxelField": "zero1to3.recon.field",
    "RenderOutput": "zero1to3.recon.field",
    "extract_mesh": "zero1to3.recon.mesh",
    "export_mesh": "zero1to3.recon.mesh",
    "EmptyMeshError": "zero1to3.recon.mesh",
    "evaluate_mesh": "zero1to3.recon.metrics",
    "MeshMetrics": "zero1to3.recon.metrics",
    "baseline_mesh": "zero1to3.recon.baseline",
    "visual_hull": "zero1to3.recon.baseline",
    "estimate_elevation": "zero1to3.recon.elevation",
    "ElevationEstimate": "zero1to3.recon.elevation",
}

__getattr__ = lazy_getattr(__name__, _LAZY)
__all__ = list(_LAZY)
