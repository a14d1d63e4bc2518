"""Plain-JSON form of result objects: the one place that decides how NaN, paths, numpy and torch values are written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(obj: Any) -> Any:
    """Nested dicts/lists with standard JSON values: NaN/inf -> None (JSON has no NaN), paths, devices and
    dtypes -> str, numpy scalars/arrays -> Python numbers/lists."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, Path) or type(obj).__module__ == "torch":  # torch.device, torch.dtype
        return str(obj)
    return obj
