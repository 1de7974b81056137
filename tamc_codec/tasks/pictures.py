"""Pictures of raw task outputs for people to look at (uint8 RGB or grey arrays)."""
from __future__ import annotations

import numpy as np

from .labels import EDGE_SCALE, KEYPOINT_SCALE, normal_to_png

# A fixed, well-separated palette; class 0 (uncertain) is black.
_SEG_PALETTE = np.array([
    (0, 0, 0), (128, 128, 128), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
], np.uint8)


def _ramp(t: np.ndarray) -> np.ndarray:
    """A perceptually ordered blue-to-yellow ramp (viridis-like) for t in [0, 1]."""
    stops = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float64)
    x = np.clip(t, 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(x.astype(np.int64), len(stops) - 2)
    f = (x - i)[..., None]
    return np.rint(stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def picture(task: str, raw: np.ndarray) -> np.ndarray:
    """An 8-bit picture of a task's raw output (CONTRACT.md units)."""
    if task == "seg":
        return _SEG_PALETTE[np.clip(raw, 0, len(_SEG_PALETTE) - 1)]
    if task == "depth":
        finite = np.isfinite(raw) & (raw > 0)
        if not finite.any():
            return np.zeros(raw.shape + (3,), np.uint8)
        lo, hi = np.percentile(raw[finite], [1, 99])
        # near = bright, like most depth visualisations
        out = _ramp(1.0 - (raw - lo) / max(hi - lo, 1e-6))
        out[~finite] = 0
        return out
    if task == "normal":
        return normal_to_png(np.nan_to_num(raw))
    if task == "edge":
        return np.clip(raw * (EDGE_SCALE / 256.0) * 4.0, 0, 255).astype(np.uint8)
    if task == "keypoint":
        return np.clip(np.sqrt(np.maximum(raw, 0) * KEYPOINT_SCALE) * 4.0, 0, 255).astype(np.uint8)
    if task == "rgb":
        return np.asarray(raw, np.uint8)
    raise ValueError(f"unknown task {task!r}")
