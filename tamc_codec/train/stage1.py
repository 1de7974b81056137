"""Stage 1: group encoders and task decoders trained on the task losses alone (no rate).

The result is also the **anchor**: the same network on uncompressed images, whose
losses the compressed model must approach and which the benchmarks run on
JPEG/WebP/AVIF-decoded images.

Each task's loss is divided by the loss of the trivial predictor (the per-pixel
mean label of the training set, evaluated on validation images), so that tasks in
different units weigh alike and "loss < 0.5" reads "halves the trivial loss".
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..contract import TASKS, group_tasks, sort_tasks
from ..data.torch_dataset import MultiTaskDataset, StepBatches, collate, step_batches
from ..errors import TamcInputError, TamcModelError
from ..nets.multitask import MultiGroupModel, NetConfig, count_parameters
from ..runtime.model import RuntimeModel
from ..tasks import metrics as M
from ..tasks.losses import task_loss
from ..tasks.registry import TASK_SPECS
from . import PRECISIONS, VIEWS
from .common import (Dist, cpu_state_dict, git_commit, init_distributed, load_checkpoint, save_checkpoint,
                     seed_everything, set_threads, warmup_cosine_lr, write_json)

CHECKPOINT = "checkpoint.pt"
RECORD = "stage1.json"
LATENTS = "latents.npz"


@dataclass
class Stage1Config:
    data: str
    val: str
    groups: list[str]
    out: str
    steps: int = 6000
    batch: int = 8
    crop: int = 128
    # "crop": random crops of side `crop` at the scenes' own scale. "mix": every other
    # batch is whole scenes area-downsampled to side `crop` instead, so the networks also
    # see entire rooms (absolute depth and layout are out of view in a crop) and a second
    # scale (docs/TRAINING.md, probes). "rooms": as "mix", and one more source of whole scenes
    # at their own scale (batches of as many pixels, so fewer scenes): the view the codec's
    # decoders meet in use. Only it shows depth a whole room at the pixel scale it is asked
    # about; decoders fitted to it gained most on depth (docs/TRAINING.md, stage 3).
    views: str = "crop"
    # A folder of training scenes rendered larger (512² where `data` is 256²): its random crops
    # join the views as one more source, so that training sees rooms at the pixel scale of large
    # pictures. Without it a 512² test scene is a scale no batch ever showed; the anchor's seg,
    # depth and normal losses there were those of its 256² validation only after downsampling
    # (benchmarks/anchor_scale.py, docs/TRAINING.md).
    large_data: str | None = None
    # Side of the crops of large_data's scenes (default: `crop`). Larger crops show more of a
    # room at the large pictures' scale; their batches hold fewer crops (StepBatches), so a step
    # costs the same.
    large_crop: int | None = None
    # Start from another stage-1 run's anchor.pt (same groups and networks) instead of random
    # weights: a fine-tune with its own optimiser and learning-rate schedule.
    init: str | None = None
    lr: float = 2e-3
    warmup: int = 200
    seed: int = 0
    eval_every: int = 1000
    ckpt_every: int = 200
    val_limit: int | None = None
    trivial_samples: int = 256
    net: dict = field(default_factory=lambda: NetConfig().to_dict())
    grouping_file: str | None = None
    lookahead_assignment: dict | None = None
    # For the first `shared_warmup` steps every group's encoder is one encoder (same start,
    # gradients summed over all groups' tasks), then each goes on alone. A group whose tasks
    # are all geometric otherwise learns its features from depth and normal only: in the
    # previous recipe its encoder served normal at 0.90 of trivial where the large group's,
    # also pushed by rgb and edge, reached 0.59 (docs/TRAINING.md).
    shared_warmup: int = 0
    # "bf16": forward and backward under bfloat16 autocast (weights, optimiser and losses
    # stay float32); about 1.6x faster on CPUs with AVX-512 BF16, so more steps fit the budget.
    precision: str = "fp32"
    # "cpu" or "cuda". Neither this nor `workers` changes the batches a step sees
    # (data.torch_dataset.StepBatches), only where and how fast they are computed.
    device: str = "cpu"
    workers: int = 0


# --------------------------------------------------------------------------- trivial predictor


def mean_maps(ds: MultiTaskDataset, tasks: list[str], limit: int) -> dict[str, torch.Tensor]:
    """Per-pixel mean label over up to `limit` training scenes (class frequencies for seg)."""
    n = min(limit, len(ds))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    for i in range(n):
        s = ds.sample(i)
        for t in tasks:
            v = s[t]
            if t == "seg":
                v = torch.nn.functional.one_hot(v, TASK_SPECS["seg"].channels).permute(2, 0, 1).float()
                w = torch.ones_like(v[:1])
            else:
                w = torch.isfinite(v[:1]).float()
                v = torch.nan_to_num(v)
            sums[t] = sums.get(t, 0) + v * w
            counts[t] = counts.get(t, 0) + w
    out = {}
    for t in tasks:
        m = sums[t] / counts[t].clamp(min=1)
        if t == "seg":
            m = torch.log(m.clamp(min=1e-4))  # as logits: softmax gives back the frequencies
        out[t] = m
    return out


def trivial_losses(maps: dict[str, torch.Tensor], val: MultiTaskDataset, batch: int = 8) -> dict[str, float]:
    totals = {t: 0.0 for t in maps}
    n = 0
    for items in _batches(val, batch):
        b = items
        k = b["image"].shape[0]
        for t, m in maps.items():
            totals[t] += float(task_loss(t, m.expand(k, *m.shape), b[t])) * k
        n += k
    return {t: v / n for t, v in totals.items()}


def _batches(ds: MultiTaskDataset, batch: int):
    for start in range(0, len(ds), batch):
        yield collate([ds.sample(i) for i in range(start, min(start + batch, len(ds)))])


# --------------------------------------------------------------------------- evaluation


class TaskMetrics:
    """Human metrics (CONTRACT units) of one task's predictions against normalised targets."""

    def __init__(self, task: str):
        self.task = task
        self.acc = {"seg": M.SegIoU, "depth": M.DepthError, "normal": M.AngularError,
                    "edge": M.MeanAbs, "keypoint": M.MeanAbs}.get(task, lambda: None)()
        self.psnr_sum = 0.0
        self.n = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        spec = TASK_SPECS[self.task]
        p, t = pred.detach().float().cpu().numpy(), target.detach().cpu().numpy()
        for i in range(len(p)):
            if self.task == "seg":
                self.acc.update(p[i].argmax(0), t[i])
            elif self.task == "depth":
                valid = np.isfinite(t[i][0])
                gt = np.nan_to_num(t[i][0]) * spec.scale + spec.offset
                self.acc.update(p[i][0] * spec.scale + spec.offset, gt, valid)
            elif self.task == "normal":
                valid = np.isfinite(t[i][0])
                self.acc.update(np.moveaxis(p[i], 0, -1), np.nan_to_num(np.moveaxis(t[i], 0, -1)), valid)
            elif self.task in ("edge", "keypoint"):
                self.acc.update(np.maximum(p[i][0] * spec.scale + spec.offset, 0), t[i][0] * spec.scale + spec.offset)
            else:
                self.psnr_sum += M.psnr(np.clip(p[i], 0, 1) * 255.0, t[i] * 255.0)
                self.n += 1

    def result(self) -> dict[str, float]:
        if self.task == "seg":
            return {"miou": self.acc.result()}
        if self.task == "depth":
            return self.acc.result()
        if self.task == "normal":
            return {"angular_error_deg": self.acc.result()}
        if self.task in ("edge", "keypoint"):
            return {"l1": self.acc.result()}
        return {"psnr_db": self.psnr_sum / max(self.n, 1)}


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: MultiGroupModel, val: MultiTaskDataset, trivial: dict[str, float], batch: int = 8) -> dict:
    """Validation losses of every (group, task) pair, normalised by the trivial loss, and metrics."""
    was_training = model.training
    model.eval()
    sums: dict[tuple[str, str], float] = {}
    mets = {(g, t): TaskMetrics(t) for g in model.groups for t in group_tasks(g)}
    n = 0
    device = model_device(model)
    for b in _batches(val, batch):
        b = to_device(b, device)
        k = b["image"].shape[0]
        preds = model(b["image"])
        for (g, t), p in preds.items():
            sums[(g, t)] = sums.get((g, t), 0.0) + float(task_loss(t, p, b[t])) * k
            mets[(g, t)].update(p, b[t])
        n += k
    model.train(was_training)
    per_pair = {}
    for (g, t), s in sums.items():
        raw = s / n
        per_pair.setdefault(g, {})[t] = {"loss": raw, "normalised": raw / trivial[t], **mets[(g, t)].result()}
    return per_pair


def choose_serving(per_pair: dict) -> dict[str, str]:
    """Serve each task from the group whose decoder for it has the lowest validation loss."""
    best: dict[str, tuple[float, str]] = {}
    for g, tasks in per_pair.items():
        for t, r in tasks.items():
            if t not in best or (r["normalised"], g) < best[t]:
                best[t] = (r["normalised"], g)
    return {t: best[t][1] for t in sort_tasks(best)}


# --------------------------------------------------------------------------- latents


@torch.no_grad()
def dump_latents(model: MultiGroupModel, val: MultiTaskDataset, path: Path, batch: int = 8) -> None:
    """The coded groups' latents of the validation images, {group_id: float32[N, C, h, w]}
    (CONTRACT.md). Groups that serve no task are left out: they are not coded, so the
    DAG is built without them."""
    from ..atomic import atomic_path

    model.eval()
    parts: dict[str, list[np.ndarray]] = {g: [] for g in model.coded_groups}
    device = model_device(model)
    for b in _batches(val, batch):
        for g, y in model.encode(b["image"].to(device), model.coded_groups).items():
            parts[g].append(y.float().cpu().numpy())
    arrays = {g: np.concatenate(v).astype(np.float32) for g, v in parts.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


# --------------------------------------------------------------------------- training

def training_views(crops: MultiTaskDataset, data: str, views: str,
                   large_data: str | None = None, large_crop: int | None = None) -> list[MultiTaskDataset]:
    """The datasets that training batches alternate between (Stage1Config.views, large_data
    and large_crop); `crops` is the training folder `data` read as random crops."""
    if views not in VIEWS:
        raise TamcInputError(f"unknown views {views!r} (known: {', '.join(VIEWS)})")
    sources = [crops]
    crop = crops.crop
    if views in ("mix", "rooms"):
        if crop is None or crop >= crops.size or crops.size % crop:
            raise TamcInputError(f"--views {views} needs a crop that divides the scene size ({crops.size}) "
                                 f"into whole scenes at a smaller scale; got --crop {crop}")
        sources.append(MultiTaskDataset(data, crops.tasks, crop=None, train=True, downsample=crops.size // crop))
    if views == "rooms":
        sources.append(MultiTaskDataset(data, crops.tasks, crop=None, train=True))
    if large_crop is not None and large_data is None:
        raise TamcInputError("--large-crop is the crop of --large-data's scenes; give --large-data too")
    if large_data is not None:
        large_side = large_crop or crop
        large = MultiTaskDataset(large_data, crops.tasks, train=True)
        if large.size <= crops.size:
            raise TamcInputError(f"--large-data scenes ({large.size}²) must be larger than --data's "
                                 f"({crops.size}²): they add the scale of larger pictures")
        if large_side is not None and not 0 < large_side <= large.size:
            raise TamcInputError(f"--large-crop {large_side} does not fit --large-data's scenes ({large.size}²)")
        large.crop = large_side
        sources.append(large)
    return sources



def train_stage1(cfg: Stage1Config, *, progress: bool = True, log=print, stop_after: int | None = None,
                 max_minutes: float | None = None) -> dict:
    """Train (or resume) stage 1; returns the record written to OUT/stage1.json.

    stop_after / max_minutes end this invocation early (after a checkpoint) so that
    a long recipe runs in resumable pieces; the record is written only at the end.
    """
    dist_info = init_distributed()
    set_threads()
    out = Path(cfg.out)
    tasks = sort_tasks({t for g in cfg.groups for t in group_tasks(g)})
    if not cfg.groups:
        raise TamcInputError("no groups to train")
    if cfg.init is not None and not Path(cfg.init).is_file():
        raise TamcInputError(f"--init {cfg.init}: no such file")
    if cfg.init is not None and cfg.shared_warmup > 0:
        raise TamcInputError("--init starts from trained encoders: a shared warm-up would tie them again")
    seed_everything(cfg.seed)
    train_ds = MultiTaskDataset(cfg.data, tasks, crop=cfg.crop, train=True)
    val_ds = MultiTaskDataset(cfg.val, tasks, train=False, limit=cfg.val_limit)
    if train_ds.size < cfg.crop:
        raise TamcInputError(f"--crop {cfg.crop} is larger than the training images ({train_ds.size})")
    sources = training_views(train_ds, cfg.data, cfg.views, cfg.large_data, cfg.large_crop)
    large = sources[-1] if cfg.large_data else None  # training_views puts the larger scenes last

    if cfg.precision not in PRECISIONS:
        raise TamcInputError(f"unknown precision {cfg.precision!r} (known: {', '.join(PRECISIONS)})")
    device = training_device(cfg.device, dist_info)
    model = MultiGroupModel(cfg.groups, NetConfig.from_dict(cfg.net))
    if cfg.shared_warmup > 0:
        tie_encoders(model)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step = 0
    elapsed = 0.0
    history: list[dict] = []
    timing = {"data_s": 0.0, "compute_s": 0.0, "eval_s": 0.0}
    state = load_checkpoint(out / CHECKPOINT)
    if state is not None:
        same_net = NetConfig.from_dict(state["config"]["net"]).to_dict() == NetConfig.from_dict(cfg.net).to_dict()
        if (state["config"]["groups"] != cfg.groups or not same_net
                or state["config"].get("shared_warmup", 0) != cfg.shared_warmup):
            raise TamcInputError(f"{out / CHECKPOINT} is from a run with other groups, networks or warm-up; "
                                 "use another --out")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, elapsed, history, timing = state["step"], state["elapsed"], state["history"], state["timing"]
        trivial = state["trivial"]
        if dist_info.main:
            log(f"resumed from step {step}")
    else:
        trivial = trivial_losses(mean_maps(train_ds, tasks, cfg.trivial_samples), val_ds)
        if cfg.init is not None:
            init_from_anchor(model, cfg.init)

    net: torch.nn.Module = model
    if dist_info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    bar = None
    if progress and dist_info.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", desc="stage1", dynamic_ncols=True)
    ema: dict[str, float] = {}
    model.train()
    t_start = time.perf_counter() - elapsed
    session_start = time.perf_counter()
    stopped_early = False
    batch_plan = StepBatches(sources, cfg.batch, cfg.seed, dist_info.rank)
    batches = step_batches(batch_plan, step, cfg.steps,
                           cfg.workers, pin_memory=device.type == "cuda")
    while step < cfg.steps:
        if (stop_after is not None and step >= stop_after) or (
                max_minutes is not None and time.perf_counter() - session_start > 60 * max_minutes):
            stopped_early = True
            break
        t0 = time.perf_counter()
        b = to_device(next(batches), device)
        t1 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = warmup_cosine_lr(cfg.lr, step, cfg.steps, cfg.warmup)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            preds = net(b["image"], b["origin"])
        losses = {}
        total = 0.0
        for (g, t), p in preds.items():
            l = task_loss(t, p.float(), b[t]) / trivial[t]
            losses[(g, t)] = l
            total = total + l
        opt.zero_grad(set_to_none=True)
        total.backward()
        if step < cfg.shared_warmup:
            sum_encoder_grads(model)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        # one host-device sync per step, not one per loss; before the clock is read, so that on a
        # GPU the step's queued work counts as compute, not as the next step's data wait
        values = torch.stack([l.detach() for l in losses.values()]).tolist()
        t2 = time.perf_counter()
        timing["data_s"] += t1 - t0
        timing["compute_s"] += t2 - t1
        for (g, t), v in zip(losses, values):
            ema[t] = 0.95 * ema.get(t, v) + 0.05 * v
        if bar:
            bar.update(1)
            bar.set_postfix({t[:4]: f"{v:.3f}" for t, v in ema.items()}, refresh=False)
        last = step == cfg.steps
        if dist_info.main and (step % cfg.eval_every == 0 or last):
            te = time.perf_counter()
            per_pair = evaluate(model, val_ds, trivial)
            timing["eval_s"] += time.perf_counter() - te
            history.append({"step": step, "val": per_pair})
        pause = (stop_after is not None and step >= stop_after) or (
            max_minutes is not None and time.perf_counter() - session_start > 60 * max_minutes)
        if dist_info.main and (step % cfg.ckpt_every == 0 or last or pause):
            save_checkpoint(out / CHECKPOINT, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state(),
                "elapsed": time.perf_counter() - t_start, "history": history, "timing": timing,
                "trivial": trivial, "config": asdict(cfg),
            })
    if bar:
        bar.close()
    elapsed = time.perf_counter() - t_start
    if stopped_early:
        if dist_info.main:
            log(f"paused at step {step} of {cfg.steps}; run the same command again to continue")
        return {"paused": True, "steps": step}
    in_sync = _ranks_in_sync(model) if dist_info.world > 1 else None
    record: dict = {}
    if dist_info.main:
        final = history[-1]["val"] if history and history[-1]["step"] == step else evaluate(model, val_ds, trivial)
        serving = choose_serving(final)
        model.serving = serving
        # in images of the crop's size: a step of larger crops holds as many pixels (StepBatches)
        images = step * cfg.batch * dist_info.world
        record = {
            "schema": "tamc.stage1/1",
            "config": asdict(cfg),
            "groups": model.groups,
            "serving": serving,
            "coded_groups": model.coded_groups,
            "lookahead_assignment": cfg.lookahead_assignment,
            # what the card says of the larger scenes (the folder path alone may not exist where it is read)
            "large_data": ({"scenes": len(large), "size": large.size, "first_seed": large.first_seed,
                            "crop": large.crop, "batch": batch_plan.batch_sizes[-1]}
                           if large is not None else None),
            "trivial_loss": trivial,
            "val": final,
            "served": {t: final[g][t] for t, g in serving.items()},
            "history": [{"step": h["step"], "normalised": {f"{g}/{t}": r["normalised"] for g, ts in h["val"].items()
                                                           for t, r in ts.items()}} for h in history],
            "parameters": count_parameters(model),
            "steps": step,
            "seconds": round(elapsed, 1),
            "images_per_s": round(images / max(timing["data_s"] + timing["compute_s"], 1e-9), 2),
            "time_split_s": {k: round(v, 1) for k, v in timing.items()},
            "world_size": dist_info.world,
            "ranks_in_sync": in_sync,
            "threads": torch.get_num_threads(),
            "hardware": hardware(device),
            "git_commit": git_commit(),
        }
        torch.save({"model": cpu_state_dict(model), "describe": model.describe(), "trivial": trivial},
                   out / "anchor.pt.tmp")
        (out / "anchor.pt.tmp").replace(out / "anchor.pt")
        dump_latents(model, val_ds, out / LATENTS)
        write_json(out / RECORD, record)
    return record


def init_from_anchor(model: MultiGroupModel, path: str) -> None:
    """Load another run's anchor.pt into `model`, which must have its groups and networks."""
    source = load_anchor(path)
    if source.groups != model.groups or source.cfg.to_dict() != model.cfg.to_dict():
        raise TamcInputError(f"--init {path} has other groups or networks than this run")
    model.load_state_dict(source.state_dict())


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


def tie_encoders(model: MultiGroupModel) -> None:
    """Give every group's encoder the first one's weights (the start of a shared warm-up)."""
    first = next(iter(model.encoders.values())).state_dict()
    for enc in model.encoders.values():
        enc.load_state_dict(first)


def sum_encoder_grads(model: MultiGroupModel) -> None:
    """Set each encoder's gradient to the sum over all encoders. From equal weights and equal
    optimiser states this keeps the encoders equal: one encoder trained on every group's tasks."""
    encoders = list(model.encoders.values())
    for params in zip(*(e.parameters() for e in encoders)):
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            continue
        total = torch.stack(grads).sum(0)
        for p in params:
            p.grad = total.clone()


def _ranks_in_sync(model: torch.nn.Module) -> bool:
    """Whether every rank ended with bit-identical parameters (DDP keeps them so)."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    mine = torch.tensor([float(flat.double().sum()), float((flat.double() ** 2).sum())], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)


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


__all__ = ["Stage1Config", "train_stage1", "evaluate", "choose_serving", "dump_latents", "load_anchor", "anchor_trivial",
           "TASKS"]
