"""Fixed hyper-latents (docs/MODEL.md, "Fixed hyper-latents"): a copy of a model in which chosen
groups code no hyper-latent z.

A hyperprior pays for z to predict each latent's scale. When a layer is a few hundred bytes (a
scene layer analysed at 128² has an 8×8 latent and a 2×2 z), z's side information can cost more
than it saves: what the latent needs is mostly its per-channel spread, which one constant z per
quality already tells the entropy model. For each group and quality this finds the z symbols,
one per channel and the same at every position, that minimise the latent's information content
on a set of pictures (coordinate descent from the channels' medians), then measures real layer
bytes with the coded z and with the fixed one. A group is fixed when the fixed one is smaller at
every quality. The new model writes no z sub-stream for it and decodes with the same constant;
every network is the source's, byte for byte. Torch-free (numpy and onnxruntime).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import TamcInputError
from ..runtime.layer_codec import PARAM_THREADS, LayerCodec
from ..runtime.manifest import read_manifest, read_reference
from ..runtime.model import RuntimeModel
from ..runtime.resample import downsample
from .model_folder import write_model_folder

__all__ = ["SEARCH_RADIUS", "choose_fixed_hyper", "write_fixed_hyper_model"]

#: the coordinate descent tries each channel's symbol up to this far from its current value
SEARCH_RADIUS = 3
MAX_SWEEPS = 4


class _Picture:
    """One picture's analysis output per group, and the parents' coded contexts at a quality."""

    def __init__(self, rt: RuntimeModel, image: np.ndarray, threads: int):
        from ..runtime.codec import pad_picture

        h, w = image.shape[:2]
        x = (pad_picture(image, rt.pad_multiple(h, w)).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        self.y = {g: rt.run(g, "analysis", threads, image=downsample(x, rt.factor(g, h, w)))[0]
                  for g in rt.order if not rt.is_picture(g)}


def _layer(rt: RuntimeModel, pic: _Picture, g: str, q: int, contexts: dict) -> LayerCodec:
    p = rt.parents[g]
    return LayerCodec(rt, g, q, pic.y[g].shape[-2:], contexts[p] if p else None)


def _latent_bits(rt: RuntimeModel, codecs: list[LayerCodec], ys: list[np.ndarray], z: np.ndarray) -> float:
    """Mean information content (bits) of the latents `ys` coded with every position of z at `z`.
    A constant z gives every picture of one grid the same ψ, and a root's first pass depends on ψ
    alone: both are computed once per grid."""
    shared: dict[tuple, tuple] = {}
    total = 0.0
    for c, y in zip(codecs, ys):
        key = tuple(c.grid)
        if key not in shared:
            c.fixed_z = z
            psi = c._psi(c._fixed_symbols())
            shared[key] = (psi, c._params("pass1", psi, None) if c.parent is None else None)
        psi, first = shared[key]
        y_hat = np.zeros(c.shape, np.float32)
        for k, mask in ((1, c.anchor), (2, ~c.anchor)):
            mean, scale = first if k == 1 and first is not None else c._params(f"pass{k}", psi, y_hat if k == 2 else None)
            s = np.rint(y[mask] - mean[mask]).astype(np.int32)
            total += rt.gaussian.information_content(s, rt.gaussian.indexes(scale[mask]))
            y_hat[mask] = s + mean[mask]
    return total / len(codecs)


def choose_fixed_hyper(model_dir: str | Path, pictures: list[np.ndarray], threads: int = 1,
                       log: Callable[[str], None] = lambda _: None) -> dict[str, dict]:
    """Per learned group: the best constant z symbols per quality (Q, Cz), and the mean layer
    bytes on `pictures` with the coded z and with the fixed one, per quality."""
    rt = RuntimeModel(model_dir)
    learned = [g for g in rt.order if not rt.is_picture(g) and rt.fixed_hyper(g, 1) is None]
    if not learned:
        raise TamcInputError(f"{model_dir}: no learned group codes a hyper-latent")
    pics = [_Picture(rt, im, threads) for im in pictures]
    out: dict[str, dict] = {g: {"fixed": [], "coded_bytes": [], "fixed_bytes": []} for g in learned}
    for q in range(1, rt.qualities + 1):
        contexts = [{} for _ in pics]  # the parents as the coded model decodes them
        for g in learned:
            codecs = [_layer(rt, p, g, q, c) for p, c in zip(pics, contexts)]
            ys = [p.y[g] * c.gain[None, :, None, None] for p, c in zip(pics, codecs)]
            zs = [np.rint(rt.run(g, "hyper_analysis", PARAM_THREADS, ys=y)[0] - c.medians[None, :, None, None])
                  .astype(np.int32) for y, c in zip(ys, codecs)]
            channels = zs[0].shape[1]
            z = np.rint(np.median(np.concatenate([s.transpose(1, 0, 2, 3).reshape(channels, -1) for s in zs], 1),
                                  axis=1)).astype(np.int32)

            search = [_layer(rt, p, g, q, c) for p, c in zip(pics, contexts)]

            def cost(zc: np.ndarray) -> float:
                return _latent_bits(rt, search, ys, zc)

            best = cost(z)
            for _ in range(MAX_SWEEPS):
                improved = False
                for ch in range(channels):
                    for v in range(z[ch] - SEARCH_RADIUS, z[ch] + SEARCH_RADIUS + 1):
                        if v == z[ch]:
                            continue
                        trial = z.copy()
                        trial[ch] = v
                        b = cost(trial)
                        if b < best - 1e-9:
                            best, z, improved = b, trial, True
                if not improved:
                    break
            coded = [c.encode(p.y[g]) for c, p in zip(codecs, pics)]
            codecs_fixed = [_layer(rt, p, g, q, c) for p, c in zip(pics, contexts)]
            for c in codecs_fixed:
                c.fixed_z = z
            fixed = [c.encode(p.y[g]) for c, p in zip(codecs_fixed, pics)]
            for c, layer in zip(contexts, coded):
                c[g] = layer.context
            r = out[g]
            r["fixed"].append(z)
            r["coded_bytes"].append(float(np.mean([len(x.payload) for x in coded])))
            r["fixed_bytes"].append(float(np.mean([len(x.payload) for x in fixed])))
            log(f"{g} q{q}: layer {r['coded_bytes'][-1]:.1f} bytes with z coded, {r['fixed_bytes'][-1]:.1f} fixed")
    for g, r in out.items():
        r["fixed"] = np.stack(r["fixed"]).astype(np.int32)
        r["chosen"] = all(f < c for f, c in zip(r["fixed_bytes"], r["coded_bytes"]))
    return out


def write_fixed_hyper_model(base_dir: str | Path, out_dir: str | Path, chosen: dict[str, np.ndarray], *,
                            name: str, record: dict | None = None) -> dict:
    """A copy of `base_dir` in which each group of `chosen` codes no z: its (Q, Cz) symbols go to
    tables.npz as `z<k>/fixed` and the group to the manifest's `fixed_hyper`."""
    base_dir, out = Path(base_dir), Path(out_dir)
    if out.resolve() == base_dir.resolve():
        raise TamcInputError("write the new model to another folder than its source")
    base = read_manifest(base_dir)
    with np.load(base_dir / base["tables"]) as t:
        tables = {k: t[k] for k in t.files}
    for g, z in chosen.items():
        k = base["groups"].index(g)
        if z.shape != (len(base["qualities"]), tables[f"z{k}/medians"].shape[0]):
            raise TamcInputError(f"{g}: fixed z of shape {z.shape}")
        tables[f"z{k}/fixed"] = np.asarray(z, np.int32)
    files = {f: (base_dir / f).read_bytes() for f in base["files"]}
    buf = io.BytesIO()
    np.savez_compressed(buf, **tables)
    files[base["tables"]] = buf.getvalue()
    manifest = dict(base)
    manifest["name"] = name
    manifest["fixed_hyper"] = [g for g in base["groups"] if g in chosen or g in base.get("fixed_hyper", ())]
    manifest["provenance"] = {**base.get("provenance", {}), "fixed_hyper": {
        **(record or {}), "base": {"model_id": base["model_id"], "path": str(base_dir)}}}
    # files of this model do not decode with the source: the coding changed
    manifest.pop("same_coding_as", None)
    reference = read_reference(base_dir, base["model_id"]) or {}
    return write_model_folder(out, manifest, files, reference.get("trivial_loss"), reference.get("source", ""))
