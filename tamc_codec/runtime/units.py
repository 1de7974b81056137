"""A task network's output in the raw units of docs/CONTRACT.md (what `tamc decode` writes)."""
from __future__ import annotations

import numpy as np

from ..tasks.registry import TASK_SPECS


def denormalise(task: str, pred: np.ndarray, norm: dict | None = None) -> np.ndarray:
    """A network output (C, H, W) -> the raw output of CONTRACT.md (H, W[, C]).

    `norm` ({"offset", "scale"}) overrides the registry's constants: an exported model
    carries the ones it was trained with.
    """
    if task == "seg":
        return np.argmax(pred, axis=0).astype(np.uint8)
    if task == "rgb":
        return np.clip(np.rint(np.moveaxis(pred, 0, -1) * 255.0), 0, 255).astype(np.uint8)
    if task == "normal":
        n = np.moveaxis(pred, 0, -1).astype(np.float32)
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    spec = TASK_SPECS[task]
    offset, scale = (norm["offset"], norm["scale"]) if norm else (spec.offset, spec.scale)
    return np.maximum(pred[0] * scale + offset, 0.0).astype(np.float32)
