"""Surface materials for generated scenes: photographic and procedural textures.

Photographic sources are scikit-image's bundled sample images (in the wheel, so
they work offline), split by image so that the test split shows pictures the
training split never saw (docs/CONTRACT.md).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "brick", "camera", "coffee", "grass", "hubble_deep_field",
              "moon", "rocket", "page", "logo"),
    "val": ("chelsea", "cell", "retina", "text"),
    "test": ("gravel", "coins", "immunohistochemistry", "clock"),
}

TEXTURE_SIZE = 128


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """A bundled sample image as float32 RGB in [0, 1], resized to a square tile."""
    import skimage.data
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.float32)
    elif img.dtype != np.float32 and img.dtype != np.float64:
        img = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    side = min(img.shape[:2])
    img = img[:side, :side]
    return resize(img, (TEXTURE_SIZE * 2, TEXTURE_SIZE * 2), anti_aliasing=True).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int, octaves: int = 4) -> np.ndarray:
    """Tileable multi-octave value noise in [0, 1]."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 4 * 2**o
        grid = rng.random((cells, cells)).astype(np.float32)
        coords = np.arange(size, dtype=np.float32) * cells / size
        i0 = np.floor(coords).astype(np.int64)
        f = coords - i0
        f = f * f * (3 - 2 * f)
        i1 = (i0 + 1) % cells
        rows = grid[i0][:, i0] * (1 - f)[None, :] + grid[i0][:, i1] * f[None, :]
        rows1 = grid[i1][:, i0] * (1 - f)[None, :] + grid[i1][:, i1] * f[None, :]
        out += amp * (rows * (1 - f)[:, None] + rows1 * f[:, None])
        total += amp
        amp *= 0.5
    return out / total


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour drawn independently of anything in the scene (HSV, moderate saturation)."""
    h, s, v = rng.random(), rng.uniform(0.1, 0.8), rng.uniform(0.35, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(np.float32)


def make_material(rng: np.random.Generator, photos: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """A texture tile (float32 HxWx3 in [0, 1]) and its scale in tiles per metre."""
    kind = rng.choice(["photo", "noise", "stripes", "checker", "plain"], p=[0.4, 0.2, 0.15, 0.1, 0.15])
    c1, c2 = random_colour(rng), random_colour(rng)
    n = TEXTURE_SIZE
    if kind == "photo" and photos:
        src = photo(str(rng.choice(list(photos))))
        y, x = rng.integers(0, src.shape[0] - n + 1), rng.integers(0, src.shape[1] - n + 1)
        tile = src[y:y + n, x:x + n]
        if rng.random() < 0.7:
            # tint by a random colour so the picture's own colours do not identify it
            lum = tile.mean(axis=2, keepdims=True)
            tile = np.clip(lum * c1 * 1.6 + 0.1 * tile, 0, 1)
        scale = rng.uniform(0.4, 1.5)
    elif kind == "noise":
        v = _value_noise(rng, n)[..., None]
        tile = c1 * v + c2 * (1 - v)
        scale = rng.uniform(0.3, 1.2)
    elif kind == "stripes":
        width = int(rng.integers(4, 32))
        band = ((np.arange(n) // width) % 2).astype(np.float32)[None, :, None]
        tile = np.broadcast_to(c1 * band + c2 * (1 - band), (n, n, 3))
        scale = rng.uniform(0.3, 2.0)
    elif kind == "checker":
        width = int(rng.choice([8, 16, 32]))
        cb = (((np.arange(n)[:, None] // width) + (np.arange(n)[None, :] // width)) % 2).astype(np.float32)[..., None]
        tile = c1 * cb + c2 * (1 - cb)
        scale = rng.uniform(0.3, 1.5)
    else:
        v = 0.9 + 0.1 * _value_noise(rng, n, octaves=3)[..., None]
        tile = c1 * v
        scale = 1.0
    return np.ascontiguousarray(tile, dtype=np.float32), float(scale)
