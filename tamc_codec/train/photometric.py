"""Random photometric changes of training pictures: exposure, contrast, colour balance, gamma.

Geometry is untouched, so seg, depth and normal labels stay right. Edge, keypoint and rgb labels
are made of the pixels: a changed picture needs them made again from it (`pixel_labels`, the data
pipeline's own filters and storage rounding), or it must not be shown to those tasks. Stage 3
(`--augment`) codes changed 8-bit pictures for the scene tasks' decoders; stage 2 (`--augment`)
changes its training tensors the same way, for more groups with `--experimental augment-pixels=1`.
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


#: tasks whose labels are computed from the picture's pixels (data.synth, tasks.labels)
PIXEL_TASKS = ("edge", "keypoint", "rgb")


def pixel_labels(images: torch.Tensor, tasks: list[str]) -> dict[str, torch.Tensor]:
    """Training targets of the pixel-made `tasks` for a batch (N, 3, H, W) of 8-bit values in [0, 1],
    computed as the data pipeline computes a scene's: the labelling filters on the 8-bit picture, the
    PNG storage's rounding, the loader's normalisation. On a whole scene this is exactly its stored
    label; on a crop the filters read mirrored pixels instead of the scene's within a few pixels of
    the border (up to the keypoint filter's reach where the crop's content is large blobs)."""
    from ..data.arrays import normalise
    from ..tasks import labels

    store = {"edge": (labels.edge_label, labels.edge_to_png), "keypoint": (labels.keypoint_label, labels.keypoint_to_png)}
    pictures = np.rint(images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    out = {}
    for t in tasks:
        if t not in PIXEL_TASKS:
            raise ValueError(f"{t} is not labelled from the pixels")
        if t == "rgb":
            stored = list(pictures)
        else:
            label, to_png = store[t]
            stored = [to_png(label(pic)) for pic in pictures]
        out[t] = torch.from_numpy(np.stack([normalise(t, a) for a in stored])).to(images.device)
    return out


__all__ = ["PIXEL_TASKS", "photometric_params", "photometric_change", "photometric_batch", "pixel_labels"]
