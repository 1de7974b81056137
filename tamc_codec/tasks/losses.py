"""Training losses (Standley et al.'s choices; docs/CONTRACT.md). Requires torch.

Targets come from :mod:`tamc_codec.data` already normalised; invalid depth/normal
pixels are NaN there, and seg's ignored class is 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import SEG_IGNORE, spec


def shift_min_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Masked L1 minimised over the 9 one-pixel shifts of the prediction (per sample).

    Labels rendered from geometry and predictions from a strided network can be off
    by a pixel at discontinuities; the "rotate loss" forgives that misalignment.
    NaN in the target marks pixels without a label.
    """
    mask = torch.isfinite(target[:, :1])
    tgt = torch.nan_to_num(target)[:, :, 1:-1, 1:-1]
    m = mask[:, :, 1:-1, 1:-1].to(pred.dtype)
    h, w = pred.shape[-2:]
    denom = (m.sum(dim=(1, 2, 3)) * pred.shape[1]).clamp(min=1.0)
    per_shift = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            shifted = pred[:, :, 1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
            per_shift.append(((shifted - tgt).abs() * m).sum(dim=(1, 2, 3)) / denom)
    return torch.stack(per_shift, dim=0).min(dim=0).values.mean()


def task_loss(task: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss of ``task`` for a batch: pred (N,C,H,W), target from the loader."""
    if pred.shape[-2:] != target.shape[-2:]:
        pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
    if task == "seg":
        if bool((target != SEG_IGNORE).any()):
            return F.cross_entropy(pred, target.long(), ignore_index=SEG_IGNORE)
        return pred.sum() * 0.0
    if task in ("depth", "normal"):
        return shift_min_l1(pred, target)
    spec(task)  # unknown names fail loudly
    return (pred - target).abs().mean()
