"""Pieces every training stage shares: seeding, checkpoints, distributed set-up, records."""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..atomic import atomic_path, atomic_write_bytes


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads() -> None:
    """Use the cores this process may run on (all of them unless several ranks share them)."""
    n = usable_cores()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, n // world))


@dataclass
class Dist:
    """Rank information; a single process is rank 0 of 1."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def warmup_cosine_lr(lr: float, step: int, steps: int, warmup: int) -> float:
    """Learning rate at `step` (0-based): linear warm-up over `warmup` steps, then a cosine
    decay to 5 % of `lr` at `steps`. A function of the step alone, so a resumed run needs no
    scheduler state."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights as CPU tensors: what a model file holds, wherever it was trained."""
    return {k: v.cpu() for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a checkpoint interrupted mid-write must not replace a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
