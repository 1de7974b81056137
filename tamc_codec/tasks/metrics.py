"""Human-readable metrics per task, in the raw units of docs/CONTRACT.md (numpy).

Each metric is accumulated over a dataset with a small state object, so that
averages are over pixels (or classes) of the whole set, not of per-image means.
"""
from __future__ import annotations

import math

import numpy as np

from .registry import SEG_CLASSES, SEG_IGNORE


class SegIoU:
    """Mean intersection over union across classes present in the ground truth."""

    def __init__(self, n_classes: int = len(SEG_CLASSES)):
        self.n = n_classes
        self.conf = np.zeros((n_classes, n_classes), np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        keep = gt != SEG_IGNORE
        idx = gt[keep].astype(np.int64) * self.n + np.clip(pred[keep].astype(np.int64), 0, self.n - 1)
        self.conf += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def result(self) -> float:
        tp = np.diag(self.conf).astype(np.float64)
        gt_count = self.conf.sum(axis=1)
        union = gt_count + self.conf.sum(axis=0) - tp
        present = gt_count > 0
        present[SEG_IGNORE] = False
        if not present.any():
            return float("nan")
        return float(np.mean(tp[present] / np.maximum(union[present], 1)))


class DepthError:
    """abs-rel = mean |pred - gt| / gt and RMSE (metres), over valid pixels."""

    def __init__(self) -> None:
        self.abs_rel = 0.0
        self.sq = 0.0
        self.count = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> None:
        valid = valid & (gt > 0)
        p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
        self.abs_rel += float(np.sum(np.abs(p - g) / g))
        self.sq += float(np.sum((p - g) ** 2))
        self.count += int(valid.sum())

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"abs_rel": self.abs_rel / n, "rmse": math.sqrt(self.sq / n)}


class AngularError:
    """Mean angle in degrees between predicted and true normals, over valid pixels."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> None:
        p = pred[valid].astype(np.float64)
        g = gt[valid].astype(np.float64)
        p /= np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-9)
        g /= np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-9)
        cos = np.clip(np.sum(p * g, axis=-1), -1.0, 1.0)
        self.total += float(np.degrees(np.arccos(cos)).sum())
        self.count += int(valid.sum())

    def result(self) -> float:
        return self.total / max(self.count, 1)


class MeanAbs:
    """Mean absolute error over all pixels (edge, keypoint, in CONTRACT units)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.total += float(np.abs(pred.astype(np.float64) - gt.astype(np.float64)).sum())
        self.count += gt.size

    def result(self) -> float:
        return self.total / max(self.count, 1)


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR in dB of two uint8 (or 0..255 float) images."""
    mse = float(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
