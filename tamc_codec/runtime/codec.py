"""Encode pictures to .tamc and decode tasks from it, along the model's DAG.

The encoder analyses the picture once per group (at the group's scene scale, CONTRACT.md), codes
the groups serving the requested tasks and their ancestors in coding order, each with its DAG
parent's decoded latent as context (runtime.layer_codec), and packs the layers into one file
(docs/FORMAT.md). A decoder reads the chain of layers its task needs and nothing else, then runs
the task's serving decoder on the decoded latents. A picture group (docs/MODEL.md, picture layers)
codes the picture itself by AVIF (runtime.picture), a DAG root that no layer reads as context;
its tasks are the picture and CONTRACT.md's filters of it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import limits
from ..bitstream import CODING_AVIF, CODING_LATENT, CODINGS, Header, LayerSpec, TamcReader, pack
from ..bitstream.container import MODEL_ID_PREFIX_BYTES
from ..contract import TASK_ALIASES, TASKS, mask_tasks, parse_task_list, task_mask
from ..effort import DEFAULT_EFFORT, check_effort
from ..errors import TamcFormatError, TamcInputError, TamcModelError
from .images import read_image
from .layer_codec import PARAM_THREADS, CodedLayer, LayerCodec
from .model import RuntimeModel, find_model
from .picture import picture_output, picture_prediction
from .resample import downsample, on_grid, upsample
from .search import Objective, task_objective
from .units import denormalise

_MODELS: dict[str, RuntimeModel] = {}


def default_threads() -> int:
    """Threads of the big graphs (analysis, task decoders) when a caller names none: $TAMC_THREADS,
    else 0 (onnxruntime's choice: all cores). The graphs that decide entropy parameters always run
    single-threaded (layer_codec.PARAM_THREADS), so this never changes a coded bit."""
    return int(os.environ.get("TAMC_THREADS", "0") or 0)


def _threads(threads: int | None) -> int:
    return default_threads() if threads is None else int(threads)


def load_model(name_or_dir: str | None = None, model_id: str | None = None) -> RuntimeModel:
    """The model a name or folder names (runtime.model.find_model), loaded once per process.
    `model_id`: a file's model id in hex, the full 32 digits or the 8 of a version-3 file's prefix."""
    folder = find_model(name_or_dir, model_id)
    key = str(folder.resolve())
    if key not in _MODELS:
        _MODELS[key] = RuntimeModel(folder)
    return _MODELS[key]


def _runtime(model: str | RuntimeModel | None, model_id: str | None = None) -> RuntimeModel:
    return model if isinstance(model, RuntimeModel) else load_model(model, model_id)


@dataclass
class EncodeResult:
    data: bytes
    layers: list[dict] = field(default_factory=list)
    height: int = 0
    width: int = 0
    padded_height: int = 0
    padded_width: int = 0
    #: the dequantised latents the decoder will reconstruct, per group (for checks); for a picture
    #: group, the picture the decoder will reconstruct, (H, W, 3) uint8
    latents: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.height * self.width)


@dataclass
class DecodeResult:
    output: np.ndarray
    task: str
    bytes_read: int
    file_size: int
    layers: list[int]


def check_image_size(rt: RuntimeModel, height: int, width: int, allow_large: bool = False) -> tuple[int, int]:
    """The padded size `rt` codes a height x width picture at; TamcInputError when it cannot or may
    not be coded (docs/CLI.md, "Size limit"). Cheap: callers run it on image headers, before any
    pixel is decoded, since the padding, not the picture, sets the memory."""
    if height == 0 or width == 0:
        raise TamcInputError(f"the image is empty ({height}x{width} pixels)")
    if max(height, width) > limits.MAX_SIDE:
        raise TamcInputError(f"{height}x{width} (HxW) pixels; sides above {limits.MAX_SIDE} cannot be coded")
    ph, pw = padded_size(rt, height, width)
    limits.check_padded(height, width, ph, pw, "encode", allow_large)
    return ph, pw


def padded_size(rt: RuntimeModel, height: int, width: int) -> tuple[int, int]:
    """The size `rt` pads a height x width picture to (pad_picture's): each side rounded up to the
    model's padding multiple for that size. A version-3 file stores no padded size: this is it."""
    m = rt.pad_multiple(height, width)
    return -(-height // m) * m, -(-width // m) * m


def check_file_model(rt: RuntimeModel, header: Header) -> None:
    """TamcModelError naming both ids unless the file's model id (16 bytes, or version 3's 4-byte
    prefix) is `rt`'s or one whose files `rt` decodes (CONTRACT.md, same coding)."""
    if not any(header.made_by(i) for i in rt.reads):
        kind = " (the first 4 bytes of its id, which is all a version-3 file stores)" if header.model_id_is_prefix else ""
        raise TamcModelError(f"the file was made by model {header.model_id_text()}{kind}, not by {rt.id} ({rt.folder})")


def file_padded_size(rt: RuntimeModel, header: Header) -> tuple[int, int]:
    """The padded size a file's picture was coded at: the model's padding of its size for version 3
    (padded_size), the stored one for versions 1 and 2, which must be a multiple of the model's padding."""
    if header.padded_height is None or header.padded_width is None:
        return padded_size(rt, header.height, header.width)
    multiple = rt.pad_multiple(header.height, header.width)
    if header.padded_height % multiple or header.padded_width % multiple:
        raise TamcFormatError("padded size is not a multiple of the model's padding")
    return header.padded_height, header.padded_width


def parse_tasks(tasks: Any, model: RuntimeModel) -> list[str]:
    """Task names (a comma-separated string of names or aliases, or a list; "all": every task the
    model serves) in CONTRACT.md order; TamcInputError for unknown ones or ones the model does not serve."""
    if isinstance(tasks, str) and tasks.strip().lower() == "all":
        return [t for t in TASKS if t in model.serving]
    try:
        names = parse_task_list(tasks if isinstance(tasks, str) else ",".join(tasks))
    except ValueError as exc:
        raise TamcInputError(str(exc)) from None
    missing = [t for t in names if t not in model.serving]
    if missing:
        raise TamcInputError(f"model {model.folder.name} does not serve {', '.join(missing)}")
    return names


def check_quality(quality: int | None, model: RuntimeModel) -> int:
    """`quality` checked against the model's 1..Q; None is the highest."""
    q = model.qualities if quality is None else int(quality)
    if not 1 <= q <= model.qualities:
        raise TamcInputError(f"quality must be 1..{model.qualities} (1 = lowest rate)")
    return q


def _as_image(image: Any, rt: RuntimeModel, allow_large: bool) -> np.ndarray:
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


def pad_picture(img: np.ndarray, multiple: int) -> np.ndarray:
    """(H, W, 3) edge-padded on the bottom and right to multiples of `multiple`, as the codec codes it."""
    h, w = img.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else img


def task_prediction(model: RuntimeModel, task: str, latents: Mapping[str, np.ndarray], height: int,
                    width: int, threads: int | None = None) -> np.ndarray:
    """The serving decoder's output (C, height, width), normalised units, from the decoded latents
    by group: its group's read and predicted at the task's scale, with its ancestors' latents on that
    grid where the decoder reads them (CONTRACT.md, scene scale and decoder context), upsampled back
    to the picture. A task of a picture group: its filter of the decoded picture (`latents[group]`)
    in the same units (runtime.picture.picture_prediction)."""
    g = model.serving[task]
    if model.is_picture(g):
        return picture_prediction(task, latents[g][:height, :width])
    pred = decoder_output(model, task, latents, height, width, threads)
    return upsample(pred, model.task_factor(task, height, width))[:, :height, :width]


def decoder_output(model: RuntimeModel, task: str, latents: Mapping[str, np.ndarray], height: int,
                   width: int, threads: int | None = None) -> np.ndarray:
    """A latent group's task decoder's output (C, h, w) at the task's scale, before task_prediction
    upsamples it to the picture."""
    g = model.serving[task]
    y = downsample(latents[g], model.task_factor(task, height, width) // model.factor(g, height, width))
    feed = {"y": y}
    context = model.decoder_context(task)
    if context:
        feed["context"] = np.concatenate([on_grid(latents[a], y.shape[-2:]) for a in context], axis=1)
    return model.run(None, task, _threads(threads), **feed)[0][0]


def _objective(model: RuntimeModel, group: str, tasks: list[str], y: np.ndarray, coded: Mapping[str, CodedLayer],
               quality: int, height: int, width: int, threads: int | None) -> Objective | None:
    """What the symbol search of `group`'s layer minimises for the requested `tasks` it serves
    (runtime.search), None where it serves none of them."""
    served = [t for t in tasks if model.serving.get(t) == group]
    if not served:
        return None
    latents = {g: c.latent for g, c in coded.items()}

    def outputs(task: str, latent: np.ndarray) -> np.ndarray:
        # one thread a graph: a search's choices, and so the file, must not depend on the thread count
        return decoder_output(model, task, {**latents, group: latent}, height, width, PARAM_THREADS)

    spec = model.manifest["qualities"][quality - 1]
    lam = float(spec.get("lambda_by_group", {}).get(group, spec["lambda"]))
    return task_objective(outputs, served, y, model.trivial_loss, lam, workers=_threads(threads) or os.cpu_count() or 1)


def raw_output(task: str, pred: np.ndarray, model: RuntimeModel) -> np.ndarray:
    """A decoder's output (C, H, W) in CONTRACT.md's raw units, with the model's normalisation."""
    return denormalise(task, pred, model.manifest["task_normalisation"].get(task))


def encode_image(image: Any, tasks: Any = "all", quality: int | None = None,
                 model: str | RuntimeModel | None = None, allow_large: bool = False,
                 threads: int | None = None, effort: int = DEFAULT_EFFORT) -> EncodeResult:
    """Code `image` (a path, a PIL image or a uint8 (H, W, 3) array); the padded size is checked
    against limits.MAX_PIXELS (unless allow_large) before a path's pixels are decoded.
    threads: of the analysis graphs (default_threads() when None); never changes a bit.
    effort: how hard the encoder searches each latent layer's symbols for the requested tasks
    (effort.EFFORTS; 0 rounds them). The file decodes the same way whatever it is."""
    check_effort(effort)
    rt = _runtime(model)
    img = _as_image(image, rt, allow_large)
    h, w = img.shape[:2]
    check_image_size(rt, h, w, allow_large)
    names = parse_tasks(tasks, rt)
    q = check_quality(quality, rt)
    padded = pad_picture(img, rt.pad_multiple(h, w))
    x = (padded.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    pictures: dict[int, np.ndarray] = {}  # the picture at each group's scale (CONTRACT.md, scene scale)
    coded: dict[str, CodedLayer] = {}
    decoded_pictures: dict[str, np.ndarray] = {}
    position: dict[str, int] = {}
    layers: list[tuple[LayerSpec, bytes]] = []
    info: list[dict] = []
    for g in rt.needed_groups(names):
        served = [t for t, sg in rt.serving.items() if sg == g]
        if rt.is_picture(g):  # a DAG root, no layer's parent (docs/MODEL.md, picture layers)
            payload, decoded_pictures[g] = rt.picture_codec(g, q).encode(img, threads)
            layers.append((LayerSpec(group=rt.groups.index(g), parent=None, tasks=task_mask(served),
                                     coding=CODING_AVIF), payload))
            position[g] = len(layers) - 1
            info.append({"group": g, "parent": None, "tasks": served, "bytes": len(payload),
                         "coding": CODINGS[CODING_AVIF]})
            continue
        f = rt.factor(g, h, w)
        if f not in pictures:
            pictures[f] = downsample(x, f)
        y = rt.run(g, "analysis", _threads(threads), image=pictures[f])[0]
        p = rt.parents[g]
        objective = _objective(rt, g, names, y, coded, q, h, w, threads) if effort else None
        layer = LayerCodec(rt, g, q, y.shape[-2:], coded[p].context if p else None).encode(y, objective, effort)
        coded[g] = layer
        layers.append((LayerSpec(group=rt.groups.index(g), parent=position[p] if p else None,
                                 tasks=task_mask(served)), layer.payload))
        position[g] = len(layers) - 1
        info.append({"group": g, "parent": p, "tasks": served, "bytes": len(layer.payload),
                     "coding": CODINGS[CODING_LATENT], "substreams": layer.substreams})
    # format version 3: the id's prefix, and no padded size (the decoder pads as padded_size does)
    header = Header(model_id=bytes.fromhex(rt.id)[:MODEL_ID_PREFIX_BYTES], height=h, width=w, quality=q,
                    tasks=task_mask(names))
    return EncodeResult(data=pack(header, layers), layers=info, height=h, width=w,
                        padded_height=padded.shape[0], padded_width=padded.shape[1],
                        latents={**{g: c.latent for g, c in coded.items()}, **decoded_pictures})


def _task_name(task: str) -> str:
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise TamcInputError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    return task


def decode_task(source: bytes | str | Path, task: str, model: str | RuntimeModel | None = None,
                allow_large: bool = False, threads: int | None = None) -> DecodeResult:
    """Decode `task` from a .tamc file or its bytes; a padded size above limits.MAX_PIXELS (from a
    crafted or corrupt header, say) is refused before anything is allocated, unless allow_large.
    The padded size is the one a version-1 or -2 file declares, checked before the model is
    loaded, or the model's padding of a version-3 file's image size (file_padded_size)."""
    task = _task_name(task)
    with TamcReader(source) as reader:
        hdr = reader.header
        if hdr.padded_height is not None and hdr.padded_width is not None:
            limits.check_padded(hdr.height, hdr.width, hdr.padded_height, hdr.padded_width, "decode", allow_large)
        rt = _runtime(model, hdr.model_id_hex)
        check_file_model(rt, hdr)
        available = sorted({t for e in reader.layers for t in mask_tasks(e.tasks)}, key=TASKS.index)
        if task not in available:
            raise TamcInputError(f"task {task!r} is not in this file (it has: {', '.join(available) or 'none'})")
        chain = reader.layers_for_task(task)
        q = hdr.quality
        if not 1 <= q <= rt.qualities:
            raise TamcFormatError(f"quality {q} is outside the model's 1..{rt.qualities}")
        ph, pw = file_padded_size(rt, hdr)
        limits.check_padded(hdr.height, hdr.width, ph, pw, "decode", allow_large)
        decoded: dict[int, CodedLayer] = {}
        for li in chain:
            entry = reader.layers[li]
            if entry.group >= len(rt.groups):
                raise TamcFormatError(f"layer {li} names group {entry.group}, the model has {len(rt.groups)}")
            g = rt.groups[entry.group]
            expected_parent = rt.parents[g]
            got_parent = rt.groups[reader.layers[entry.parent].group] if entry.parent is not None else None
            if got_parent != expected_parent:
                raise TamcFormatError(f"layer {li} ({g}) has parent {got_parent}, the model's DAG says {expected_parent}")
            coding = CODING_AVIF if rt.is_picture(g) else CODING_LATENT
            if entry.coding != coding:
                raise TamcFormatError(f"layer {li} ({g}) is coded as {entry.coding_name}, the model codes it as {CODINGS[coding]}")
            if coding == CODING_AVIF:  # a root: the chain is this layer alone
                picture = rt.picture_codec(g, q).decode(reader.read_layer(li), hdr.height, hdr.width, f"layer {li} ({g})")
                return DecodeResult(output=picture_output(task, picture), task=task, bytes_read=reader.bytes_read,
                                    file_size=reader.file_size, layers=list(chain))
            payload = reader.read_payload(li)
            step = rt.latent_stride * rt.factor(g, hdr.height, hdr.width)
            parent = decoded[entry.parent].context if entry.parent is not None else None
            decoded[li] = LayerCodec(rt, g, q, (ph // step, pw // step), parent).decode(payload, f"layer {li} ({g})")
        by_group = {rt.groups[reader.layers[li].group]: decoded[li].latent for li in chain}
        pred = task_prediction(rt, task, by_group, hdr.height, hdr.width, threads)
        return DecodeResult(output=raw_output(task, pred, rt), task=task, bytes_read=reader.bytes_read,
                            file_size=reader.file_size, layers=list(chain))


def encode(image: Any, tasks: Any = "all", quality: int | None = None, model: str | None = None,
           allow_large: bool = False) -> bytes:
    """The .tamc bytes of `image` (encode_image's data)."""
    return encode_image(image, tasks, quality, model, allow_large).data


def decode(data: bytes, task: str, model: str | None = None, allow_large: bool = False) -> np.ndarray:
    """One task's raw output (CONTRACT.md units) from .tamc bytes (decode_task's output)."""
    return decode_task(data, task, model, allow_large).output
