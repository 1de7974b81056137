"""The anchor: the stage-1 network on uncompressed images, as stage 2, ``tamc bench`` and the
benchmarks load it (OUT/anchor.pt or an exported model folder), and the trivial losses its
losses are divided by."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import TamcInputError, TamcModelError
from ..nets.multitask import MultiGroupModel, NetConfig
from ..runtime.model import RuntimeModel


def load_anchor(path: str | Path, seed: int = 0) -> MultiGroupModel:
    """The stage-1 network saved as OUT/anchor.pt (used by benchmarks and stages 1 and 2), or an
    exported model folder's networks rebuilt from its graphs (train.rebuild, which draws the decoders
    the model never exported from `seed`)."""
    if not Path(path).exists():
        raise TamcInputError(f"{path}: no such anchor.pt or model folder")
    if Path(path).is_dir():
        from .rebuild import rebuild_network

        return rebuild_network(path, seed)
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    d = state["describe"]
    model = MultiGroupModel(d["groups"], NetConfig.from_dict(d["config"]), d["serving"])
    model.load_state_dict(state["model"])
    model.eval()
    return model


def anchor_trivial(path: str | Path) -> dict[str, float]:
    """The trivial losses `load_anchor(path)`'s losses are divided by: the ones its stage 1
    measured on validation, which an exported model keeps in its reference.json."""
    if Path(path).is_dir():
        trivial = RuntimeModel(Path(path)).trivial_loss
        if not trivial:
            raise TamcModelError(f"{path}: no reference.json with trivial losses for this model")
        return trivial
    return torch.load(Path(path), map_location="cpu", weights_only=False)["trivial"]


__all__ = ["load_anchor", "anchor_trivial"]
