"""Encode images to .tamc and decode tasks from it, along the model's DAG (torch-free).

Per layer (one group), the encoder:
1. y = analysis(image, downsampled by the group's scene-scale factor f, usually 1); y_s = y * gain[q]
2. z = hyper_analysis(y_s); z symbols = round(z - median) -> sub-stream 0 (factorised)
3. ψ = hyper_synthesis(ẑ); the parent's decoded latent comes from its own layer
4. pass 1 (anchors, (i + j) even): μ, σ = pass1(ψ[, parent]); sub-stream 1
5. pass 2 (the rest): μ, σ = pass2(ψ[, parent], decoded anchors); sub-stream 2
The symbols are round(y_s - μ) coded with the table of σ's scale bin. The encoder
computes μ and σ with the decoder's own graphs on the values the decoder will
have (ẑ, the decoded anchors, the decoded parent), so both sides agree; a 16-bit
checksum of the scale bins makes any disagreement fail loudly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np

from .bitstream import Header, LayerSpec, TamcReader, pack, pack_substreams
from .contract import TASKS, mask_tasks, parse_task_list, task_mask
from .entropy import index_checksum
from . import limits
from .errors import TamcFormatError, TamcInputError, TamcModelError
from .runtime.model import RuntimeModel, find_model

#: Graphs that decide entropy parameters run single-threaded: identical floats on every machine setting.
PARAM_THREADS = 1
#: Threads of the big graphs (analysis, task decoders); 0 = onnxruntime's choice (all cores).
WORK_THREADS = int(os.environ.get("TAMC_THREADS", "0") or 0)

_MODELS: dict[str, RuntimeModel] = {}


def load_model(name_or_dir: str | None = None, model_id: str | None = None) -> RuntimeModel:
    folder = find_model(name_or_dir, model_id)
    key = str(folder.resolve())
    if key not in _MODELS:
        _MODELS[key] = RuntimeModel(folder)
    return _MODELS[key]


def checkerboard(h: int, w: int) -> np.ndarray:
    return ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0)


@dataclass
class EncodeResult:
    data: bytes
    layers: list[dict] = field(default_factory=list)
    height: int = 0
    width: int = 0
    padded_height: int = 0
    padded_width: int = 0
    #: the dequantised latents the decoder will reconstruct, per group (for checks)
    latents: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.height * self.width)


def check_image_size(rt: RuntimeModel, height: int, width: int, allow_large: bool = False) -> tuple[int, int]:
    """The padded size `rt` codes a height x width picture at; TamcInputError when it cannot or may
    not be coded (docs/CLI.md, "Size limit"). Cheap: callers run it on image headers, before any
    pixel is decoded, since the padding, not the picture, sets the memory."""
    if height == 0 or width == 0:
        raise TamcInputError(f"the image is empty ({height}x{width} pixels)")
    if max(height, width) > limits.MAX_SIDE:
        raise TamcInputError(f"{height}x{width} (HxW) pixels; sides above {limits.MAX_SIDE} cannot be coded")
    m = rt.pad_multiple(height, width)
    ph, pw = -(-height // m) * m, -(-width // m) * m
    limits.check_padded(height, width, ph, pw, "encode", allow_large)
    return ph, pw


def _as_image(image: Any, rt: RuntimeModel, allow_large: bool) -> np.ndarray:
    from .data.folder import read_image

    def check(h: int, w: int) -> None:
        check_image_size(rt, h, w, allow_large)

    if isinstance(image, (str, Path)):
        return read_image(image, check_size=check)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image, maybe not decoded yet
        check(image.size[1], image.size[0])
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise TamcInputError("an image array must be uint8 with shape (H, W, 3)")
    return a


def _pad(img: np.ndarray, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else img


def _tasks(tasks: Any, model: RuntimeModel) -> list[str]:
    try:
        names = parse_task_list(tasks) if isinstance(tasks, str) else parse_task_list(",".join(tasks))
    except ValueError as exc:
        raise TamcInputError(str(exc)) from None
    missing = [t for t in names if t not in model.serving]
    if missing:
        raise TamcInputError(f"model {model.folder.name} does not serve {', '.join(missing)}")
    return names


def _quality(quality: int | None, model: RuntimeModel) -> int:
    q = model.qualities if quality is None else int(quality)
    if not 1 <= q <= model.qualities:
        raise TamcInputError(f"quality must be 1..{model.qualities} (1 = lowest rate)")
    return q


def _hyper_synthesis(model: RuntimeModel, g: str, z_hat: np.ndarray, h: int, w: int) -> np.ndarray:
    psi = model.run(g, "hyper_synthesis", PARAM_THREADS, z_hat=z_hat)[0]
    return psi[..., :h, :w]


def _parent_context(model: RuntimeModel, y_hat: np.ndarray, dequantised: np.ndarray) -> np.ndarray:
    """What this layer's children see of it: the dequantised latent or the quantised one."""
    return y_hat.astype(np.float32) if model.parent_input == "quantised" else dequantised


def downsample(x: np.ndarray, f: int) -> np.ndarray:
    """Area downsampling by f of (N, C, H, W), H and W multiples of f: pictures on the encoder
    side, latents that a decoder reads at scene scale (never entropy-coding inputs)."""
    if f == 1:
        return x
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f).mean(axis=(3, 5), dtype=np.float32)


def _on_grid(context: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A parent's context on its child's latent grid, or an ancestor's latent on a decoder's
    (CONTRACT.md, scene scale; decoder context). Elementwise
    float32 operations in a fixed order, so that encoder and decoder compute the same values."""
    h = context.shape[-2]
    if h == hw[0]:
        return context
    if h > hw[0]:
        r = h // hw[0]
        acc = context[..., 0::r, 0::r].copy()
        for i in range(r):
            for j in range(r):
                if i or j:
                    acc += context[..., i::r, j::r]
        return acc * np.float32(1.0 / (r * r))
    r = hw[0] // h
    return np.repeat(np.repeat(context, r, axis=-2), r, axis=-1)


def upsample(pred: np.ndarray, f: int) -> np.ndarray:
    """Bilinear upsampling by f of (C, H, W) with half-pixel centres (edge values held)."""
    if f == 1:
        return pred
    for axis in (1, 2):
        n = pred.shape[axis]
        src = np.clip((np.arange(n * f) + 0.5) / f - 0.5, 0, n - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        shape = [1, 1, 1]
        shape[axis] = n * f
        w1 = (src - i0).astype(np.float32).reshape(shape)
        pred = np.take(pred, i0, axis=axis) * (1 - w1) + np.take(pred, i1, axis=axis) * w1
    return pred


def task_prediction(model: RuntimeModel, task: str, latents: Mapping[str, np.ndarray], height: int,
                    width: int) -> np.ndarray:
    """The serving decoder's output (C, height, width), normalised units, from the decoded latents
    by group: its group's read and predicted at the task's scale, with its ancestors' latents on that
    grid where the decoder reads them (CONTRACT.md, scene scale and decoder context), upsampled back
    to the picture."""
    f = model.task_factor(task, height, width)
    g = model.serving[task]
    y = downsample(latents[g], f // model.factor(g, height, width))
    feed = {"y": y}
    context = model.decoder_context(task)
    if context:
        feed["context"] = np.concatenate([_on_grid(latents[a], y.shape[-2:]) for a in context], axis=1)
    pred = model.run(None, task, WORK_THREADS, **feed)[0][0]
    return upsample(pred, f)[:, :height, :width]


def _params(model: RuntimeModel, g: str, part: str, psi: np.ndarray, parent: np.ndarray | None,
            anchors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    inputs = {"psi": psi}
    if model.parents[g] is not None:
        inputs["parent"] = parent
    if anchors is not None:
        inputs["anchors"] = anchors
    mean, scale = model.run(g, part, PARAM_THREADS, **inputs)
    return mean, scale


def encode_image(image: Any, tasks: Any = "all", quality: int | None = None, model: str | RuntimeModel | None = None,
                 allow_large: bool = False) -> EncodeResult:
    """Code `image` (a path, a PIL image or a uint8 (H, W, 3) array); the padded size is checked
    against limits.MAX_PIXELS (unless allow_large) before a path's pixels are decoded."""
    rt = model if isinstance(model, RuntimeModel) else load_model(model)
    img = _as_image(image, rt, allow_large)
    h, w = img.shape[:2]
    check_image_size(rt, h, w, allow_large)
    names = _tasks(tasks, rt)
    q = _quality(quality, rt)
    padded = _pad(img, rt.pad_multiple(h, w))
    x = (padded.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    pictures: dict[int, np.ndarray] = {}  # the picture at each group's scale (CONTRACT.md, scene scale)
    groups = rt.needed_groups(names)
    decoded: dict[str, np.ndarray] = {}
    context: dict[str, np.ndarray] = {}  # what children see of their parent (RuntimeModel.parent_input)
    layers: list[tuple[LayerSpec, bytes]] = []
    info: list[dict] = []
    position: dict[str, int] = {}
    for g in groups:
        gain, inv_gain = rt.gains(g, q)
        f = rt.factor(g, h, w)
        if f not in pictures:
            pictures[f] = downsample(x, f)
        y = rt.run(g, "analysis", WORK_THREADS, image=pictures[f])[0]
        ys = y * gain[None, :, None, None]
        hy, wy = ys.shape[-2:]
        z = rt.run(g, "hyper_analysis", PARAM_THREADS, ys=ys)[0]
        hyper, medians = rt.hyper_coder(g)
        med = medians[None, :, None, None]
        z_sym = np.rint(z - med).astype(np.int32)
        z_hat = (z_sym + med).astype(np.float32)
        psi = _hyper_synthesis(rt, g, z_hat, hy, wy)
        parent = _on_grid(context[rt.parents[g]], (hy, wy)) if rt.parents[g] else None
        anchor = checkerboard(hy, wy)[None, None] & np.ones(ys.shape, bool)
        mean1, scale1 = _params(rt, g, "pass1", psi, parent)
        idx1 = rt.gaussian.indexes(scale1[anchor])
        sym1 = np.rint(ys[anchor] - mean1[anchor]).astype(np.int32)
        anchors_hat = np.zeros_like(ys)
        anchors_hat[anchor] = sym1 + mean1[anchor]
        mean2, scale2 = _params(rt, g, "pass2", psi, parent, anchors_hat)
        idx2 = rt.gaussian.indexes(scale2[~anchor])
        sym2 = np.rint(ys[~anchor] - mean2[~anchor]).astype(np.int32)
        y_hat = anchors_hat.copy()
        y_hat[~anchor] = sym2 + mean2[~anchor]
        decoded[g] = (y_hat * inv_gain[None, :, None, None]).astype(np.float32)
        context[g] = _parent_context(rt, y_hat, decoded[g])
        streams = [hyper.encode(z_sym), rt.gaussian.encode(sym1, idx1), rt.gaussian.encode(sym2, idx2)]
        payload = pack_substreams(streams, index_checksum(idx1, idx2))
        served = [t for t, sg in rt.serving.items() if sg == g]
        p = rt.parents[g]
        layers.append((LayerSpec(group=rt.groups.index(g), parent=position[p] if p else None,
                                 tasks=task_mask(served)), payload))
        position[g] = len(layers) - 1
        info.append({"group": g, "parent": p, "tasks": served, "bytes": len(payload),
                     "substreams": [len(s) for s in streams]})
    header = Header(model_id=bytes.fromhex(rt.id), height=h, width=w, padded_height=padded.shape[0],
                    padded_width=padded.shape[1], quality=q, tasks=task_mask(names))
    data = pack(header, layers)
    return EncodeResult(data=data, layers=info, height=h, width=w, padded_height=padded.shape[0],
                        padded_width=padded.shape[1], latents=decoded)


@dataclass
class DecodeResult:
    output: np.ndarray
    task: str
    bytes_read: int
    file_size: int
    layers: list[int]


def decode_task(source: bytes | str | Path, task: str, model: str | RuntimeModel | None = None,
                allow_large: bool = False) -> DecodeResult:
    """Decode `task` from a .tamc file or its bytes; a padded size above limits.MAX_PIXELS (from a
    crafted or corrupt header, say) is refused before anything is allocated, unless allow_large."""
    try:
        from .contract import TASK_ALIASES

        task = TASK_ALIASES.get(task, task)
        if task not in TASKS:
            raise ValueError
    except ValueError:
        raise TamcInputError(f"unknown task {task!r} (known: {', '.join(TASKS)})") from None
    with TamcReader(source) as reader:
        hdr = reader.header
        limits.check_padded(hdr.height, hdr.width, hdr.padded_height, hdr.padded_width, "decode", allow_large)
        rt = model if isinstance(model, RuntimeModel) else load_model(model, model_id=hdr.model_id_hex)
        if hdr.model_id_hex not in rt.reads:
            raise TamcModelError(f"the file was made by model {hdr.model_id_hex}, not by {rt.id} ({rt.folder})")
        available = sorted({t for e in reader.layers for t in mask_tasks(e.tasks)}, key=TASKS.index)
        if task not in available:
            raise TamcInputError(f"task {task!r} is not in this file (it has: {', '.join(available) or 'none'})")
        chain = reader.layers_for_task(task)
        q = hdr.quality
        if not 1 <= q <= rt.qualities:
            raise TamcFormatError(f"quality {q} is outside the model's 1..{rt.qualities}")
        ph, pw = hdr.padded_height, hdr.padded_width
        multiple = rt.pad_multiple(hdr.height, hdr.width)
        if ph % multiple or pw % multiple:
            raise TamcFormatError("padded size is not a multiple of the model's padding")
        c = int(rt.manifest["latent_channels"])
        decoded: dict[int, np.ndarray] = {}
        context: dict[int, np.ndarray] = {}
        for li in chain:
            entry = reader.layers[li]
            if entry.group >= len(rt.groups):
                raise TamcFormatError(f"layer {li} names group {entry.group}, the model has {len(rt.groups)}")
            g = rt.groups[entry.group]
            expected_parent = rt.parents[g]
            got_parent = rt.groups[reader.layers[entry.parent].group] if entry.parent is not None else None
            if got_parent != expected_parent:
                raise TamcFormatError(f"layer {li} ({g}) has parent {got_parent}, the model's DAG says {expected_parent}")
            payload = reader.read_payload(li)
            if len(payload.streams) != 3:
                raise TamcFormatError(f"layer {li} has {len(payload.streams)} sub-streams, expected 3")
            f = rt.factor(g, hdr.height, hdr.width)
            hy, wy = ph // (16 * f), pw // (16 * f)
            anchor = checkerboard(hy, wy)[None, None] & np.ones((1, c, hy, wy), bool)
            gain, inv_gain = rt.gains(g, q)
            hyper, medians = rt.hyper_coder(g)
            zh, zw = -(-hy // 4), -(-wy // 4)
            z_sym = hyper.decode(payload.streams[0], (1, hyper.channels, zh, zw))
            z_hat = (z_sym + medians[None, :, None, None]).astype(np.float32)
            psi = _hyper_synthesis(rt, g, z_hat, hy, wy)
            parent = _on_grid(context[entry.parent], (hy, wy)) if entry.parent is not None else None
            mean1, scale1 = _params(rt, g, "pass1", psi, parent)
            idx1 = rt.gaussian.indexes(scale1[anchor])
            sym1 = rt.gaussian.decode(payload.streams[1], idx1)
            anchors_hat = np.zeros((1, c, hy, wy), np.float32)
            anchors_hat[anchor] = sym1 + mean1[anchor]
            mean2, scale2 = _params(rt, g, "pass2", psi, parent, anchors_hat)
            idx2 = rt.gaussian.indexes(scale2[~anchor])
            payload.verify(index_checksum(idx1, idx2), what=f"layer {li} ({g})")
            sym2 = rt.gaussian.decode(payload.streams[2], idx2)
            y_hat = anchors_hat
            y_hat[~anchor] = sym2 + mean2[~anchor]
            decoded[li] = (y_hat * inv_gain[None, :, None, None]).astype(np.float32)
            context[li] = _parent_context(rt, y_hat, decoded[li])
        by_group = {rt.groups[reader.layers[li].group]: decoded[li] for li in chain}
        pred = task_prediction(rt, task, by_group, hdr.height, hdr.width)
        raw = _raw_output(task, pred, rt)
        return DecodeResult(output=raw, task=task, bytes_read=reader.bytes_read, file_size=reader.file_size,
                            layers=list(chain))


def _raw_output(task: str, pred: np.ndarray, rt: RuntimeModel) -> np.ndarray:
    """Network output (C, H, W) -> CONTRACT.md raw units, with the model's normalisation."""
    from .data.arrays import denormalise

    return denormalise(task, pred, rt.manifest["task_normalisation"].get(task))


def encode(image: Any, tasks: Any = "all", quality: int | None = None, model: str | None = None,
           allow_large: bool = False) -> bytes:
    return encode_image(image, tasks, quality, model, allow_large).data


def decode(data: bytes, task: str, model: str | None = None, allow_large: bool = False) -> np.ndarray:
    return decode_task(data, task, model, allow_large).output
