"""Training arrays: a compact ``.npy`` cache of a data folder and the normalised targets.

Decoding six PNGs per scene per epoch would dominate training on two cores, so a
folder is converted once into one uint8/uint16 array per task (as stored on disk,
memory-mapped when read). Targets are normalised per CONTRACT.md at batch time.

Target format (what losses in :mod:`tamc_codec.tasks.losses` expect), per sample:

- ``image``: float32 (3, H, W) in [0, 1], the network input
- ``seg``: int64 (H, W) class ids, 0 ignored
- ``depth``: float32 (1, H, W) normalised, NaN where there is no depth
- ``normal``: float32 (3, H, W) unit vectors, NaN where there is no depth
- ``edge``, ``keypoint``: float32 (1, H, W) normalised
- ``rgb``: float32 (3, H, W) in [0, 1]
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterable

import numpy as np

from ..atomic import atomic_path, atomic_write_bytes
from ..contract import TASKS
from ..errors import TamcInputError
from ..tasks import labels
from ..tasks.registry import TASK_SPECS
from .folder import SceneFolder
from ..runtime.units import denormalise  # noqa: F401  (the inverse of normalise, for training code)

CACHE_VERSION = 1


def build_cache(folder: SceneFolder, cache_dir: str | Path | None = None, progress=None) -> Path:
    """Write (or reuse) ``<cache_dir>/<task>.npy`` for every task of a scene folder."""
    cache = Path(cache_dir) if cache_dir else folder.root / "cache"
    stamp = {"version": CACHE_VERSION, "count": len(folder), "size": folder.meta.get("size"),
             "first_seed": folder.meta.get("first_seed"), "generator": folder.meta.get("generator")}
    stamp_path = cache / "cache.json"
    tasks = sorted(set(folder.tasks) | {"rgb"}, key=TASKS.index)
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp and all((cache / f"{t}.npy").exists() for t in tasks):
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    stamp_path.unlink(missing_ok=True)
    first = folder.stored(0)
    # atomic_path gives every writer its own temporary file, so the ranks of one torchrun job (or two
    # users) may build the same cache at once: each replace is atomic and the bytes are equal
    with contextlib.ExitStack() as stack:
        outs = {}
        for t in tasks:
            tmp = stack.enter_context(atomic_path(cache / f"{t}.npy"))
            outs[t] = np.lib.format.open_memmap(tmp, mode="w+", dtype=first[t].dtype,
                                                shape=(len(folder),) + first[t].shape)
        for i in range(len(folder)):
            s = first if i == 0 else folder.stored(i)
            for t in tasks:
                if s[t].shape != outs[t].shape[1:]:
                    raise TamcInputError(f"{folder.root}: scene {i} has a {t} label of shape {s[t].shape}, "
                                         f"expected {outs[t].shape[1:]}")
                outs[t][i] = s[t]
            if progress:
                progress(1)
        for arr in outs.values():
            arr.flush()
    atomic_write_bytes(stamp_path, json.dumps(stamp).encode())
    return cache


def load_cache(cache_dir: str | Path, tasks: Iterable[str]) -> dict[str, np.ndarray]:
    cache = Path(cache_dir)
    out = {}
    for t in sorted(set(tasks) | {"rgb"}, key=TASKS.index):
        path = cache / f"{t}.npy"
        if not path.exists():
            raise TamcInputError(f"{cache}: no cached {t} labels; rebuild the cache")
        out[t] = np.load(path, mmap_mode="r")
    return out


def normalise(task: str, stored: np.ndarray) -> np.ndarray:
    """A stored label (H, W[, C] as in the PNG) -> the training target (C, H, W)."""
    spec = TASK_SPECS[task]
    if task == "seg":
        return stored.astype(np.int64)
    if task == "rgb":
        return np.moveaxis(stored, -1, 0).astype(np.float32) / 255.0
    if task == "depth":
        z, valid = labels.depth_from_png(stored)
        out = (z - spec.offset) / spec.scale
        return np.where(valid, out, np.nan).astype(np.float32)[None]
    if task == "normal":
        n = labels.normal_from_png(stored)
        invalid = np.all(stored == 0, axis=-1)
        n[invalid] = np.nan
        return np.moveaxis(n, -1, 0).astype(np.float32)
    if task == "edge":
        return ((labels.edge_from_png(stored) - spec.offset) / spec.scale)[None].astype(np.float32)
    if task == "keypoint":
        return ((labels.keypoint_from_png(stored) - spec.offset) / spec.scale)[None].astype(np.float32)
    raise ValueError(task)
