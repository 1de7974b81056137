"""Moving pictures and latents between scales (CONTRACT.md, scene scale; decoder context).

Every operation is float32 elementwise work in a fixed order, so the encoder and every decoder
compute the same values on any machine.
"""
from __future__ import annotations

import numpy as np


def downsample(x: np.ndarray, f: int) -> np.ndarray:
    """Area downsampling by f of (N, C, H, W), H and W multiples of f: pictures on the encoder
    side, latents that a decoder reads at scene scale (never entropy-coding inputs)."""
    if f == 1:
        return x
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5), dtype=np.float32)


def on_grid(context: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A parent's context on its child's latent grid, or an ancestor's latent on a decoder's
    (CONTRACT.md, scene scale; decoder context). Elementwise
    float32 operations in a fixed order, so that encoder and decoder compute the same values."""
    h = context.shape[-2]
    if h == hw[0]:
        return context
    if h > hw[0]:
        r = h // hw[0]
        acc = context[..., 0::r, 0::r].copy()
        for i in range(r):
            for j in range(r):
                if i or j:
                    acc += context[..., i::r, j::r]
        return acc * np.float32(1.0 / (r * r))
    r = hw[0] // h
    return np.repeat(np.repeat(context, r, axis=-2), r, axis=-1)


def upsample(pred: np.ndarray, f: int) -> np.ndarray:
    """Bilinear upsampling by f of (C, H, W) with half-pixel centres (edge values held)."""
    if f == 1:
        return pred
    for axis in (1, 2):
        n = pred.shape[axis]
        src = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        shape = [1, 1, 1]
        shape[axis] = n * f
        w1 = (src - i0).astype(np.float32).reshape(shape)
        pred = np.take(pred, i0, axis=axis) * (1 - w1) + np.take(pred, i1, axis=axis) * w1
    return pred
