"""A torch Dataset over a cached data folder: random crops, flips, optional downsampling.

Samples are dicts in the target format of :mod:`tamc_codec.data.arrays`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..contract import TASKS
from .arrays import build_cache, load_cache, normalise
from .folder import SceneFolder


class MultiTaskDataset(torch.utils.data.Dataset):
    """Scenes of a generated folder as training samples.

    crop: side of a random (train) or centre (eval) crop, None for the whole image.
    downsample: integer factor applied after cropping (area for inputs and dense
    targets, nearest for seg), e.g. 4 for the 64x64 lookahead on 256x256 scenes.
    """

    def __init__(self, path: str | Path, tasks: Iterable[str] = TASKS, *, crop: int | None = None,
                 train: bool = True, downsample: int = 1, cache_dir: str | Path | None = None,
                 limit: int | None = None):
        self.tasks = tuple(tasks)
        self.path = str(path)
        folder = SceneFolder.open(path, self.tasks)
        self.arrays = load_cache(build_cache(folder, cache_dir), self.tasks)
        self.count = len(folder) if limit is None else min(limit, len(folder))
        self.crop = crop
        self.train = train
        self.downsample = downsample
        self.size = int(folder.meta["size"])
        self.first_seed = int(folder.meta.get("first_seed", 0))
        if crop is not None and crop > self.size:
            raise ValueError(f"crop {crop} is larger than the images ({self.size})")

    def __len__(self) -> int:
        return self.count

    @property
    def side(self) -> int:
        """Side in pixels of the samples this dataset yields (after cropping and downsampling)."""
        return (self.crop or self.size) // self.downsample

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not self.train:
            return self.sample(i)
        rng = np.random.default_rng()
        c = self.crop or self.size
        y, x = (int(v) for v in rng.integers(0, self.size - c + 1, 2))
        return self.sample(i, y, x, bool(rng.random() < 0.5))

    def sample(self, i: int, y: int | None = None, x: int | None = None, flip: bool = False) -> dict[str, torch.Tensor]:
        """Scene i cropped at (y, x) (centre crop when None), optionally mirrored."""
        c = self.crop or self.size
        if y is None or x is None:
            y = x = (self.size - c) // 2
        out: dict[str, torch.Tensor] = {}
        for t in sorted(set(self.tasks) | {"rgb"}, key=TASKS.index):
            a = np.asarray(self.arrays[t][i, y:y + c, x:x + c])
            if flip:
                a = a[:, ::-1]
            target = normalise(t, np.ascontiguousarray(a))
            if flip and t == "normal":
                target[0] = -target[0]  # mirrored image, mirrored x axis
            out[t] = torch.from_numpy(np.ascontiguousarray(target))
        out["image"] = out["rgb"]
        if "rgb" not in self.tasks:
            del out["rgb"]
        if self.downsample > 1:
            out = {k: _down(k, v, self.downsample) for k, v in out.items()}
        # where the sample sits in its (mirrored) scene, in the sample's own pixels:
        # top, left, scene height, scene width (nets.multitask.coord_grid)
        left = self.size - x - c if flip else x
        out["origin"] = torch.tensor([y, left, self.size, self.size], dtype=torch.float32) / self.downsample
        return out

    def random_batch(self, rng: np.random.Generator, batch: int) -> dict[str, torch.Tensor]:
        """A training batch drawn with `rng` alone, so that runs with one seed repeat exactly."""
        c = self.crop or self.size
        items = []
        for _ in range(batch):
            i = int(rng.integers(0, self.count))
            y, x = (int(v) for v in rng.integers(0, self.size - c + 1, 2))
            items.append(self.sample(i, y, x, bool(rng.random() < 0.5)))
        return collate(items)


class StepBatches(torch.utils.data.Dataset):
    """Training batch number `step` as one item, drawn with a generator seeded by
    (seed, stream, step) alone: the batches do not depend on how many loader processes
    draw them, nor on where a run was resumed. Steps alternate between `sources`
    (train.views.training_views: crops, whole scenes, crops of larger scenes). `stream` keeps sequences apart: stage 1
    passes its torchrun rank, stage 2 a stream of its own.

    `batch` is the batch of the first source; a source with larger samples gets fewer of them
    (`batch_sizes`), so that every step computes on about the same number of pixels and a step's
    cost and memory do not depend on which source it drew from."""

    def __init__(self, sources: list[MultiTaskDataset], batch: int, seed: int, stream: int = 0):
        self.sources, self.batch, self.seed, self.stream = sources, batch, seed, stream
        self.batch_sizes = [max(1, round(batch * (sources[0].side / s.side) ** 2)) for s in sources]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.stream, step])
        k = step % len(self.sources)
        return self.sources[k].random_batch(rng, self.batch_sizes[k])


def step_batches(plan: StepBatches, start: int, stop: int, workers: int = 0,
                 pin_memory: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Batches for steps start..stop-1 in order; `workers` > 0 prepares them ahead in that
    many processes (a GPU outruns one process slicing and normalising crops)."""
    if workers <= 0:
        return (plan[s] for s in range(start, stop))
    # its own generator: the loader seeds its processes from one, and drawing that from torch's
    # global generator would shift the training noise (stage 2's) against a run without workers
    loader = torch.utils.data.DataLoader(plan, batch_size=None, sampler=range(start, stop), num_workers=workers,
                                         pin_memory=pin_memory, prefetch_factor=4, generator=torch.Generator())
    return iter(loader)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _down(key: str, v: torch.Tensor, f: int) -> torch.Tensor:
    if key == "seg":
        return v[f // 2::f, f // 2::f].contiguous()
    if key in ("depth", "normal"):
        # average valid pixels only; a window with none stays NaN
        valid = torch.isfinite(v[:1]).float()
        s = F.avg_pool2d((torch.nan_to_num(v) * valid)[None], f)[0]
        n = F.avg_pool2d(valid[None], f)[0]
        out = s / n.clamp(min=1e-6)
        return torch.where(n > 0, out, torch.full_like(out, float("nan")))
    return F.avg_pool2d(v[None], f)[0]
