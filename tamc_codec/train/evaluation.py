"""Validation of a multi-group network: its losses and the human metrics of its tasks.

Each task's loss is divided by the loss of the trivial predictor (the per-pixel mean label of
the training set, :func:`mean_maps`, evaluated on validation images, :func:`trivial_losses`);
:func:`evaluate` reports every (group, task) pair's loss so normalised with the task's metric in
CONTRACT units (:class:`TaskMetrics`). Used by stages 1 and 2, ``tamc bench`` and the benchmarks.
"""
from __future__ import annotations

import numpy as np
import torch

from ..contract import group_tasks
from ..data.torch_dataset import MultiTaskDataset, collate
from ..nets.multitask import MultiGroupModel
from ..tasks import metrics as M
from ..tasks.losses import task_loss
from ..tasks.registry import TASK_SPECS
from .device import model_device, to_device


def ordered_batches(ds: MultiTaskDataset, batch: int):
    """The whole of `ds` in order, collated `batch` samples at a time (the last batch may be smaller)."""
    for start in range(0, len(ds), batch):
        yield collate([ds.sample(i) for i in range(start, min(start + batch, len(ds)))])


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
    for items in ordered_batches(val, batch):
        b = items
        k = b["image"].shape[0]
        for t, m in maps.items():
            totals[t] += float(task_loss(t, m.expand(k, *m.shape), b[t])) * k
        n += k
    return {t: v / n for t, v in totals.items()}


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


@torch.no_grad()
def evaluate(model: MultiGroupModel, val: MultiTaskDataset, trivial: dict[str, float], batch: int = 8) -> dict:
    """Validation losses of every (group, task) pair, normalised by the trivial loss, and metrics."""
    was_training = model.training
    model.eval()
    sums: dict[tuple[str, str], float] = {}
    mets = {(g, t): TaskMetrics(t) for g in model.groups for t in group_tasks(g)}
    n = 0
    device = model_device(model)
    for b in ordered_batches(val, batch):
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


__all__ = ["ordered_batches", "mean_maps", "trivial_losses", "TaskMetrics", "evaluate"]
