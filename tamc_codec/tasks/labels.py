"""Label definitions and their PNG storage (docs/CONTRACT.md, "Label definitions").

The image-derived labels (edge, keypoint) follow Taskonomy's recipes and need only
the RGB image, so any photo can be labelled exactly like the generated scenes.
"""
from __future__ import annotations

import numpy as np

#: PNG value = round(scale * label), clipped to uint16 (CONTRACT.md).
DEPTH_SCALE = 512.0
DEPTH_INVALID = 65535
EDGE_SCALE = 32768.0
KEYPOINT_SCALE = float(2**20)
EDGE_SIGMA = 3.0
KEYPOINT_SIGMAS = tuple(float(s) for s in np.linspace(1.0, 30.0, 10))
#: symmetric padding before filtering: the largest box filter reaches 3 sigma = 90 px
KEYPOINT_PAD = 96

LABEL_SCALES = {
    "depth": DEPTH_SCALE,
    "edge": EDGE_SCALE,
    "keypoint": KEYPOINT_SCALE,
    "normal": 127.5,
}


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of a uint8 RGB image, in [0, 1] as float64."""
    if rgb.ndim == 2:
        return rgb.astype(np.float64) / 255.0
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


def edge_label(rgb: np.ndarray) -> np.ndarray:
    """Taskonomy's edge texture: blur sigma 3, Sobel magnitude, no non-maximum suppression."""
    from scipy import ndimage

    g = ndimage.gaussian_filter(grey(rgb), EDGE_SIGMA, mode="reflect")
    return np.hypot(ndimage.sobel(g, axis=0), ndimage.sobel(g, axis=1)).astype(np.float32)


def keypoint_label(rgb: np.ndarray) -> np.ndarray:
    """Taskonomy's 2D keypoints: SURF determinant-of-Hessian before non-maximum suppression.

    The per-pixel maximum over 10 scales; negative responses (saddles) are clipped to 0
    since they are not blobs.
    """
    from skimage.feature import hessian_matrix_det

    g = grey(rgb)
    # The box filters read zeros past the border, which makes every image edge look
    # like a blob at large scales; mirror the image out of their reach instead.
    pad = KEYPOINT_PAD
    gp = np.pad(g, pad, mode="symmetric")
    best = np.full(gp.shape, -np.inf)
    for sigma in KEYPOINT_SIGMAS:
        np.maximum(best, hessian_matrix_det(gp, sigma=sigma), out=best)
    return np.maximum(best[pad:-pad, pad:-pad], 0.0).astype(np.float32)


def _to_u16(x: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float64) * scale), 0, 65535).astype(np.uint16)


# --- storage: raw label (CONTRACT units) <-> PNG array ------------------------------------

def depth_to_png(z: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    out = np.clip(np.rint(np.asarray(z, np.float64) * DEPTH_SCALE), 0, DEPTH_INVALID - 1).astype(np.uint16)
    if valid is not None:
        out[~valid] = DEPTH_INVALID
    return out


def depth_from_png(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth in metres and the validity mask."""
    valid = a != DEPTH_INVALID
    return (a.astype(np.float32) / DEPTH_SCALE), valid


def normal_to_png(n: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(127.5 * (np.asarray(n, np.float64) + 1.0)), 0, 255).astype(np.uint8)


def normal_from_png(a: np.ndarray) -> np.ndarray:
    """Unit vectors from the 8-bit encoding (re-normalised: 8 bits are not unit length)."""
    n = a.astype(np.float32) / 127.5 - 1.0
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    return n / np.maximum(norm, 1e-6)


def edge_to_png(e: np.ndarray) -> np.ndarray:
    return _to_u16(e, EDGE_SCALE)


def edge_from_png(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / EDGE_SCALE


def keypoint_to_png(k: np.ndarray) -> np.ndarray:
    return _to_u16(k, KEYPOINT_SCALE)


def keypoint_from_png(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / KEYPOINT_SCALE


def label_png(task: str, raw: np.ndarray) -> np.ndarray:
    """A task's raw output (CONTRACT.md units) as its label PNG array, the storage generated labels
    use: 8-bit for seg, normal, rgb; 16-bit for depth (512·z), edge, keypoint. Quantised."""
    if task in ("seg", "rgb"):
        return np.asarray(raw, np.uint8)
    if task == "depth":
        return depth_to_png(np.nan_to_num(raw), np.isfinite(raw))
    if task == "normal":
        return normal_to_png(np.nan_to_num(raw))
    if task == "edge":
        return edge_to_png(raw)
    if task == "keypoint":
        return keypoint_to_png(raw)
    raise ValueError(f"unknown task {task!r}")
