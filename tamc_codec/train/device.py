"""Where training runs: the torch device of ``--device`` (under torchrun, each rank's GPU),
batches moved onto it, and the hardware line of a stage's record and the model card."""
from __future__ import annotations

import os

import torch

from ..errors import TamcInputError
from .common import Dist


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def hardware(device: torch.device) -> str:
    """What trained the run, for the record and the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} GPU"
    import platform

    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def training_device(name: str, dist_info: Dist) -> torch.device:
    """The torch device of --device; under torchrun each rank takes its LOCAL_RANK's GPU."""
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda":
        raise TamcInputError(f"unknown device {name!r} (known: cpu, cuda)")
    if not torch.cuda.is_available():
        raise TamcInputError("--device cuda: no CUDA device is available here")
    local = int(os.environ.get("LOCAL_RANK", dist_info.rank))
    torch.cuda.set_device(local)
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda", local)


__all__ = ["model_device", "to_device", "training_device", "hardware"]
