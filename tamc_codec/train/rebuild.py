"""Torch networks rebuilt from an exported model's ONNX graphs.

Training checkpoints are working files: a shipped model outlives the run that made it. Rebuilding
its encoders and decoders from the graphs (whose initializers keep the torch parameter names) lets
any later stage start from the shipped model itself: stage 3 refits its decoders, and stage 1
(`--init MODEL`) or stage 2 (`--anchor MODEL`) continue its networks. Every rebuilt network is
checked against its graph under onnxruntime, so a graph this cannot read fails here rather than
training garbage. The weights are the stored ones (float16 in the shipped model), so a rebuilt
network computes what the codec computes, not what the original run held in float32.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..contract import group_tasks
from ..errors import TamcModelError
from ..nets.multitask import GroupEncoder, MultiGroupModel, NetConfig, TaskDecoder, _key
from ..runtime.model import RuntimeModel

#: largest difference allowed between a rebuilt network and its ONNX graph (latent or normalised units)
REBUILD_TOLERANCE = 1e-3


def _read_graph(path: Path) -> tuple[dict[str, np.ndarray], list[np.ndarray], str]:
    """Named weights; the anonymous ones (normalisation affines the exporter folded into Mul/Add
    constants) in the order the graph uses them; and the graph's normalisation (NetConfig.norm)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    arrays = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in m.graph.initializer}
    named = {k.removesuffix("__f16"): v for k, v in arrays.items() if not k.startswith("onnx::")}
    # a weight stored as float16 reaches its node through a Cast named after the original
    cast_of = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "Cast"}
    anonymous, seen = [], set()
    for n in m.graph.node:
        if n.op_type not in ("Mul", "Add"):
            continue
        for name in n.input:
            src = cast_of.get(name, name)
            if src in arrays and src.startswith("onnx::") and src not in seen:
                seen.add(src)
                anonymous.append(arrays[src])
    ops = {n.op_type for n in m.graph.node}
    norm = "group" if "InstanceNormalization" in ops else "channel" if "LayerNormalization" in ops else "none"
    return named, anonymous, norm


def _load(module: torch.nn.Module, named: dict[str, np.ndarray], anonymous: list[np.ndarray]) -> None:
    state = module.state_dict()
    missing = [k for k in state if k not in named]
    if len(missing) != len(anonymous):
        raise KeyError(f"{len(missing)} unnamed weights, {len(anonymous)} folded constants")
    # folded affines appear in the order the modules run, which is the state dict's order
    loaded = {k: torch.from_numpy(named[k]).reshape(state[k].shape) for k in state if k in named}
    loaded.update({k: torch.from_numpy(v.copy()).reshape(state[k].shape) for k, v in zip(missing, anonymous)})
    module.load_state_dict(loaded)


def _check(rt: RuntimeModel, what: str, mine: np.ndarray, theirs: np.ndarray) -> None:
    err = float(np.abs(mine - theirs).max()) if mine.shape == theirs.shape else float("inf")
    if not err <= REBUILD_TOLERANCE:
        raise TamcModelError(f"{rt.folder}: the rebuilt {what} differs from its graph by {err:.3g}")


def rebuild_decoder(rt: RuntimeModel, task: str) -> TaskDecoder:
    """The serving decoder of `task` as a torch module with the exported weights; the network's
    shape is read from the weights."""
    spec = rt.manifest["decoders"].get(task)
    if spec is None:
        raise TamcModelError(f"{rt.folder}: the model does not serve {task}")
    path = rt.verified_file(spec["file"])
    named, anonymous, norm = _read_graph(path)
    c = int(rt.manifest["latent_channels"])
    try:
        first = named["net.0.weight"]
        blocks = sorted((int(m.group(1)), k) for k in named if (m := re.fullmatch(r"net\.(\d+)\.c1\.weight", k)))
        ups = sorted((int(m.group(1)), k) for k in named if (m := re.fullmatch(r"net\.(\d+)\.conv\.weight", k)))
        cfg = NetConfig(latent_channels=c, norm=norm, coords=first.shape[1] == c + 2,
                        global_context="global_context.weight" in named,
                        context_channels=named["context.weight"].shape[1] if "context.weight" in named else 0,
                        decoder_channels=(first.shape[0], *(named[k].shape[0] for _, k in blocks[:2])),
                        # full-resolution decoders end in an Up whose input is that width
                        full_res_channels=named[ups[-1][1]].shape[1] if len(ups) > 2 else NetConfig.full_res_channels)
        dec = TaskDecoder(task, cfg)
        _load(dec, named, anonymous)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise TamcModelError(f"{rt.folder}: cannot rebuild the {task} decoder from {spec['file']} ({exc})") from None
    dec.eval()
    rng = np.random.default_rng(0)
    probe = rng.standard_normal((1, c, 8, 6)).astype(np.float32)
    context = rng.standard_normal((1, dec.cfg.context_channels, 8, 6)).astype(np.float32)
    with torch.no_grad():
        mine = dec(torch.from_numpy(probe), context=torch.from_numpy(context) if context.shape[1] else None).numpy()
    _check(rt, f"{task} decoder", mine, rt.run(None, task, 0, y=probe, context=context)[0])
    return dec


def rebuild_encoder(rt: RuntimeModel, group: str, cfg: NetConfig) -> GroupEncoder:
    """`group`'s analysis transform with the exported weights, its shape read from them; `cfg`
    supplies the rest of the network's settings (latent channels, norms)."""
    spec = rt.manifest["graphs"][group]["analysis"]
    path = rt.verified_file(spec["file"])
    named, anonymous, norm = _read_graph(path)
    try:
        convs = sorted((int(m.group(1)), k) for k in named if (m := re.fullmatch(r"net\.(\d+)\.weight", k))
                       and named[k].ndim == 4)
        widths = tuple(int(named[k].shape[0]) for _, k in convs)
        if len(widths) != 4 or widths[-1] != cfg.latent_channels:
            raise ValueError(f"convolution widths {widths}")
        # None where it is the decoders' norm, as training writes it: stage 1's --init compares settings
        enc_cfg = NetConfig(**{**cfg.to_dict(), "encoder_channels": widths[:3],
                               "coords": named[convs[0][1]].shape[1] == 5,
                               "encoder_norm": None if norm == cfg.norm else norm})
        enc = GroupEncoder(enc_cfg)
        _load(enc, named, anonymous)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise TamcModelError(f"{rt.folder}: cannot rebuild {group}'s encoder from {spec['file']} ({exc})") from None
    enc.eval()
    probe = np.random.default_rng(0).random((1, 3, 64, 48)).astype(np.float32)
    with torch.no_grad():
        mine = enc(torch.from_numpy(probe)).numpy()
    _check(rt, f"{group} encoder", mine, rt.run(group, "analysis", 0, image=probe)[0])
    return enc


def rebuild_network(folder: str | Path, seed: int = 0) -> MultiGroupModel:
    """The exported model's networks as the multi-group network stages 1 and 2 train.

    The coded groups' encoders and the serving decoders carry the exported weights. A task's decoder
    in a group that does not serve it was never exported: it starts from random weights (seeded),
    as in a fresh stage 1. One network setting holds for every group, as in training. Seeds torch's
    generator with `seed` for them, so what a run draws next (stage 2: its entropy models' start)
    follows from the seed it passes here."""
    rt = RuntimeModel(Path(folder))
    decoders = {t: rebuild_decoder(rt, t) for t in rt.manifest["decoders"]}
    # only full-resolution decoders show full_res_channels: the others' is a default
    full = {d.cfg.full_res_channels for d in decoders.values() if d.full_res} or {NetConfig.full_res_channels}
    shapes = {repr(replace(d.cfg, full_res_channels=0)) for d in decoders.values()}
    if len(shapes) != 1 or len(full) != 1 or any(d.cfg.context_channels for d in decoders.values()):
        raise TamcModelError(f"{rt.folder}: its decoders differ in shape or read other layers; "
                             "only a model whose decoders share one network setting can be retrained")
    cfg = replace(next(iter(decoders.values())).cfg, full_res_channels=full.pop())
    encoders = {g: rebuild_encoder(rt, g, cfg) for g in rt.groups}
    if len({repr(e.cfg) for e in encoders.values()}) != 1:
        raise TamcModelError(f"{rt.folder}: its groups' encoders differ in shape or normalisation")
    cfg = next(iter(encoders.values())).cfg
    torch.manual_seed(seed)
    model = MultiGroupModel(list(rt.groups), cfg, dict(rt.serving))
    for g in rt.groups:
        model.encoders[_key(g)].load_state_dict(encoders[g].state_dict())
        for t in group_tasks(g):
            if rt.serving.get(t) == g:
                model.decoders[_key(g)][t].load_state_dict(decoders[t].state_dict())
    return model.eval()


def group_network(folder: str | Path, group: str, source: str) -> MultiGroupModel:
    """A one-group network started from an exported model: `group`'s encoder is a copy of the
    model's coded group `source`'s, and each of its member tasks' decoders is the model's serving
    decoder of that task. `group` serves all its tasks.

    This is how a dedicated scene layer begins (docs/TRAINING.md, "A scene layer of its own"):
    a latent that already carries the scene, and decoders that already read one, so that stage 2
    has only to squeeze out what the group's tasks do not need, instead of learning a network
    from nothing."""
    from ..contract import group_id

    rt = RuntimeModel(Path(folder))
    try:
        group = group_id([m.strip() for m in group.split("+")])
    except ValueError as exc:
        raise TamcModelError(f"bad group {group!r}: {exc}") from None
    if source not in rt.groups:
        raise TamcModelError(f"{rt.folder}: no coded group {source!r} (coded: {', '.join(rt.groups)})")
    missing = [t for t in group_tasks(group) if t not in rt.manifest["decoders"]]
    if missing:
        raise TamcModelError(f"{rt.folder}: the model serves no {', '.join(missing)} to start {group}'s decoders")
    decoders = {t: rebuild_decoder(rt, t) for t in group_tasks(group)}
    if any(d.cfg.context_channels for d in decoders.values()):
        raise TamcModelError(f"{rt.folder}: a decoder of {group}'s tasks reads other layers; a group of its own "
                             "cannot give it them")
    full = {d.cfg.full_res_channels for d in decoders.values() if d.full_res} or {NetConfig.full_res_channels}
    cfg = replace(next(iter(decoders.values())).cfg, full_res_channels=full.pop())
    encoder = rebuild_encoder(rt, source, cfg)
    model = MultiGroupModel([group], encoder.cfg, {t: group for t in group_tasks(group)})
    model.encoders[_key(group)].load_state_dict(encoder.state_dict())
    for t, dec in decoders.items():
        model.decoders[_key(group)][t].load_state_dict(dec.state_dict())
    return model.eval()


__all__ = ["REBUILD_TOLERANCE", "rebuild_decoder", "rebuild_encoder", "rebuild_network", "group_network"]
