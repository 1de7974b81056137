"""Lookahead task affinity by gradient coherence (paper §3.2, Eqs. 6-8; TAG, Fifty et al.).

One small network with a shared encoder and a head per task is trained on all tasks
(Eq. 6). Every ``every`` steps, before the training step, :func:`lookahead` forecasts for
each task u what one plain gradient step of the *shared* parameters on u alone would do
to every task v on the same batch (Eq. 7), and records

    C(u -> v) = 1 - L_v(after) / L_v(before)                                   (Eq. 8)

The run average is the paper's Ĉ; its spread over the run is reported too.

The training loop is generic so that tests can plant structure: a model maps
``batch["image"]`` to ``{task: prediction}``, a batch is a dict of tensors, and a loss
function ``loss_fn(task, prediction, batch)`` returns a scalar. Requires torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

Batch = Mapping[str, torch.Tensor]
LossFn = Callable[[str, torch.Tensor, Batch], torch.Tensor]
#: progress(step, normalised per-task losses of the step) after every training step
Progress = Callable[[int, dict[str, float]], None]

#: A loss below this is treated as zero: the ratio of Eq. 8 is meaningless there.
_TINY_LOSS = 1e-12


def default_loss(task: str, pred: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The training loss of a tamc task (tasks/losses.py) against the batch's target."""
    from ..tasks.losses import task_loss

    return task_loss(task, pred, batch[task])


# --------------------------------------------------------------------------- network


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.GELU())


class SharedEncoder(nn.Module):
    """Four stride-2 conv blocks: a 64x64 image becomes a 4x4 map of ``widths[-1]`` channels.

    Deliberately small (Standley's half-width Xception does not fit two CPU cores): the
    lookahead only has to rank how tasks interact, not solve them.
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 48, 64, 96)):
        super().__init__()
        layers, prev = [], in_channels
        for w in widths:
            layers.append(_block(prev, w))
            prev = w
        self.body = nn.Sequential(*layers)
        self.out_channels = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TaskHead(nn.Module):
    """Upsampling decoder for one task: 3 x (bilinear x2, 3x3 conv, GELU), then a 1x1 conv.

    It predicts at half the input size and upsamples bilinearly for the last octave; a
    full-resolution conv per head would cost more than the whole encoder and the
    affinities of dense tasks hardly depend on the last pixel of detail.
    """

    def __init__(self, in_channels: int, out_channels: int, widths: Sequence[int] = (48, 32, 16)):
        super().__init__()
        layers, prev = [], in_channels
        for w in widths:
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(prev, w, 3, padding=1), nn.GELU()]
            prev = w
        layers.append(nn.Conv2d(prev, out_channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        y = self.body(z)
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y


class LookaheadNet(nn.Module):
    """Shared encoder (Θ_g of Eq. 6) and one head per task (Θ_i)."""

    def __init__(self, tasks: Sequence[str], channels: Mapping[str, int] | None = None, *,
                 in_channels: int = 3, widths: Sequence[int] = (32, 48, 64, 96),
                 head_widths: Sequence[int] = (48, 32, 16)):
        super().__init__()
        if channels is None:
            from ..tasks.registry import TASK_SPECS

            channels = {t: TASK_SPECS[t].channels for t in tasks}
        self.tasks = tuple(tasks)
        self.encoder = SharedEncoder(in_channels, widths)
        self.heads = nn.ModuleDict({t: TaskHead(self.encoder.out_channels, channels[t], head_widths)
                                    for t in self.tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        size = (x.shape[-2], x.shape[-1])
        return {t: head(z, size) for t, head in self.heads.items()}

    def shared_parameter_names(self) -> list[str]:
        return [f"encoder.{n}" for n, _ in self.encoder.named_parameters()]


def shared_names_of(model: nn.Module, shared: Iterable[str] | None = None) -> list[str]:
    """Names of the shared parameters: given, or the model's own, or every ``encoder.*``."""
    if shared is not None:
        names = list(shared)
    elif hasattr(model, "shared_parameter_names"):
        names = list(model.shared_parameter_names())
    else:
        names = [n for n, _ in model.named_parameters() if n.startswith("encoder.")]
    known = dict(model.named_parameters())
    missing = [n for n in names if n not in known]
    if missing or not names:
        raise ValueError(f"shared parameters not found in the model: {missing or 'none given'}")
    return names


# --------------------------------------------------------------------------- lookahead


def _losses(model: nn.Module, state: dict[str, torch.Tensor], batch: Batch, tasks: Sequence[str],
            loss_fn: LossFn, norm: torch.Tensor) -> torch.Tensor:
    out = functional_call(model, state, (batch["image"],))
    return torch.stack([loss_fn(t, out[t], batch) for t in tasks]) / norm


def lookahead(model: nn.Module, batch: Batch, tasks: Sequence[str], *, lr: float,
              loss_fn: LossFn = default_loss, norm: torch.Tensor | Sequence[float] | None = None,
              shared: Iterable[str] | None = None) -> np.ndarray:
    """One lookahead: C[u, v] = 1 - L_v(Θ_g - lr·∇L_u) / L_v(Θ_g) on ``batch`` (Eqs. 7-8).

    ``norm`` divides each task's loss (its initial value) so that the step on u has a
    size set by how far u is from where it started, not by the units of its loss; a
    task with a large loss would otherwise take a large step and "help" every task.
    The ratio in Eq. 8 is unaffected, since both of v's losses are divided alike.

    Changes nothing in the model: the forecast runs through ``functional_call`` with the
    stepped parameters and with *copies* of the buffers, so parameters, batch-norm
    statistics and ``.grad`` fields are bit-identical afterwards, and no optimiser is
    involved. Batch norm runs in the model's current mode: during training that is batch
    statistics, the same normalisation the training step being forecast uses.
    """
    n = len(tasks)
    names = shared_names_of(model, shared)
    params = dict(model.named_parameters())
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    device = next(iter(params.values())).device
    norm_t = (torch.ones(n, device=device) if norm is None
              else torch.as_tensor(norm, dtype=torch.float32, device=device))

    def state(overrides: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # fresh buffer copies per forward: each forecast starts from the same statistics
        s: dict[str, torch.Tensor] = {k: b.clone() for k, b in buffers.items()}
        s.update(params)
        s.update(overrides)
        return s

    with torch.enable_grad():
        before = _losses(model, state({}), batch, tasks, loss_fn, norm_t)
        shared_t = [params[k] for k in names]
        grads = []
        for u in range(n):
            g = torch.autograd.grad(before[u], shared_t, retain_graph=u < n - 1, allow_unused=True)
            grads.append([torch.zeros_like(p) if gi is None else gi for p, gi in zip(shared_t, g)])
    before = before.detach()
    c = np.zeros((n, n), dtype=np.float64)
    with torch.no_grad():
        for u in range(n):
            stepped = {k: p.detach() - lr * g for k, p, g in zip(names, shared_t, grads[u])}
            after = _losses(model, state(stepped), batch, tasks, loss_fn, norm_t)
            ok = before.abs() > _TINY_LOSS
            ratio = torch.where(ok, after / torch.where(ok, before, torch.ones_like(before)),
                                torch.ones_like(before))
            c[u] = (1.0 - ratio).double().cpu().numpy()
    return c


# --------------------------------------------------------------------------- training run


@dataclass
class AffinityResult:
    """Ĉ over a run. ``mean[u, v]`` = Ĉ(u -> v); rows are sources, columns recipients."""

    tasks: list[str]
    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray                 # (T, N, N): every lookahead of the run
    initial_loss: dict[str, float]      # the normalisers (raw loss units)
    final_loss: dict[str, float]        # normalised losses, mean of the last steps
    steps: int
    every: int
    lr: float
    lookahead_lr: float
    runtime_s: float
    history: list[float] = field(default_factory=list)   # normalised total loss per step

    @property
    def count(self) -> int:
        return int(self.samples.shape[0])


def cycle(loader: Iterable[Batch]) -> Iterator[Batch]:
    """Repeat a finite loader (a new shuffle per pass when the loader shuffles)."""
    while True:
        empty = True
        for b in loader:
            empty = False
            yield b
        if empty:
            raise ValueError("the batch source is empty")


def initial_losses(model: nn.Module, batches: Iterator[Batch], tasks: Sequence[str], count: int,
                   loss_fn: LossFn = default_loss) -> torch.Tensor:
    """Mean loss of each task at initialisation over ``count`` batches (state untouched)."""
    params = dict(model.named_parameters())
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    ones = torch.ones(len(tasks))
    total = torch.zeros(len(tasks), dtype=torch.float64)
    with torch.no_grad():
        for _ in range(max(1, count)):
            s = {k: b.clone() for k, b in buffers.items()}
            s.update(params)
            total += _losses(model, s, next(batches), tasks, loss_fn, ones).double()
    mean = (total / max(1, count)).float()
    # a task already at zero loss (e.g. a constant target) must not divide by zero
    return torch.where(mean > _TINY_LOSS, mean, torch.ones_like(mean))


def measure_affinity(model: nn.Module, batches: Iterable[Batch], tasks: Sequence[str], *,
                     steps: int, every: int = 10, lr: float = 1e-3, lookahead_lr: float = 0.05,
                     loss_fn: LossFn = default_loss, shared: Iterable[str] | None = None,
                     norm_batches: int = 4, progress: Progress | None = None) -> AffinityResult:
    """Train ``model`` on the sum of normalised task losses with Adam and average Eq. 8.

    A lookahead is taken on the batch of steps 0, every, 2·every, ... before that step's
    update, with a plain SGD step of size ``lookahead_lr`` (Eq. 7), independent of Adam's
    state. The first ``norm_batches`` batches only measure the normalisers.
    """
    if steps < 1 or every < 1:
        raise ValueError("steps and every must be at least 1")
    t0 = time.perf_counter()
    tasks = list(tasks)
    names = shared_names_of(model, shared)
    it = iter(batches)
    model.train()
    norm = initial_losses(model, it, tasks, norm_batches, loss_fn)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    samples, history, recent = [], [], []
    for step in range(steps):
        batch = next(it)
        if step % every == 0:
            samples.append(lookahead(model, batch, tasks, lr=lookahead_lr, loss_fn=loss_fn,
                                     norm=norm, shared=names))
        out = model(batch["image"])
        losses = torch.stack([loss_fn(t, out[t], batch) for t in tasks]) / norm
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        vals = losses.detach().double().cpu().numpy()
        history.append(float(vals.sum()))
        recent.append(vals)
        recent = recent[-max(1, every):]
        if progress is not None:
            progress(step, dict(zip(tasks, map(float, vals))))
    s = np.stack(samples)
    return AffinityResult(
        tasks=tasks, mean=s.mean(axis=0), std=s.std(axis=0), samples=s,
        initial_loss=dict(zip(tasks, map(float, norm))),
        final_loss=dict(zip(tasks, map(float, np.mean(recent, axis=0)))),
        steps=steps, every=every, lr=lr, lookahead_lr=lookahead_lr,
        runtime_s=time.perf_counter() - t0, history=history)


# --------------------------------------------------------------------------- data


class SceneMemory(torch.utils.data.Dataset):
    """Whole scenes at the lookahead size, each prepared once and then kept in memory.

    Reading six 256x256 labels and downsampling them costs about as much as a training
    step on two cores, and a run sees every scene many times; the 64x64 versions of
    4000 scenes take ~0.4 GB as float16, plenty for ranking task interactions. Random
    horizontal flips are applied here, from a seeded generator, so runs repeat exactly.
    """

    def __init__(self, dataset, seed: int = 0, flip: bool = True):
        self.dataset = dataset       # a MultiTaskDataset with train=False (no crops or flips)
        self.store: dict[int, dict[str, torch.Tensor]] = {}
        self.rng = np.random.default_rng(seed)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i not in self.store:
            sample = self.dataset[i]
            # the rgb target is the input image: keep one copy
            self.store[i] = {k: (v.to(torch.uint8) if k == "seg" else v.to(torch.float16))
                             for k, v in sample.items() if k != "rgb"}
        out = {k: (v.long() if k == "seg" else v.float()) for k, v in self.store[i].items()}
        if "rgb" in self.dataset.tasks and "rgb" not in out:
            out["rgb"] = out["image"]
        if self.flip and self.rng.random() < 0.5:
            out = {k: v.flip(-1) for k, v in out.items()}
            if "normal" in out:
                out["normal"][0] = -out["normal"][0]  # mirrored image, mirrored x axis
        return out


def tamc_batches(path, tasks: Sequence[str], *, size: int = 64, batch_size: int = 32, seed: int = 0,
                 limit: int | None = None) -> tuple[Iterator[Batch], dict]:
    """Endless shuffled training batches of a generated folder at ``size`` x ``size``.

    Returns the iterator and the folder's meta.json. Inputs are area-downsampled whole
    scenes (the paper's low-resolution lookahead), never crops, so every task sees the
    whole layout of each scene.
    """
    import json
    from pathlib import Path

    from ..data.torch_dataset import MultiTaskDataset
    from ..errors import TamcInputError

    ds = MultiTaskDataset(path, tasks, crop=None, train=False, downsample=1, limit=limit)
    if size > ds.size or ds.size % size:
        raise TamcInputError(f"--size {size} does not divide the data's image size {ds.size}")
    ds.downsample = ds.size // size
    if len(ds) == 0:
        raise TamcInputError(f"{path}: no scenes")
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(SceneMemory(ds, seed), batch_size=min(batch_size, len(ds)),
                                         shuffle=True, drop_last=True, generator=g, num_workers=0)
    meta = json.loads((Path(path) / "meta.json").read_text())
    return cycle(loader), meta


# --------------------------------------------------------------------------- whole stage


def data_info(path, meta: Mapping) -> dict:
    return {"path": str(path), "generator": meta.get("generator"), "first_seed": meta.get("first_seed"),
            "count": meta.get("count"), "size": meta.get("size"), "split": meta.get("split")}


def run_lookahead_grouping(data, tasks: Sequence[str], *, steps: int, budget: float, every: int = 10,
                           seed: int = 0, batch_size: int = 32, lr: float = 1e-3,
                           lookahead_lr: float = 0.05, size: int = 64, limit: int | None = None,
                           progress: Progress | None = None) -> tuple[dict, AffinityResult]:
    """``tamc group --method lookahead``: train, measure Ĉ, choose groups; the grouping dict.

    Raises TamcInputError for a budget below one group, before any training.
    """
    from ..errors import TamcInputError
    from .grouping_io import build_grouping
    from .selection import grouping_parts

    if not budget >= 1.0:
        raise TamcInputError(f"--budget {budget:g} is smaller than one group (cost 1)")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    batches, meta = tamc_batches(data, tasks, size=size, batch_size=batch_size, seed=seed,
                                 limit=limit)
    model = LookaheadNet(tasks)
    res = measure_affinity(model, batches, tasks, steps=steps, every=every, lr=lr,
                           lookahead_lr=lookahead_lr, progress=progress)
    parts = grouping_parts(list(tasks), res.mean, budget)
    settings = {"steps": steps, "seed": seed, "size": size, "lr": lr, "every": every,
                "lookahead_lr": lookahead_lr, "batch_size": batch_size, "lookaheads": res.count,
                "normalised_by": "mean loss at initialisation over 4 batches",
                "initial_loss": res.initial_loss, "final_loss": res.final_loss,
                "threads": torch.get_num_threads(), "search_nodes": parts["nodes"]}
    d = build_grouping(method="lookahead", tasks=list(tasks), affinity=res.mean,
                       affinity_std=res.std, groups=parts["groups"],
                       group_scores=parts["group_scores"], assignment=parts["assignment"],
                       budget=budget, settings=settings, runtime_s=time.perf_counter() - t0,
                       data=data_info(data, meta))
    return d, res
