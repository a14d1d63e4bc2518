"""Means with 95% confidence intervals over objects.

Why per object: views of one object are correlated, so the object is the independent unit; each object's
score is the mean over its target views and samples, and the interval is over those per-object scores.

Two methods (see docs/evaluation.md):

* ``t`` (default): Student-t interval, mean +- t_{0.975, n-1} * sd / sqrt(n). Deterministic; assumes the
  mean is roughly normal, which holds for the tens-to-hundreds of objects of a benchmark.
* ``bootstrap``: percentile bootstrap with 10,000 resamples of objects and a fixed seed; no normality
  assumption, better for skewed scores on small sets.

With one object there is no interval (both bounds None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import t as student_t

CI_METHODS = ("t", "bootstrap")


@dataclass(frozen=True)
class Summary:
    """Mean of per-object scores with a 95% interval (None when it cannot be computed)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def summarize(values: Sequence[float], method: str = "t", level: float = 0.95, resamples: int = 10_000,
              seed: int = 0) -> Summary:
    """Mean and ``level`` confidence interval of ``values`` (non-finite values are dropped)."""
    if method not in CI_METHODS:
        raise ValueError(f"CI method must be one of {CI_METHODS}, got {method!r}")
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Summary(float("nan"), None, None, 0)
    mean = float(x.mean())
    if n < 2:
        return Summary(mean, None, None, n)
    if method == "t":
        half = float(student_t.ppf(0.5 + level / 2.0, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
        return Summary(mean, mean - half, mean + half, n)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Summary(mean, float(low), float(high), n)
