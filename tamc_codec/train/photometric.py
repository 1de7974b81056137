"""Random photometric changes of training pictures: exposure, contrast, colour balance, gamma.

Geometry is untouched, so seg, depth and normal labels stay right; edge, keypoint and rgb labels
are made of the pixels, so pictures for those tasks are never changed. Stage 3 (`--augment`)
codes changed 8-bit pictures; stage 2 (`--augment`) changes its training tensors the same way.
"""
from __future__ import annotations

import numpy as np
import torch


def photometric_params(rng: np.random.Generator) -> tuple[float, float, float, np.ndarray]:
    """Gamma, contrast, exposure and per-channel colour balance of one random photometric change."""
    return rng.uniform(0.8, 1.25), rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3), rng.uniform(0.85, 1.15, 3)


def photometric_change(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`img` (H, W, 3 uint8) under a random change of exposure, contrast, colour balance and gamma;
    geometry, and so seg, depth and normal labels, untouched."""
    gamma, contrast, exposure, balance = photometric_params(rng)
    x = img.astype(np.float32) / 255.0
    x = x ** gamma
    mean = x.mean()
    x = (x - mean) * contrast + mean
    x = x * exposure * balance
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def photometric_batch(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """`photometric_change` for a training batch (N, 3, H, W) in [0, 1], one change per picture."""
    out = []
    for x in images:
        gamma, contrast, exposure, balance = photometric_params(rng)
        x = x.clamp(min=0) ** gamma
        mean = x.mean()
        channel = torch.as_tensor(balance, dtype=x.dtype, device=x.device)[:, None, None]
        x = ((x - mean) * contrast + mean) * exposure * channel
        out.append(torch.round(x.clamp(0.0, 1.0) * 255) / 255)
    return torch.stack(out)


__all__ = ["photometric_params", "photometric_change", "photometric_batch"]
