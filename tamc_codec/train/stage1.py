"""Stage 1: group encoders and task decoders trained on the task losses alone (no rate).

The result is also the **anchor**: the same network on uncompressed images, whose
losses the compressed model must approach and which the benchmarks run on
JPEG/WebP/AVIF-decoded images.

Each task's loss is divided by the loss of the trivial predictor (the per-pixel
mean label of the training set, evaluated on validation images), so that tasks in
different units weigh alike and "loss < 0.5" reads "halves the trivial loss".
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..contract import TASKS, group_tasks, sort_tasks
from ..data.torch_dataset import MultiTaskDataset, StepBatches, step_batches
from ..errors import TamcInputError
from ..nets.multitask import MultiGroupModel, NetConfig, count_parameters
from ..tasks.losses import task_loss
from . import PRECISIONS
from .anchor import load_anchor
from .common import (cpu_state_dict, git_commit, init_distributed, load_checkpoint, save_checkpoint,
                     seed_everything, set_threads, warmup_cosine_lr, write_json)
from .device import hardware, model_device, to_device, training_device
from .evaluation import evaluate, mean_maps, ordered_batches, trivial_losses
from .views import training_views

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


# --------------------------------------------------------------------------- serving


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
    for b in ordered_batches(val, batch):
        for g, y in model.encode(b["image"].to(device), model.coded_groups).items():
            parts[g].append(y.float().cpu().numpy())
    arrays = {g: np.concatenate(v).astype(np.float32) for g, v in parts.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


# --------------------------------------------------------------------------- training

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


__all__ = ["Stage1Config", "train_stage1", "choose_serving", "dump_latents", "TASKS"]
