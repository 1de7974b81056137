"""The encoder's choice of a latent layer's symbols: rounding, or a rate-distortion search.

A decoder reconstructs whatever integers a layer holds (docs/FORMAT.md), so which integers to
write is the encoder's choice alone, as a classical encoder's trellis quantisation is. Rounding
each element of the latent to the nearest integer is the cheapest choice, not the best one: at
the scene layer's low qualities most of the bits go to elements of ±1 whose effect on the task
decoders is small or even harmful. The search starts from the rounded symbols and moves each
non-zero symbol one step toward zero where that lowers

    J = D(symbols) + mu * bits(symbols),

D being how far the served task decoders' outputs on the decoded latent are from their outputs
on the unquantised latent (each task in units of its trivial loss, averaged over the tasks the
file was asked for), bits the layer's exact information content under the model's entropy
tables. mu follows the quality's training λ (stage 2 minimised λ·D + bpp, so a bit is worth
about 1/λ as much distortion at every quality): ``MU_PER_INV_LAMBDA / λ_q``.

Nothing of the decoder changes and neither does the format: the search only decides which
symbols the encoder's usual steps code (LayerCodec.encode). Effort 0 is plain rounding.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..effort import EFFORTS, check_effort

#: mu = MU_PER_INV_LAMBDA / λ_q, in loss / trivial per bit. Chosen on validation pictures
#: (data/val512, docs/notes/2026-12-07-low-rate-levers.md): mu 2e-5 and 6e-5 at the shipped model's
#: q2 (λ 0.06) gave alike files; this puts q2 at 2e-5.
MU_PER_INV_LAMBDA = 1.2e-6


@dataclass
class Objective:
    """What the search minimises: distortion(latent) + mu * bits; `latent` is the dequantised latent
    (what the task decoders read)."""
    distortion: Callable[[np.ndarray], float]
    mu: float


def output_distance(task: str, out: np.ndarray, ref: np.ndarray) -> float:
    """How far a decoder output is from the reference output, in the task loss's own terms: seg's
    cross-entropy against the reference's class probabilities, the mean absolute difference for the
    rest (normalised units)."""
    if task == "seg":
        ref_p = np.exp(ref - ref.max(axis=0))
        ref_p /= ref_p.sum(axis=0)
        shifted = out - out.max(axis=0)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=0))
        return float(-(ref_p * log_p).sum(axis=0).mean())
    return float(np.abs(out - ref).mean())


@lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    """One pool per size for the whole process: an encode must not start and leak threads."""
    return ThreadPoolExecutor(workers, thread_name_prefix="tamc-search")


def task_objective(outputs: Callable[[str, np.ndarray], np.ndarray], tasks: list[str], latent: np.ndarray,
                   trivial: Mapping[str, float], lam: float, workers: int = 1) -> Objective:
    """The objective for `tasks`, whose decoder outputs on a latent `outputs(task, latent)` gives,
    measured from their outputs on the unquantised `latent`. With `workers` > 1 the tasks' decoders
    run side by side (each output is the same either way)."""
    pool = _pool(min(workers, len(tasks))) if workers > 1 and len(tasks) > 1 else None

    def each(fn: Callable[[str], float]) -> list[float]:
        return list(pool.map(fn, tasks)) if pool else [fn(t) for t in tasks]

    ref = dict(zip(tasks, each(lambda t: outputs(t, latent))))

    def distortion(decoded: np.ndarray) -> float:
        return sum(each(lambda t: output_distance(t, outputs(t, decoded), ref[t]) / trivial.get(t, 1.0))) / len(tasks)

    return Objective(distortion=distortion, mu=MU_PER_INV_LAMBDA / lam)


def search_symbols(start: tuple[np.ndarray, np.ndarray], residual: tuple[np.ndarray, np.ndarray],
                   cost: Callable[[np.ndarray, np.ndarray], float], effort: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy descent from the rounded symbols `start` (anchors, the rest) on `cost`, each move one
    non-zero symbol one step toward zero, kept where the cost falls. Candidates are tried nearest
    the rounding boundary first (smallest |residual|, the unrounded value less its mean), so a
    bounded effort spends its tries where a move is likeliest to pay."""
    sweeps, budget = EFFORTS[check_effort(effort)]
    symbols = [start[0].copy(), start[1].copy()]
    best = cost(*symbols)
    tries = 0
    for _ in range(sweeps):
        moved = False
        candidates = [(abs(float(residual[p][k])), p, int(k)) for p in (0, 1) for k in np.flatnonzero(symbols[p])]
        for _, p, k in sorted(candidates):
            if budget is not None and tries >= budget:
                return symbols[0], symbols[1]
            tries += 1
            trial = symbols[p].copy()
            trial[k] -= np.sign(trial[k])
            c = cost(*((trial, symbols[1]) if p == 0 else (symbols[0], trial)))
            if c < best:
                best, symbols[p], moved = c, trial, True
        if not moved:
            break
    return symbols[0], symbols[1]
