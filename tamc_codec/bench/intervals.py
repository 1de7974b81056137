"""How sure a mean over a few test pictures is: percentile bootstrap intervals.

A quality check such as "seg at least halves the trivial loss" is decided on a mean over 50–100
pictures whose losses differ a great deal from one picture to the next (a room full of shelves
against an almost empty one), so the verdict comes with the interval the mean could plausibly lie
in. Resampling is over pictures, the unit the test split draws at random; it is seeded, so a
recorded interval is reproduced exactly from the recorded per-picture losses.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

RESAMPLES = 4000
LEVEL = 0.95


def bootstrap_interval(values: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` at confidence `level`.

    One value gives a zero-width interval (nothing to resample); none is an error, since a mean of
    nothing has no interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("bootstrap_interval needs a non-empty 1-D sequence of values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), not {level}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


__all__ = ["bootstrap_interval", "RESAMPLES", "LEVEL"]
