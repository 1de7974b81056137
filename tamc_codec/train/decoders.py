"""Stage 3: task decoders fitted to what an exported codec decodes, on whole pictures.

Stages 1 and 2 train every decoder on 128² crops and on whole scenes downsampled to 128², each
with its quantisation drawn by stage 2's noise model. The codec runs a decoder on something
else: the *whole* picture's latent (its GroupNorm statistics and its receptive field span the
whole room), at the scale the group works at, as the exported graphs actually quantise it. This
stage closes that gap without touching anything that codes: the encoders, entropy models and
tables of the exported model stay as they are, so every bit rate is unchanged, and only the
decoders' graphs (and so the model id) change.

Scene tasks (seg, depth, normal) are moreover decoded at scene scale (CONTRACT.md): on a picture
larger than the training scenes their decoder reads the group's latent area-pooled to the
training scenes' grid, so that it sees a room at the size it learnt rooms, whatever size the
group analysed the picture at. Only a decoder fitted to pooled latents may read them, so the
choice is made here and written into the manifest with the decoders.

The latents come from the exported model's own encoder (`runtime.encode_image`), each training
scene at one quality drawn at random and mirrored at random, so the decoders see exactly the
values, quantisation included, that `tamc decode` hands them. Decoders are rebuilt in torch
from their ONNX graphs (`train.rebuild`, checked against onnxruntime), which is what lets this
stage start from a shipped model when its training checkpoints are gone.
"""
from __future__ import annotations

import time
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..contract import SCENE_TASKS, TASKS
from ..errors import TamcInputError, TamcModelError
from ..nets.multitask import TaskDecoder
from ..runtime.manifest import scene_factor
from ..runtime.model import RuntimeModel
from . import DEFAULT_SCENE_SIZE, PRECISIONS
from .common import (load_checkpoint, save_checkpoint, seed_everything, set_threads, usable_cores, warmup_cosine_lr,
                     write_json)
from .photometric import photometric_change
from .rebuild import rebuild_decoder


@dataclass
class DecoderStageConfig:
    model: str                 # exported model folder (the source; never modified)
    data: list[str]            # training folders; several sizes may be mixed (e.g. 256² and 512²)
    val: list[str]             # validation folders (e.g. 256² and 512²): choosing the best step per decoder
    out: str                   # work folder: latent caches, checkpoint, decoders.json
    tasks: list[str] = field(default_factory=list)   # [] = every served task
    steps: int = 2000
    batch_pixels: int = 8 * 256 * 256   # a step's pixels: 8 scenes at 256², 2 at 512²
    lr: float = 3e-4
    precision: str = "bf16"   # training passes: PRECISIONS; validation always runs in float32
    # decode the fitted scene tasks (seg, depth, normal) at scene scale: each reads its group's
    # latent pooled to the training scenes' scale (CONTRACT.md, scene scale; docs/TRAINING.md)
    scene_decoding: bool = True
    # each fitted decoder also reads its group's DAG ancestors' latents, which decoding the task
    # decodes anyway (CONTRACT.md, decoder context): more to read at no cost in bits. Off by default:
    # on the shipped model it changed no validation loss by more than 0.001 (docs/TRAINING.md)
    context: bool = False
    # code each training scene with a random photometric change (brightness, contrast, colour
    # balance, gamma): decoders see latents of surfaces unlike the training textures. Only for
    # tasks whose labels do not depend on the pixels' values (seg, depth, normal)
    augment: bool = False
    seed: int = 0
    eval_every: int = 500
    val_qualities: list[int] = field(default_factory=list)  # [] = 3 and the highest
    limit: int | None = None   # scenes per training folder (None: all)
    val_limit: int | None = None


def with_context(dec: TaskDecoder, channels: int) -> TaskDecoder:
    """`dec` widened to also read `channels` of context through a projection that starts at zero,
    so that it predicts exactly what `dec` did until training moves it."""
    wide = TaskDecoder(dec.task, replace(dec.cfg, context_channels=channels))
    state = {**wide.state_dict(), **dec.state_dict()}
    state["context.weight"] = torch.zeros_like(state["context.weight"])
    state["context.bias"] = torch.zeros_like(state["context.bias"])
    wide.load_state_dict(state)
    return wide.train(dec.training)


def fitted_context(rt: RuntimeModel, task: str, context: bool) -> list[str]:
    """The ancestor groups `task`'s fitted decoder reads: what its source decoder reads, or, for one
    that reads its group alone, every ancestor of its group when `context`."""
    return rt.decoder_context(task) or (rt.ancestors(rt.serving[task]) if context else [])


def _on_grid(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """A latent on a decoder's grid, as the codec puts it there (runtime.resample.on_grid)."""
    h = x.shape[-2]
    if h > hw[0]:
        return F.avg_pool2d(x, h // hw[0])
    if h < hw[0]:
        r = hw[0] // h
        return x.repeat_interleave(r, -2).repeat_interleave(r, -1)
    return x


# --------------------------------------------------------------------------- latents as the codec decodes them

def _code_scenes(rt: RuntimeModel, ds, groups: list[str], tasks: list[str],
                 scenes: list[tuple[int, int, bool]], augment: bool = False,
                 threads: int | None = None) -> dict[str, np.ndarray]:
    """Decoded latents of `scenes` (index, quality, mirrored) of `ds`: codec_latents' work."""
    from ..runtime import encode_image

    out: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for i, q, flip in scenes:
        img = np.asarray(ds.arrays["rgb"][i])
        if augment:  # seeded by the scene, so that the cache and any worker split agree
            img = photometric_change(img, np.random.default_rng([17, i]))
        res = encode_image(np.ascontiguousarray(img[:, ::-1] if flip else img), tasks, q, rt, threads=threads)
        for g in groups:
            out[g].append(res.latents[g][0].astype(np.float16))
    return {g: np.stack(v) for g, v in out.items()}


#: a coding worker's model and scenes, opened at its first chunk and kept for the next ones
_WORKER_OPEN: dict[tuple[str, str], tuple[RuntimeModel, object]] = {}


def _worker_chunk(folder: str, data: str, groups: list[str], tasks: list[str], augment: bool,
                  scenes: list[tuple[int, int, bool]]) -> dict[str, np.ndarray]:
    from ..data.torch_dataset import MultiTaskDataset

    if (folder, data) not in _WORKER_OPEN:
        _WORKER_OPEN[(folder, data)] = (RuntimeModel(folder), MultiTaskDataset(data, ("rgb",), train=False))
    # one thread each: the workers share the cores
    return _code_scenes(*_WORKER_OPEN[(folder, data)], groups, tasks, scenes, augment, threads=1)


def codec_latents(rt: RuntimeModel, ds, groups: list[str], qualities: np.ndarray, flips: np.ndarray,
                  progress: bool = False, workers: int = 0, augment: bool = False) -> dict[str, np.ndarray]:
    """Each scene's decoded latents (`EncodeResult.latents`) for `groups`, scene i coded at
    quality qualities[i], mirrored where flips[i]; float16 to keep 5000 scenes in memory.

    `workers` processes (0: one per core) code chunks of scenes side by side, each on one thread:
    the parameter graphs are small and serial, so one process leaves a core idle most of the time.
    The latents are the same whatever the number of threads (onnxruntime's convolutions split work
    by output, never a sum)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from tqdm import tqdm

    tasks = sorted({t for t, g in rt.serving.items() if g in groups}, key=TASKS.index)
    scenes = [(i, int(qualities[i]), bool(flips[i])) for i in range(len(ds))]
    workers = workers or usable_cores()
    # chunks small enough to share out evenly and to move the progress bar, large enough to cost
    # little in passing results back
    size = max(1, min(50, len(scenes) // (4 * workers)))
    chunks = [scenes[k:k + size] for k in range(0, len(scenes), size)]
    bar = tqdm(total=len(scenes), desc="latents", unit="scene", disable=not progress, leave=False)
    parts = []
    if workers <= 1 or len(chunks) == 1:
        for c in chunks:
            parts.append(_code_scenes(rt, ds, groups, tasks, c, augment))
            bar.update(len(c))
    else:
        code = partial(_worker_chunk, str(rt.folder), ds.path, groups, tasks, augment)
        # spawned, not forked: the parent holds torch's and onnxruntime's thread pools
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn")) as pool:
            for c, part in zip(chunks, pool.map(code, chunks)):
                parts.append(part)
                bar.update(len(c))
    bar.close()
    return {g: np.concatenate([p[g] for p in parts]) for g in groups}


def _cached_latents(path: Path, rt: RuntimeModel, ds, groups: list[str], qualities: np.ndarray,
                    flips: np.ndarray, log, progress: bool, workers: int = 0,
                    augment: bool = False) -> dict[str, np.ndarray]:
    """codec_latents, kept in `path` for a resumed run (valid for the same coding and draws: a model
    whose decoders this stage replaced codes, and caches, like its source)."""
    key = f"{rt.coding_id}:{len(ds)}:{qualities.tobytes().hex()[:64]}:{int(flips.sum())}" + (":aug" if augment else "")
    if path.exists():
        with np.load(path) as z:
            if str(z["key"]) == key and all(g in z.files for g in groups):
                return {g: z[g] for g in groups}
    t0 = time.time()
    lat = codec_latents(rt, ds, groups, qualities, flips, progress, workers, augment)
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(key), **lat)
    log(f"coded {len(ds)} scenes of {ds.size}² in {time.time() - t0:.0f} s -> {path.name}")
    return lat


# --------------------------------------------------------------------------- training

def scene_tasks(rt: RuntimeModel, fitted: list[str], scene_decoding: bool) -> frozenset[str]:
    """The tasks the fitted model decodes at scene scale: the source's, plus the fitted scene tasks
    (seg, depth, normal) when `scene_decoding`; a decoder not fitted keeps the scale it was fitted at."""
    new = {t for t in fitted if t in SCENE_TASKS} if scene_decoding else set()
    return frozenset(rt.scene_tasks - set(fitted) | new)


def _upsampled(pred: torch.Tensor, f: int, h: int, w: int) -> torch.Tensor:
    """The prediction at the picture's size, as the codec scales the output of a decoder that works at
    f (runtime.resample.upsample: bilinear, half-pixel centres)."""
    if f > 1:
        pred = F.interpolate(pred, scale_factor=f, mode="bilinear", align_corners=False)
    return pred[..., :h, :w]


class _Scales:
    """The scales each fitted decoder works at in the model stage 3 writes: (f_g, f_t), its
    group's analysis factor and the factor it decodes at (CONTRACT.md, scene scale)."""

    def __init__(self, rt: RuntimeModel, scene_tasks: frozenset[str]):
        self.rt = rt
        self.scene_tasks = scene_tasks
        self.size = rt.scene_size or DEFAULT_SCENE_SIZE

    def of(self, task: str, height: int, width: int) -> tuple[int, int]:
        fg = self.rt.factor(self.rt.serving[task], height, width)
        return fg, scene_factor(self.size, height, width) if task in self.scene_tasks else fg


class _Source:
    """A folder of scenes, the quality and mirroring each is coded with, and their latents."""

    def __init__(self, name: str, path: str, rt: RuntimeModel, groups: list[str], tasks: list[str],
                 scales: _Scales, cfg: DecoderStageConfig, cache: Path, draw, limit: int | None, log, progress: bool,
                 workers: int = 0, augment: bool = False):
        from ..data.torch_dataset import MultiTaskDataset

        self.name, self.path = name, path
        self.ds = MultiTaskDataset(path, train=False, limit=limit)
        self.qualities, self.flips = draw(len(self.ds))
        self.latents = _cached_latents(cache, rt, self.ds, groups, self.qualities, self.flips, log, progress, workers,
                                       augment)
        self.batch = max(1, round(cfg.batch_pixels / (self.ds.size * self.ds.size)))
        self.scales = {t: scales.of(t, self.ds.size, self.ds.size) for t in tasks}
        # where the source model's own decoders work: what "before" is measured at
        self.source_scales = {t: (fg, rt.task_factor(t, self.ds.size, self.ds.size))
                              for t, (fg, _) in self.scales.items()}
        for t, (fg, ft) in self.scales.items():
            side = self.latents[rt.serving[t]].shape[-1]
            if side % (ft // fg):
                raise TamcInputError(f"{path}: the {side}-wide latent of {rt.serving[t]} on {self.ds.size}² scenes "
                                     f"does not pool by {ft // fg} for {t}")

    def batch_at(self, idx: np.ndarray, tasks: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        items = [self.ds.sample(int(i), flip=bool(self.flips[i])) for i in idx]
        targets = {t: torch.stack([it[t] for it in items]) for t in tasks}
        lat = {g: torch.from_numpy(v[idx].astype(np.float32)) for g, v in self.latents.items()}
        return lat, targets


def _losses(decoders, serving, contexts: dict[str, list[str]], src: _Source, idx: np.ndarray,
            trivial: dict[str, float], grad: bool, bf16: bool = False, at_source: bool = False) -> dict[str, torch.Tensor]:
    from ..tasks.losses import task_loss

    lat, targets = src.batch_at(idx, list(decoders))
    out = {}
    with torch.set_grad_enabled(grad):
        for t, dec in decoders.items():
            fg, ft = (src.source_scales if at_source else src.scales)[t]
            y = targets[t]
            x = lat[serving[t]]
            if ft > fg:  # the codec's area downsampling (runtime.resample.downsample) of the latent
                x = F.avg_pool2d(x, ft // fg)
            ctx = [_on_grid(lat[a], x.shape[-2:]) for a in contexts[t]]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = dec(x, context=torch.cat(ctx, 1) if ctx else None)
            pred = _upsampled(pred.float(), ft, y.shape[-2], y.shape[-1])
            out[t] = task_loss(t, pred, y) / trivial[t]
    return out


def _validate(decoders, serving, contexts, sources: list[_Source], trivial,
              at_source: bool = False) -> tuple[dict[str, float], dict[str, dict]]:
    """Mean loss / trivial per task, each (folder, quality) weighing the same, and per source;
    `at_source`: each decoder at the scale the source model decodes it."""
    for d in decoders.values():
        d.eval()
    per_source = {}
    for src in sources:
        sums = {t: 0.0 for t in decoders}
        n = len(src.ds)
        for i in range(0, n, src.batch):
            idx = np.arange(i, min(n, i + src.batch))
            for t, v in _losses(decoders, serving, contexts, src, idx, trivial, grad=False, at_source=at_source).items():
                sums[t] += float(v) * len(idx)
        per_source[src.name] = {t: v / n for t, v in sums.items()}
    for d in decoders.values():
        d.train()
    mean = {t: float(np.mean([v[t] for v in per_source.values()])) for t in decoders}
    return mean, per_source


def _same_settings(saved: dict | None, cfg: DecoderStageConfig) -> bool:
    """Whether a checkpoint's settings are `cfg`'s, a setting it predates counting as its default
    (a run of an older tamc resumes rather than starting again)."""
    if not isinstance(saved, dict):
        return False
    defaults = {f.name: f.default for f in fields(DecoderStageConfig) if f.default is not MISSING}
    return {**defaults, **saved} == asdict(cfg)


def train_decoders(cfg: DecoderStageConfig, progress: bool = True, log=print,
                   workers: int = 0) -> tuple[dict, dict[str, TaskDecoder]]:
    """Fit the decoders; returns (record, {task: best decoder}). Resumes from OUT/checkpoint.pt.
    `workers`: processes coding the scenes (codec_latents; 0: one per core), never the results."""
    from tqdm import tqdm

    if cfg.precision not in PRECISIONS:
        raise TamcInputError(f"unknown precision {cfg.precision!r} (known: {', '.join(PRECISIONS)})")
    set_threads()
    seed_everything(cfg.seed)
    rt = RuntimeModel(cfg.model)
    tasks = cfg.tasks or [t for t in TASKS if t in rt.serving]
    unknown = [t for t in tasks if t not in rt.serving]
    if unknown:
        raise TamcInputError(f"the model does not serve {', '.join(unknown)}")
    pixel_tasks = [t for t in tasks if t not in SCENE_TASKS]
    if cfg.augment and pixel_tasks:
        raise TamcInputError(f"--augment changes the pixels that {', '.join(pixel_tasks)} labels are made of; "
                             "fit those decoders without it")
    trivial = rt.trivial_loss
    if not all(t in trivial for t in tasks):
        raise TamcModelError(f"{cfg.model}: no reference.json with trivial losses for this model; "
                             "the decoders' losses cannot be weighed")
    work = Path(cfg.out)
    work.mkdir(parents=True, exist_ok=True)
    contexts = {t: fitted_context(rt, t, cfg.context) for t in tasks}
    groups = sorted({rt.serving[t] for t in tasks} | {a for t in tasks for a in contexts[t]}, key=rt.order.index)
    rng = np.random.default_rng(cfg.seed)

    def random_draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(1, rt.qualities + 1, n), rng.random(n) < 0.5

    vq = cfg.val_qualities or sorted({min(3, rt.qualities), rt.qualities})
    if max(vq) > rt.qualities:
        raise TamcInputError(f"validation quality {max(vq)}: the model has qualities 1 to {rt.qualities}")
    scales = _Scales(rt, scene_tasks(rt, tasks, cfg.scene_decoding))
    sources = [_Source(Path(p).name, p, rt, groups, tasks, scales, cfg, work / f"latents_{k}_{Path(p).name}.npz",
                       random_draw, cfg.limit, log, progress, workers, cfg.augment) for k, p in enumerate(cfg.data)]
    # named "<folder> q<quality>" in the record
    val_sources = [_Source(f"{Path(p).name} q{q}", p, rt, groups, tasks, scales, cfg,
                           work / f"val_{k}_{Path(p).name}_q{q}.npz", lambda n, q=q: (np.full(n, q), np.zeros(n, bool)),
                           cfg.val_limit, log, progress, workers)
                   for k, p in enumerate(cfg.val) for q in vq]

    decoders = {}
    for t in tasks:
        dec = rebuild_decoder(rt, t).train()
        width = len(contexts[t]) * int(rt.manifest["latent_channels"])
        decoders[t] = dec if dec.cfg.context_channels == width else with_context(dec, width)
    params = [p for d in decoders.values() for p in d.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    ckpt_path = work / "checkpoint.pt"
    state = load_checkpoint(ckpt_path)
    start, history, elapsed = 0, [], 0.0
    if state is not None and _same_settings(state.get("config"), cfg):
        for t, d in decoders.items():
            d.load_state_dict(state["decoders"][t])
        opt.load_state_dict(state["opt"])
        start, history, elapsed = state["step"], state["history"], state["seconds"]
        best, best_state = state["best"], state["best_state"]
        log(f"resumed at step {start}")
    else:
        source, by_source = _validate(decoders, rt.serving, contexts, val_sources, trivial, at_source=True)
        history.append({"step": "source", "val": source, "by_source": by_source})
        first, by_source = _validate(decoders, rt.serving, contexts, val_sources, trivial)
        history.append({"step": 0, "val": first, "by_source": by_source})
        best = dict(first)
        best_state = {t: {k: v.clone() for k, v in d.state_dict().items()} for t, d in decoders.items()}
    t0 = time.time() - elapsed
    bar = tqdm(total=cfg.steps, initial=start, desc="decoders", unit="step", disable=not progress)
    running: dict[str, float] = {}
    for step in range(start + 1, cfg.steps + 1):
        src = sources[(step - 1) % len(sources)]
        draw = np.random.default_rng([cfg.seed, step])
        idx = draw.integers(0, len(src.ds), src.batch)
        losses = _losses(decoders, rt.serving, contexts, src, idx, trivial, grad=True, bf16=cfg.precision == "bf16")
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(cfg.lr, step - 1, cfg.steps, warmup=max(1, cfg.steps // 20))
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
        for t, v in losses.items():
            running[t] = 0.95 * running.get(t, v.item()) + 0.05 * v.item()
        bar.update(1)
        bar.set_postfix({t[:4]: f"{v:.3f}" for t, v in running.items()})
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val, by_source = _validate(decoders, rt.serving, contexts, val_sources, trivial)
            history.append({"step": step, "val": val, "by_source": by_source})
            for t, v in val.items():
                if v < best[t]:
                    best[t] = v
                    best_state[t] = {k: x.clone() for k, x in decoders[t].state_dict().items()}
            log(f"step {step}: validation loss / trivial " + ", ".join(f"{t} {v:.3f}" for t, v in val.items()))
            save_checkpoint(ckpt_path, {"config": asdict(cfg), "step": step, "history": history,
                                        "seconds": time.time() - t0, "best": best, "best_state": best_state,
                                        "decoders": {t: d.state_dict() for t, d in decoders.items()},
                                        "opt": opt.state_dict()})
    bar.close()
    for t, d in decoders.items():
        d.load_state_dict(best_state[t])
        d.eval()
    before = history[0]["val"]
    record = {
        "schema": "tamc.decoders/1",
        "config": asdict(cfg),
        "source_model": rt.id,
        "scene_tasks": sorted(scales.scene_tasks, key=TASKS.index),
        "scene_size": scales.size,
        "context": contexts,
        "val_qualities": vq,
        "val": [{"path": s.path, "scenes": len(s.ds), "size": s.ds.size} for s in val_sources[::len(vq)]],
        "seconds": round(time.time() - t0, 1),
        "sources": [{"path": s.path, "scenes": len(s.ds), "size": s.ds.size, "batch": s.batch} for s in sources],
        "history": history,
        "before": before,
        "after": best,
        "best_step": {t: next(h["step"] for h in history[1:] if h["val"][t] == best[t]) for t in tasks},
    }
    write_json(work / "decoders.json", record)
    return record, decoders


__all__ = ["DecoderStageConfig", "train_decoders", "rebuild_decoder", "codec_latents"]
