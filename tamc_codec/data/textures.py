"""Surface materials for generated scenes: photographic and procedural textures.

Photographic sources are scikit-image's bundled sample images (in the wheel, so
they work offline), split by image so that the test split shows pictures the
training split never saw (docs/CONTRACT.md).

Two material sets (CONTRACT.md, "Material sets"): ``standard`` makes every split's
scenes; ``wide`` adds procedural surfaces (cells, spots, veins, per-channel noise)
and recoloured, turned photo tiles, for training folders only. The test split's
photographs are surfaces no training texture resembles; the wide set teaches the
encoders that a surface's look says nothing about what object it covers.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..contract import MATERIAL_SETS

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


def make_material(rng: np.random.Generator, photos: tuple[str, ...],
                  material_set: str = "standard") -> tuple[np.ndarray, float]:
    """A texture tile (float32 HxWx3 in [0, 1]) and its scale in tiles per metre."""
    if material_set == "wide":
        return _wide_material(rng, photos)
    if material_set != "standard":
        raise ValueError(f"unknown material set {material_set!r} (known: {', '.join(MATERIAL_SETS)})")
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


def _pixel_grid(n: int) -> np.ndarray:
    """(row, column) of every pixel of an n×n tile, shape (n*n, 2)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def _tile_distance(pts: np.ndarray, centre: np.ndarray, n: int) -> np.ndarray:
    """Distance from each point to `centre` on the n×n tile's torus, so textures repeat without a seam."""
    d = np.abs(pts - centre)
    d = np.minimum(d, n - d)
    return np.sqrt((d ** 2).sum(axis=-1))


def _cells(rng: np.random.Generator, n: int) -> np.ndarray:
    """Voronoi cells with their own shades and darker seams (stones, tiles, gravel)."""
    count = int(rng.integers(12, 160))
    seeds = rng.random((count, 2)).astype(np.float32) * n
    pts = _pixel_grid(n)
    first = np.full(n * n, np.inf, np.float32)
    second = np.full(n * n, np.inf, np.float32)
    owner = np.zeros(n * n, np.int64)
    for k, c in enumerate(seeds):
        dist = _tile_distance(pts, c, n)
        closer = dist < first
        second = np.where(closer, first, np.minimum(second, dist))
        first = np.where(closer, dist, first)
        owner[closer] = k
    shade = rng.random(count).astype(np.float32)[owner]
    seam = np.clip((second - first) / rng.uniform(1.0, 4.0), 0.0, 1.0)
    return (shade * (0.35 + 0.65 * seam)).reshape(n, n)


def _spots(rng: np.random.Generator, n: int) -> np.ndarray:
    """Discs of random sizes over a plain ground (coins, pebbles, cells)."""
    out = np.zeros((n, n), np.float32)
    pts = _pixel_grid(n).reshape(n, n, 2)
    for _ in range(int(rng.integers(4, 40))):
        c = rng.random(2).astype(np.float32) * n
        r = rng.uniform(2.0, n / 5)
        inside = _tile_distance(pts, c, n) < r
        out[inside] = rng.uniform(0.3, 1.0)
    return out


def _veins(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bands bent by noise (wood grain, marble)."""
    freq = int(rng.integers(2, 12))
    warp = _value_noise(rng, n) * rng.uniform(2.0, 12.0)
    x = np.arange(n, dtype=np.float32)[None, :] * (2 * np.pi * freq / n)
    return (0.5 + 0.5 * np.sin(x + warp)).astype(np.float32)


def _wide_material(rng: np.random.Generator, photos: tuple[str, ...]) -> tuple[np.ndarray, float]:
    kind = rng.choice(["standard", "cells", "spots", "veins", "rgb-noise", "photo-turned"],
                      p=[0.4, 0.15, 0.12, 0.1, 0.08, 0.15])
    if kind == "standard" or (kind == "photo-turned" and not photos):
        return make_material(rng, photos)
    n = TEXTURE_SIZE
    c1, c2 = random_colour(rng), random_colour(rng)
    if kind == "photo-turned":
        src = photo(str(rng.choice(list(photos))))
        y, x = rng.integers(0, src.shape[0] - n + 1), rng.integers(0, src.shape[1] - n + 1)
        tile = np.rot90(src[y:y + n, x:x + n], k=int(rng.integers(0, 4)))
        tile = tile[..., rng.permutation(3)]
        tile = np.clip(tile ** rng.uniform(0.5, 2.0) * rng.uniform(0.6, 1.3), 0, 1)
        if rng.random() < 0.5:
            tile = np.clip(tile.mean(axis=2, keepdims=True) * c1 * 1.6, 0, 1)
        return np.ascontiguousarray(tile, dtype=np.float32), float(rng.uniform(0.3, 2.0))
    if kind == "rgb-noise":
        tile = np.stack([_value_noise(rng, n, octaves=int(rng.integers(2, 6))) for _ in range(3)], axis=2)
        tile = np.clip(c1 * 0.5 + (tile - 0.5) * rng.uniform(0.5, 1.5) + 0.25, 0, 1)
        return tile.astype(np.float32), float(rng.uniform(0.3, 1.5))
    v = {"cells": _cells, "spots": _spots, "veins": _veins}[str(kind)](rng, n)[..., None]
    tile = c1 * v + c2 * (1 - v)
    return np.ascontiguousarray(tile, dtype=np.float32), float(rng.uniform(0.3, 1.5))
