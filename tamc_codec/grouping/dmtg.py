"""DMTG: one-shot differentiable task grouping (Gao et al.), the alternative to the lookahead.

K branches, each a copy of the lookahead network with a head for *every* task, are
trained together with an N x K matrix of logits S. Each step samples a relaxed
Categorical assignment per task with the Gumbel softmax (DMTG Eq. 5),

    z̃_ik = softmax_k((s_ik + g_ik) / τ),   g_ik ~ Gumbel(0, 1),

and minimises Σ_ik z̃_ik L_ik (DMTG Eq. 6): a task's loss on a branch only counts as
much as the task is currently assigned there, so S drifts towards the branch on which
the task does best -- the one whose features its companions shaped helpfully. At the
end each task goes to argmax_k s_ik; empty branches are dropped.

Differences from the paper, for a lookahead on two CPU cores: branches start from
independent random weights rather than copies of a trained multi-task network (the
copies would need the symmetry broken by noise alone), and τ is annealed geometrically
from ``tau_start`` (the paper's 4) to ``tau_end``. Requires torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from .affinity import (Batch, LookaheadNet, LossFn, Progress, data_info, default_loss,
                       initial_losses, tamc_batches)


class DMTGNet(nn.Module):
    """K lookahead networks (one per candidate group) and the assignment logits S (N x K)."""

    def __init__(self, tasks: Sequence[str], k: int, channels: Mapping[str, int] | None = None, *,
                 branch: Callable[[], nn.Module] | None = None, **net_kw):
        """``branch`` builds one branch (mapping an input to {task: prediction}); by
        default a :class:`LookaheadNet` over ``tasks``."""
        super().__init__()
        if k < 1:
            raise ValueError("DMTG needs at least one branch")
        self.tasks = tuple(tasks)
        make = branch or (lambda: LookaheadNet(tasks, channels, **net_kw))
        self.branches = nn.ModuleList([make() for _ in range(k)])
        # equal logits: no prior on which tasks belong together (DMTG §3.4, "Initialization")
        self.logits = nn.Parameter(torch.zeros(len(self.tasks), k))

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [b(x) for b in self.branches]


@dataclass
class DMTGResult:
    tasks: list[str]
    probs: np.ndarray          # (N, K) softmax of the final logits
    branch: list[int]          # argmax branch per task
    groups: list[list[str]]    # non-empty branches, as member lists
    loss: np.ndarray           # (N, K) normalised losses of the last steps
    steps: int
    runtime_s: float


def train_dmtg(model: DMTGNet, batches: Iterable[Batch], *, steps: int, lr: float = 1e-3,
               logit_lr: float = 0.02, tau_start: float = 4.0, tau_end: float = 0.5, seed: int = 0,
               loss_fn: LossFn = default_loss, norm_batches: int = 4,
               progress: Progress | None = None) -> DMTGResult:
    if steps < 1:
        raise ValueError("steps must be at least 1")
    t0 = time.perf_counter()
    tasks = list(model.tasks)
    n, k = model.logits.shape
    it = iter(batches)
    model.train()
    # one normaliser per task (all branches start alike in distribution), as in the lookahead
    norm = initial_losses(model.branches[0], it, tasks, norm_batches, loss_fn)[:, None]
    weights = [p for name, p in model.named_parameters() if name != "logits"]
    opt = torch.optim.Adam([{"params": weights, "lr": lr}, {"params": [model.logits], "lr": logit_lr}])
    gen = torch.Generator().manual_seed(seed)
    recent = []
    for step in range(steps):
        batch = next(it)
        tau = tau_start * (tau_end / tau_start) ** (step / max(1, steps - 1))
        outs = model(batch["image"])
        losses = torch.stack([torch.stack([loss_fn(t, outs[j][t], batch) for j in range(k)])
                              for t in tasks]) / norm                     # (N, K)
        u = torch.rand(n, k, generator=gen).clamp(1e-10, 1 - 1e-10)
        z = torch.softmax((model.logits - torch.log(-torch.log(u))) / tau, dim=1)
        total = (losses * z).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        vals = losses.detach().double().numpy()
        recent = (recent + [vals])[-10:]
        if progress is not None:
            progress(step, {t: float((vals[i] * z[i].detach().double().numpy()).sum()) for i, t in enumerate(tasks)})
    probs = torch.softmax(model.logits.detach(), dim=1).double().numpy()
    branch = [int(j) for j in probs.argmax(axis=1)]
    groups = [[t for t, b in zip(tasks, branch) if b == j] for j in range(k)]
    return DMTGResult(tasks=tasks, probs=probs, branch=branch, groups=[g for g in groups if g],
                      loss=np.mean(recent, axis=0), steps=steps, runtime_s=time.perf_counter() - t0)


def run_dmtg_grouping(data, tasks: Sequence[str], *, steps: int, budget: float, seed: int = 0,
                      batch_size: int = 32, lr: float = 1e-3, logit_lr: float = 0.02,
                      tau_start: float = 4.0, tau_end: float = 0.5, size: int = 64,
                      limit: int | None = None, affinity=None,
                      progress: Progress | None = None) -> tuple[dict, DMTGResult]:
    """``tamc group --method dmtg``: K = floor(budget) branches (at most one per task).

    With ``affinity`` (Ĉ from a lookahead run over the same tasks) the groups are scored
    exactly as the lookahead's are, so the two files' objectives compare directly;
    without it a member's score is its assignment probability and the file carries
    ``assignment_probs`` with a null ``affinity``.
    """
    from ..contract import group_id
    from ..errors import TamcInputError
    from .grouping_io import build_grouping
    from .selection import describe, group_scores

    if not budget >= 1.0:
        raise TamcInputError(f"--budget {budget:g} is smaller than one group (cost 1)")
    tasks = list(tasks)
    k = min(int(budget), len(tasks))
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    batches, meta = tamc_batches(data, tasks, size=size, batch_size=batch_size, seed=seed,
                                 limit=limit)
    model = DMTGNet(tasks, k)
    res = train_dmtg(model, batches, steps=steps, lr=lr, logit_lr=logit_lr, tau_start=tau_start,
                     tau_end=tau_end, seed=seed, progress=progress)
    settings = {"steps": steps, "seed": seed, "size": size, "lr": lr, "logit_lr": logit_lr,
                "tau_start": tau_start, "tau_end": tau_end, "batch_size": batch_size, "branches": k,
                "threads": torch.get_num_threads()}
    probs = [[float(v) for v in row] for row in res.probs]
    if affinity is not None:
        table = group_scores(np.asarray(affinity, dtype=np.float64))
        masks = [sum(1 << tasks.index(t) for t in g) for g in res.groups]
        parts = describe(tasks, table, masks)
        settings["scores"] = "affinity"
    else:
        parts = {"groups": res.groups,
                 "group_scores": {group_id(g): {t: probs[tasks.index(t)][res.branch[tasks.index(t)]] for t in g}
                                  for g in res.groups},
                 "assignment": {t: group_id(g) for g in res.groups for t in g}}
        settings["scores"] = "assignment_probs"
    d = build_grouping(method="dmtg", tasks=tasks, affinity=affinity, groups=parts["groups"],
                       group_scores=parts["group_scores"], assignment=parts["assignment"],
                       budget=budget, settings=settings, runtime_s=time.perf_counter() - t0,
                       data=data_info(data, meta), assignment_probs=probs,
                       branch_loss=[[float(v) for v in row] for row in res.loss])
    return d, res
