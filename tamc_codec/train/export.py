"""Export a trained codec model for the torch-free codec (docs/MODEL.md).

The folder holds ONNX graphs for every network the codec runs, the entropy coder
tables, and manifest.json naming each file with its SHA-256. Weights are rounded to
float16 *before* the tables are built and anything is measured, so the shipped
numbers are the shipped model's; graphs store float16 weights and cast them up on
load, halving the download.

The encoder and the decoder run the same parameter graphs (pass1, pass2) on the
same decoded values, so both compute the same entropy parameters (closed loop).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..contract import SCENE_TASKS, TASKS, group_tasks
from ..runtime.manifest import DEFAULT_PARENT_INPUT, MODEL_SCHEMA, model_id
from ..tasks.registry import TASK_SPECS
from . import DEFAULT_SCENE_SIZE
from .model_folder import write_model_folder
from .stage2 import CodecModel, load_codec_model

PAD_MULTIPLE = 64  # latent stride 16 x hyper-latent stride 4
OPSET = 17


class _Pass1(nn.Module):
    def __init__(self, em):
        super().__init__()
        self.em = em

    def forward(self, psi, *parent):
        return self.em.pass1(psi, parent[0] if parent else None)


class _Pass2(nn.Module):
    def __init__(self, em):
        super().__init__()
        self.em = em

    def forward(self, psi, *rest):
        if self.em.has_parent:
            return self.em.pass2(psi, rest[0], rest[1])
        return self.em.pass2(psi, None, rest[0])


def round_to_float16(model: nn.Module) -> None:
    """Round every float parameter and buffer to its stored precision (float16), in place."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dtype == torch.float32:
                t.copy_(t.half().float())


def _onnx_bytes(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str],
                kwargs: dict | None = None) -> bytes:
    dyn = {n: {2: f"{n}_h", 3: f"{n}_w"} for n in inputs + outputs}
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), args, buf, kwargs=kwargs, input_names=inputs, output_names=outputs, dynamic_axes=dyn,
                      opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return _float16_weights(buf.getvalue())


def _float16_weights(data: bytes) -> bytes:
    """Store large float32 initializers as float16 with a Cast back to float32."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(data)
    g = m.graph
    new_inits, casts = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 16:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__f16")
            new_inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            new_inits.append(init)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    return m.SerializeToString()


def blend_lowest_gains(tables: dict[str, np.ndarray], blend: float) -> None:
    """Move quality 1's gains the fraction `blend` of the way (in log space) to quality 2's (docs/MODEL.md).

    Every network is shared between qualities and only the gains select one, so a gain between two
    trained ones gives a rate and a loss between theirs; a log-space blend keeps the step ratio
    between channels.
    """
    for key in [k for k in tables if k.startswith(("gain", "inv_gain"))]:
        g = np.log(tables[key].astype(np.float64))
        g[0] = (1.0 - blend) * g[0] + blend * g[1]
        tables[key] = np.exp(g).astype(np.float32)


def resample_gains(tables: dict[str, np.ndarray], positions: list[float]) -> None:
    """Replace the per-quality gains by gains at `positions` on the trained quality scale (1-based):
    an integer position is that trained quality, a fraction blends its two neighbours in log space
    as `blend_lowest_gains` does. Every network is shared between qualities, so the exported
    qualities may sit where a model's rate-quality curve bends rather than where training put them."""
    for key in [k for k in tables if k.startswith(("gain", "inv_gain"))]:
        g = np.log(tables[key].astype(np.float64))
        rows = []
        for pos in positions:
            lo = min(int(np.floor(pos)), g.shape[0]) - 1
            frac = pos - (lo + 1)
            rows.append(g[lo] if frac == 0 else (1.0 - frac) * g[lo] + frac * g[lo + 1])
        tables[key] = np.exp(np.stack(rows)).astype(np.float32)


def scene_scale_groups(serving: dict[str, str]) -> list[str]:
    """The coded groups that serve scene tasks only (CONTRACT.md, scene scale), in name order."""
    served: dict[str, set[str]] = {}
    for t, g in serving.items():
        served.setdefault(g, set()).add(t)
    return sorted(g for g, ts in served.items() if ts <= set(SCENE_TASKS))


def export_model(codec_pt: str | Path, out_dir: str | Path, *, name: str, provenance: dict | None = None,
                 lowest_blend: float = 0.0, scene_size: int | None = DEFAULT_SCENE_SIZE,
                 positions: list[float] | None = None) -> dict:
    """Write models/<name>/ from a stage-2 checkpoint (codec.pt); returns the manifest.

    `lowest_blend` > 0 replaces quality 1's gains by a blend towards quality 2's (`blend_lowest_gains`).
    `scene_size`: the training scenes' side; groups serving scene tasks only analyse large pictures
    at that scale (CONTRACT.md, scene scale). None: every group at full size.
    """
    from ..entropy import FactorizedCoder, GaussianConditionalCoder
    from ..errors import TamcInputError

    if not 0.0 <= lowest_blend < 1.0:
        raise TamcInputError(f"lowest blend must be in [0, 1), got {lowest_blend:g}")
    model: CodecModel = load_codec_model(codec_pt)
    if lowest_blend and model.qualities < 2:
        raise TamcInputError("a lowest blend needs at least two qualities")
    if positions is not None:
        if lowest_blend:
            raise TamcInputError("give either a lowest blend or quality positions, not both")
        if len(positions) < 2 or any(b <= a for a, b in zip(positions, positions[1:])) \
                or positions[0] < 1 or positions[-1] > model.qualities:
            raise TamcInputError(f"quality positions must increase within 1..{model.qualities} (the trained qualities)")
    round_to_float16(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = model.base
    groups = list(model.order)
    gidx = {g: k for k, g in enumerate(groups)}
    c = base.cfg.latent_channels
    files: dict[str, bytes] = {}
    graphs: dict[str, dict] = {}
    tables: dict[str, np.ndarray] = {}
    tables.update(GaussianConditionalCoder.build().to_arrays(prefix="gauss/"))
    x = torch.rand(1, 3, 128, 128)
    for g in groups:
        k = gidx[g]
        em = model.em(g)
        eb = em.entropy_bottleneck
        eb.update(force=True)
        fc = FactorizedCoder.from_quantized_cdf(eb._quantized_cdf.numpy(), eb._cdf_length.numpy(),
                                                eb._offset.numpy())
        tables.update(fc.to_arrays(prefix=f"z{k}/"))
        tables[f"z{k}/medians"] = eb._get_medians().detach().reshape(-1).numpy().astype(np.float32)
        tables[f"gain{k}"] = em.gain.detach().numpy().astype(np.float32)
        tables[f"inv_gain{k}"] = em.inv_gain.detach().numpy().astype(np.float32)
        y = base.encoders[g.replace("+", "_")](x)
        z = em.h_a(y)
        psi = em.h_s(z)[..., : y.shape[-2], : y.shape[-1]]
        parent = (torch.rand_like(y),) if em.has_parent else ()
        pin = ["parent"] if em.has_parent else []
        specs = {
            "analysis": (base.encoders[g.replace("+", "_")], (x,), ["image"], ["y"]),
            "hyper_analysis": (em.h_a, (y,), ["ys"], ["z"]),
            "hyper_synthesis": (em.h_s, (z,), ["z_hat"], ["psi"]),
            "pass1": (_Pass1(em), (psi, *parent), ["psi", *pin], ["mean", "scale"]),
            "pass2": (_Pass2(em), (psi, *parent, torch.rand_like(y)), ["psi", *pin, "anchors"], ["mean", "scale"]),
        }
        graphs[g] = {}
        for part, (mod, args, ins, outs) in specs.items():
            fname = f"g{k}_{part}.onnx"
            files[fname] = _onnx_bytes(mod, args, ins, outs)
            graphs[g][part] = {"file": fname, "inputs": ins, "outputs": outs}
    decoders = {}
    for t, g in sorted(base.serving.items(), key=lambda kv: TASKS.index(kv[0])):
        fname = f"decoder_{t}.onnx"
        files[fname] = _onnx_bytes(base.decoders[g.replace("+", "_")][t], (torch.rand(1, c, 8, 8),), ["y"], ["pred"])
        decoders[t] = {"file": fname, "group": g, "inputs": ["y"], "outputs": ["pred"]}
    if lowest_blend:
        blend_lowest_gains(tables, lowest_blend)
    if positions is not None:
        resample_gains(tables, positions)
    buf = io.BytesIO()
    # the Gaussian PMF table is mostly zeros: compressed it is a tenth of the size
    np.savez_compressed(buf, **tables)
    files["tables.npz"] = buf.getvalue()
    state = torch.load(codec_pt, map_location="cpu", weights_only=False)
    d = state["describe"]
    manifest = {
        "schema": MODEL_SCHEMA,
        "name": name,
        "format_version": 1,
        "tasks": [t for t in TASKS if t in base.serving],
        "groups": groups,
        "serving": {t: base.serving[t] for t in TASKS if t in base.serving},
        "dag": {"order": groups, "parents": {g: model.parents[g] for g in groups}},
        "qualities": [{"q": i + 1, "lambda": lam} for i, lam in enumerate(d["lambdas"])],
        "padding_multiple": PAD_MULTIPLE,
        "latent_channels": c,
        "latent_stride": 16,
        "input": {"layout": "NCHW", "dtype": "float32", "range": "RGB / 255 in [0, 1]"},
        "task_normalisation": {t: {"offset": TASK_SPECS[t].offset, "scale": TASK_SPECS[t].scale}
                               for t in base.serving},
        "graphs": graphs,
        "decoders": decoders,
        "tables": "tables.npz",
        "weights_precision": "float16",
        "provenance": provenance or {},
    }
    if model.parent_input != DEFAULT_PARENT_INPUT:
        # absent means the default, so the manifests (and ids) of earlier models stay valid
        manifest["parent_input"] = model.parent_input
    if lowest_blend:
        manifest["qualities"][0]["gain_blend"] = lowest_blend
    if positions is not None:
        lams = np.log(np.asarray(d["lambdas"], dtype=np.float64))
        manifest["qualities"] = [{"q": i + 1, "lambda": round(float(np.exp(np.interp(pos - 1, np.arange(len(lams)), lams))), 6),
                                  "trained_position": pos} for i, pos in enumerate(positions)]
    scene_groups = scene_scale_groups(manifest["serving"]) if scene_size else []
    if scene_groups:
        # absent means every group at full size, so earlier models keep their ids
        manifest["scene_scale"] = {"size": int(scene_size), "groups": scene_groups}
    return write_model_folder(out, manifest, files,
                              {t: float(state["trivial"][t]) for t in manifest["tasks"] if t in state["trivial"]},
                              f"{Path(codec_pt).as_posix()} (stage 2's trivial losses, from its stage-1 anchor)")


def replace_decoders(model_dir: str | Path, out_dir: str | Path, decoders: dict[str, nn.Module], *,
                     name: str | None = None, record: dict | None = None,
                     scene_tasks: list[str] | None = None, context: dict[str, list[str]] | None = None,
                     recipe: dict | None = None) -> dict:
    """Write a copy of an exported model with some task decoders replaced; returns its manifest.

    Everything that codes (analysis, entropy graphs, tables) is copied byte for byte, so the new
    model writes the same bits as the old one; only the decoders' files, what they read
    (`scene_tasks`: the tasks decoded at scene scale, CONTRACT.md; None keeps the source's) and
    with them the model id change. `record` goes into the manifest's provenance under "decoders".
    `context` names the ancestor groups each new decoder reads besides its own (CONTRACT.md,
    decoder context; a decoder not named reads its group alone). `recipe` (the recipe that made the
    new model, from `tamc train run`) goes into the provenance under "recipe"; the source's is not kept.
    """
    from ..errors import TamcInputError
    from ..runtime.manifest import read_manifest, read_reference

    src, out = Path(model_dir), Path(out_dir)
    if out.resolve() == src.resolve():
        raise TamcInputError("write the new model to another folder than its source")
    manifest = read_manifest(src)
    unknown = [t for t in decoders if t not in manifest["decoders"]]
    if unknown:
        raise TamcInputError(f"{src}: the model has no decoder for {', '.join(unknown)}")
    c = int(manifest["latent_channels"])
    files = {f: (src / f).read_bytes() for f in manifest["files"]}
    specs = dict(manifest["decoders"])
    for t, module in decoders.items():
        round_to_float16(module)
        reads = list((context or {}).get(t, ()))
        specs[t] = {k: v for k, v in specs[t].items() if k != "context"}
        specs[t]["inputs"] = ["y", "context"] if reads else ["y"]
        width = getattr(getattr(module, "cfg", None), "context_channels", 0)
        if width != c * len(reads):
            raise ValueError(f"the {t} decoder reads {width} context channels, not {c} x {len(reads)} groups")
        if reads:
            specs[t]["context"] = reads
        kwargs = {"context": torch.rand(1, width, 8, 8)} if reads else None
        files[specs[t]["file"]] = _onnx_bytes(module, (torch.rand(1, c, 8, 8),), specs[t]["inputs"], ["pred"], kwargs)
    reference = read_reference(src, manifest["model_id"]) or {}
    # the coding is the source's, byte for byte: its files (and its predecessors') decode here
    same = [*manifest.get("same_coding_as", []), manifest["model_id"]]
    manifest = {k: v for k, v in manifest.items() if k != "model_id"}
    manifest["same_coding_as"] = same
    manifest["decoders"] = specs
    manifest["name"] = name or out.name
    manifest["provenance"] = {**{k: v for k, v in manifest.get("provenance", {}).items() if k != "recipe"},
                              "decoders": record or {}, **({"recipe": recipe} if recipe else {})}
    if scene_tasks is not None:
        # stage 3's scale when the source had none
        scene = {**(manifest.pop("scene_scale", None) or {"size": DEFAULT_SCENE_SIZE, "groups": []}),
                 "tasks": sorted(scene_tasks, key=TASKS.index)}
        if not scene_tasks:
            del scene["tasks"]
        if scene["groups"] or scene_tasks:
            manifest["scene_scale"] = scene
    return write_model_folder(out, manifest, files, reference.get("trivial_loss"), reference.get("source", ""))


__all__ = ["export_model", "replace_decoders", "model_id", "round_to_float16", "PAD_MULTIPLE", "group_tasks"]
