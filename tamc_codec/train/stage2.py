"""Stage 2: entropy models along the DAG, then rate-distortion fine-tuning of everything.

Phase A trains the entropy models and the per-quality gains with the stage-1
encoders and decoders frozen; phase B unfreezes everything. Both minimise, for a
quality q drawn per step, λ_q · Σ_t D_t / D_t(trivial) + bits per pixel, over the
tasks each group serves (paper Eq. 5 with the DAG's cross-task context, Eqs. 11-13).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..contract import SCENE_TASKS, group_tasks
from ..data.torch_dataset import MultiTaskDataset, StepBatches, collate, step_batches
from ..errors import TamcInputError
from ..nets.entropy_model import GroupEntropyModel
from ..nets.multitask import MultiGroupModel, count_parameters
from ..runtime.manifest import DEFAULT_PARENT_INPUT, PARENT_INPUTS
from ..tasks.losses import task_loss
from . import DEFAULT_GAIN_RANGE, DEFAULT_LAMBDAS
from .anchor import anchor_trivial, load_anchor
from .common import (Dist, cpu_state_dict, git_commit, load_checkpoint, save_checkpoint, seed_everything,
                     set_threads, write_json)
from .device import hardware, model_device, to_device, training_device
from .evaluation import TaskMetrics
from .photometric import PIXEL_TASKS, photometric_batch, pixel_labels
from .views import training_views

CHECKPOINT = "checkpoint.pt"
RECORD = "stage2.json"


@dataclass
class Stage2Config:
    anchor: str
    dag: str
    data: str
    val: str
    out: str
    lambdas: list[float] = field(default_factory=lambda: list(DEFAULT_LAMBDAS))
    steps_entropy: int = 2000
    steps_finetune: int = 2000
    batch: int = 8
    crop: int = 128
    views: str = "crop"  # as Stage1Config.views and .large_data: fine-tuning sees what stage 1 saw
    large_data: str | None = None
    large_crop: int | None = None
    lr: float = 1e-3
    lr_finetune: float = 2e-4
    seed: int = 0
    use_global: bool = False
    hyper_channels: int = 32
    no_parents: bool = False
    val_limit: int | None = None
    ckpt_every: int = 200
    # initial gain of quality 1 and Q, per unit of each latent channel's std, so the step is
    # std / gain (GroupEntropyModel.init_gains): 0.2 codes most elements as zero, 12 finely
    gain_range: tuple[float, float] = DEFAULT_GAIN_RANGE
    parent_input: str = DEFAULT_PARENT_INPUT  # CodecModel.parent_input
    device: str = "cpu"  # as Stage1Config.device and .workers: the batches do not depend on them
    workers: int = 0
    # the encoders of groups that serve only scene tasks (seg, depth, normal) see each training picture
    # under a random photometric change (as stage 3's --augment); the others see it as it is, since
    # edge, keypoint and rgb labels are made of its pixels
    augment: bool = False
    # with `augment`, the groups serving edge or rgb (besides scene tasks) see the changed picture too, those
    # targets made again from it (photometric.pixel_labels): shared groups' encoders learn the change as well.
    # Groups serving keypoint never do (augmented_groups)
    augment_pixels: bool = False


class CodecModel(nn.Module):
    """The stage-1 network plus one entropy model per group, wired by the DAG."""

    def __init__(self, base: MultiGroupModel, parents: dict[str, str | None], order: list[str], qualities: int,
                 hyper_channels: int = 32, use_global: bool = False, parent_input: str = DEFAULT_PARENT_INPUT):
        super().__init__()
        if parent_input not in PARENT_INPUTS:
            raise ValueError(f"parent_input must be one of {PARENT_INPUTS}, got {parent_input!r}")
        # What a child's entropy model sees of its parent: "dequantised" ŷ·inv_gain (the scale of
        # the latent, the same at every quality) or "quantised" ŷ (the scale of the quantisation
        # grid, which moves with the quality as the child's own grid does). docs/TRAINING.md.
        self.parent_input = parent_input
        self.base = base
        self.order = list(order)
        self.parents = {g: parents.get(g) for g in self.order}
        c = base.cfg.latent_channels
        self.entropy = nn.ModuleDict({
            g.replace("+", "_"): GroupEntropyModel(c, c if self.parents[g] else None, qualities, hyper_channels,
                                                   use_global)
            for g in self.order
        })
        self.qualities = qualities

    def em(self, g: str) -> GroupEntropyModel:
        return self.entropy[g.replace("+", "_")]

    def forward(self, image: torch.Tensor, q: torch.Tensor, tasks: dict[str, list[str]] | None = None,
                origin: torch.Tensor | None = None, changed_image: torch.Tensor | None = None,
                changed_groups: Sequence[str] = ()) -> dict:
        """Predictions of each group's served tasks and the bits of every layer.

        `origin`: where training crops sit in their scenes (nets.multitask.coord_grid). `changed_image`:
        what `changed_groups` analyse instead of `image` (Stage2Config.augment, augmented_groups)."""
        changed = list(changed_groups) if changed_image is not None else []
        plain = [g for g in self.order if g not in changed]
        # encode() reads an empty list as "every group": with every group changed, skip it
        latents = self.base.encode(image, plain, origin) if plain else {}
        if changed:
            latents.update(self.base.encode(changed_image, changed, origin))
        context: dict[str, torch.Tensor] = {}
        bits = {}
        preds = {}
        for g in self.order:
            p = self.parents[g]
            out = self.em(g)(latents[g], q, context[p].detach() if p else None)
            context[g] = out["y_hat"] if self.parent_input == "quantised" else out["y_dec"]
            bits[g] = out["bits_y"] + out["bits_z"]
            for t in (tasks or {}).get(g, []):
                preds[(g, t)] = self.base.decode(g, t, out["y_dec"], origin)
        return {"preds": preds, "bits": bits}


@torch.no_grad()
def init_gains_from_data(model: CodecModel, ds: MultiTaskDataset, rng: np.random.Generator, batch: int,
                         gain_range: tuple[float, float], batches: int = 12) -> None:
    """Scale every group's initial gains to its stage-1 latent's per-channel spread."""
    model.base.eval()
    chunks: dict[str, list[torch.Tensor]] = {g: [] for g in model.order}
    device = model_device(model)
    for _ in range(batches):
        b = to_device(ds.random_batch(rng, batch), device)
        latents = model.base.encode(b["image"], model.order, b["origin"])
        for g, y in latents.items():
            chunks[g].append(y.transpose(0, 1).flatten(1))
    for g in model.order:
        model.em(g).init_gains(torch.cat(chunks[g], dim=1).std(dim=1), *gain_range)


#: pixel-made tasks whose labels are cheap to make again during training (photometric.pixel_labels);
#: keypoint's filter takes longer than a training step (0.7 s a 256² picture on two cores)
RELABELLED_TASKS = ("edge", "rgb")


def augmented_groups(base: MultiGroupModel, pixels: bool) -> list[str]:
    """Coded groups that see stage 2's changed pictures (Stage2Config.augment): those serving only scene
    tasks; with `pixels`, every group whose served tasks are scene tasks or can be labelled again."""
    allowed = set(SCENE_TASKS) | (set(RELABELLED_TASKS) if pixels else set())
    return [g for g, ts in served_tasks(base).items() if ts and set(ts) <= allowed]


def served_tasks(base: MultiGroupModel) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {g: [] for g in base.coded_groups}
    for t, g in base.serving.items():
        out[g].append(t)
    return out


def load_dag(path: str | Path, groups: list[str], no_parents: bool = False) -> tuple[dict, list[str]]:
    """Parents and coding order of the model's groups from a validated dag.json."""
    from ..dag.dag import load_dag_json

    d = load_dag_json(path)
    if sorted(d["order"]) != sorted(groups):
        raise TamcInputError(f"{path}: its groups {sorted(d['order'])} differ from the model's coded groups "
                             f"{sorted(groups)} (groups that serve no task are not coded)")
    parents = {g: None if no_parents else d["parents"][g] for g in groups}
    return parents, list(d["order"])


@torch.no_grad()
def evaluate_rd(model: CodecModel, val: MultiTaskDataset, trivial: dict[str, float], batch: int = 8) -> list[dict]:
    """Per quality: bits per pixel of each layer and of all, and the served tasks' losses."""
    model.eval()
    tasks = served_tasks(model.base)
    results = []
    for qi in range(model.qualities):
        bits = {g: 0.0 for g in model.order}
        loss = {t: 0.0 for ts in tasks.values() for t in ts}
        mets = {t: TaskMetrics(t) for t in loss}
        pixels = 0
        n = 0
        device = model_device(model)
        for start in range(0, len(val), batch):
            b = to_device(collate([val.sample(i) for i in range(start, min(start + batch, len(val)))]), device)
            k = b["image"].shape[0]
            out = model(b["image"], torch.full((k,), qi, dtype=torch.long, device=device), tasks)
            for g, v in out["bits"].items():
                bits[g] += float(v.sum())
            for (g, t), p in out["preds"].items():
                loss[t] += float(task_loss(t, p, b[t])) * k
                mets[t].update(p, b[t])
            pixels += k * b["image"].shape[-1] * b["image"].shape[-2]
            n += k
        results.append({
            "quality": qi + 1,
            "bpp": {g: v / pixels for g, v in bits.items()},
            "bpp_total": sum(bits.values()) / pixels,
            "tasks": {t: {"loss": v / n, "normalised": v / n / trivial[t], **mets[t].result()} for t, v in loss.items()},
        })
    model.train()
    return results


def train_stage2(cfg: Stage2Config, *, progress: bool = True, log=print, stop_after: int | None = None) -> dict:
    if cfg.augment_pixels and not cfg.augment:
        raise TamcInputError("augment-pixels (--experimental augment-pixels=1) needs --augment: it says who sees "
                              "the changed pictures")
    set_threads()
    seed_everything(cfg.seed)
    out = Path(cfg.out)
    base = load_anchor(cfg.anchor, cfg.seed)
    trivial = anchor_trivial(cfg.anchor)
    parents, order = load_dag(cfg.dag, base.coded_groups, cfg.no_parents)
    q_count = len(cfg.lambdas)
    device = training_device(cfg.device, Dist())
    model = CodecModel(base, parents, order, q_count, cfg.hyper_channels, cfg.use_global, cfg.parent_input).to(device)
    tasks = served_tasks(base)
    changed = augmented_groups(base, cfg.augment_pixels)
    needed = sorted({t for ts in tasks.values() for t in ts})
    train_ds = MultiTaskDataset(cfg.data, needed, crop=cfg.crop, train=True)
    sources = training_views(train_ds, cfg.data, cfg.views, cfg.large_data, cfg.large_crop)
    val_ds = MultiTaskDataset(cfg.val, needed, train=False, limit=cfg.val_limit)
    lambdas = torch.tensor(cfg.lambdas, device=device)

    def optimisers(phase: str):
        main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")
                and (phase == "finetune" or n.startswith("entropy."))]
        aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
        lr = cfg.lr if phase == "entropy" else cfg.lr_finetune
        return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=1e-3)

    total_steps = cfg.steps_entropy + cfg.steps_finetune
    rng = np.random.default_rng([cfg.seed, 2])
    step = 0
    history: list[dict] = []
    t_start = time.perf_counter()
    phase = "entropy"
    opt, aux_opt = optimisers(phase)
    state = load_checkpoint(out / CHECKPOINT)
    if state is not None:
        model.load_state_dict(state["model"])
        step, history = state["step"], state["history"]
        # the phase whose optimiser was saved: a checkpoint taken on the last entropy step holds the
        # entropy phase's, and the loop below moves on to fine-tuning with a fresh one, as without a pause
        phase = state.get("phase", "entropy" if step < cfg.steps_entropy else "finetune")
        opt, aux_opt = optimisers(phase)
        opt.load_state_dict(state["opt"])
        aux_opt.load_state_dict(state["aux_opt"])
        rng.bit_generator.state = state["rng"]
        if "torch_rng" in state:  # the training noise; checkpoints before it was saved resume with another
            torch.set_rng_state(state["torch_rng"])
        t_start -= state["elapsed"]
        log(f"resumed from step {step}")
    else:
        init_gains_from_data(model, train_ds, rng, cfg.batch, cfg.gain_range)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", desc="stage2", dynamic_ncols=True)
    ema_bpp = ema_d = None
    # batches from (seed, stream 2, step) like stage 1's; the qualities come from `rng`, saved with the checkpoint
    batches = step_batches(StepBatches(sources, cfg.batch, cfg.seed, stream=2), step, total_steps, cfg.workers,
                           pin_memory=device.type == "cuda")
    while step < total_steps:
        if stop_after is not None and step >= stop_after:
            break
        if phase == "entropy" and step >= cfg.steps_entropy:
            phase = "finetune"
            opt, aux_opt = optimisers(phase)
        frozen = phase == "entropy"
        for p in model.base.parameters():
            p.requires_grad_(not frozen)
        model.base.train(not frozen)
        b = to_device(next(batches), device)
        k = b["image"].shape[0]
        q = torch.from_numpy(rng.integers(0, q_count, k)).to(device)
        lr_scale = 0.5 * (1 + math.cos(math.pi * ((step - (0 if frozen else cfg.steps_entropy))
                                                 / max(1, cfg.steps_entropy if frozen else cfg.steps_finetune))))
        for gparam in opt.param_groups:
            gparam["lr"] = (cfg.lr if frozen else cfg.lr_finetune) * (0.05 + 0.95 * lr_scale)
        changed_image = None
        if cfg.augment:  # drawn from the step alone, like the batch, so a resume draws the same
            changed_image = photometric_batch(b["image"], np.random.default_rng([cfg.seed, 3, step]))
            # each task is served (and so trained here) by one group: its labels follow what that group sees
            b.update(pixel_labels(changed_image, [t for g in changed for t in tasks[g] if t in PIXEL_TASKS]))
        res = model(b["image"], q, tasks, b["origin"], changed_image, changed)
        pixels = b["image"].shape[-1] * b["image"].shape[-2]
        bpp = sum(res["bits"].values()) / pixels                     # (k,)
        dist = torch.zeros(k, device=device)
        for (g, t), p in res["preds"].items():
            # per-image losses, so each image is weighted by its own quality's λ
            dist = dist + torch.stack([task_loss(t, p[i:i + 1], b[t][i:i + 1]) for i in range(k)]) / trivial[t]
        loss = (lambdas[q] * dist + bpp).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        aux = sum(model.em(g).aux_loss() for g in model.order)
        aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        aux_opt.step()
        step += 1
        b_now, d_now = float(bpp.detach().mean()), float(dist.detach().mean())
        ema_bpp = b_now if ema_bpp is None else 0.95 * ema_bpp + 0.05 * b_now
        ema_d = d_now if ema_d is None else 0.95 * ema_d + 0.05 * d_now
        if bar:
            bar.update(1)
            bar.set_postfix({"phase": phase[:3], "bpp": f"{ema_bpp:.3f}", "D": f"{ema_d:.3f}"}, refresh=False)
        if step % cfg.ckpt_every == 0 or step == total_steps or (stop_after is not None and step >= stop_after):
            save_checkpoint(out / CHECKPOINT, {
                "model": model.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
                "step": step, "phase": phase, "history": history, "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "elapsed": time.perf_counter() - t_start, "config": asdict(cfg),
            })
    if bar:
        bar.close()
    if step < total_steps:
        log(f"paused at step {step} of {total_steps}; run the same command again to continue")
        return {"paused": True, "steps": step}
    rd = evaluate_rd(model, val_ds, trivial)
    record = {
        "schema": "tamc.stage2/1", "config": asdict(cfg), "order": order, "parents": parents,
        "serving": base.serving, "trivial_loss": trivial, "rd": rd, "steps": step,
        "seconds": round(time.perf_counter() - t_start, 1), "parameters": count_parameters(model),
        "hardware": hardware(device),
        "git_commit": git_commit(),
    }
    torch.save({"model": cpu_state_dict(model), "describe": {
        **base.describe(), "parents": parents, "order": order, "qualities": q_count, "lambdas": list(cfg.lambdas),
        "hyper_channels": cfg.hyper_channels, "use_global": cfg.use_global, "parent_input": cfg.parent_input},
        "trivial": trivial},
        out / "codec.pt.tmp")
    (out / "codec.pt.tmp").replace(out / "codec.pt")
    write_json(out / RECORD, record)
    return record


def load_codec_model(path: str | Path) -> CodecModel:
    from ..nets.multitask import NetConfig

    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    d = state["describe"]
    base = MultiGroupModel(d["groups"], NetConfig.from_dict(d["config"]), d["serving"])
    model = CodecModel(base, d["parents"], d["order"], d["qualities"], d["hyper_channels"], d["use_global"],
                       d.get("parent_input", DEFAULT_PARENT_INPUT))
    model.load_state_dict(state["model"])
    model.eval()
    return model


__all__ = ["Stage2Config", "CodecModel", "train_stage2", "evaluate_rd", "load_codec_model", "group_tasks"]
