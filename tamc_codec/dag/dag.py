"""The causal DAG among group latents by conditional entropy (paper §3.3, Algorithm 1, Eq. 10).

Each group latent Y_c takes as parent the lower-entropy latent Y_p that minimises H(Y_c | Y_p)
(Eq. 10), so a child is coded with its parent as context (Eqs. 11, 13) and layers are coded in
the graph's topological order. Two departures from Algorithm 1 as printed:

* An edge is added only where it pays. Algorithm 1 gives every latent but the lowest-entropy
  one a parent even when the parent tells it nothing, and every edge costs the decoder a
  dependency: a receiver wanting the child must also decode the parent. The test depends on
  the estimator (see :func:`build_dag`).
* Acyclicity is checked rather than assumed. Parents always have lower entropy (ties broken by
  the canonical group order), which rules out cycles, but the check guards hand-edited files
  and future rules.

The result is the ``dag.json`` object of docs/CONTRACT.md; docs/DAG.md explains the numbers.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..contract import TASK_CODES, group_tasks, sort_tasks
from ..atomic import atomic_write_bytes
from ..errors import TamcInputError

SCHEMA = "tamc.dag/1"
ESTIMATORS = ("coding", "kde")
UNITS = {
    "coding": "bits per latent element",
    # KDE values are per dimension of the reduced (projected) latent, not per latent element.
    "kde": "bits per reduced dimension (KDE estimate)",
}
#: An edge must save at least this fraction of the child's entropy (both estimators).
DEFAULT_MIN_GAIN = 0.01
#: ... and at least this many bits (per element or per dimension): below it a "saving" is
#: round-off between two nearly free models, e.g. for a constant child.
MIN_SAVING_BITS = 1e-3


def _canonical_key(gid: str) -> tuple[int, ...]:
    return tuple(TASK_CODES[t] for t in group_tasks(gid))


def sort_groups(groups) -> list[str]:
    """Group ids in canonical order (by member task codes): the tie-break everywhere."""
    return sorted(groups, key=_canonical_key)


# -- input ----------------------------------------------------------------------------------

def validate_latents(latents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check group ids, shapes [N, C, h, w] with one N, and finiteness; return float32 arrays."""
    if not latents:
        raise TamcInputError("no group latents given")
    out: dict[str, np.ndarray] = {}
    n = None
    for gid, arr in latents.items():
        try:
            group_tasks(gid)
        except ValueError as exc:
            raise TamcInputError(f"latents: key {gid!r} is not a group id: {exc}") from None
        arr = np.asarray(arr)
        if arr.ndim != 4:
            raise TamcInputError(
                f"latents[{gid!r}] has shape {list(arr.shape)}; expected [N, C, h, w]")
        if min(arr.shape) < 1:
            raise TamcInputError(f"latents[{gid!r}] is empty (shape {list(arr.shape)})")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise TamcInputError(f"latents[{gid!r}] has dtype {arr.dtype}; expected real numbers")
        if n is None:
            n = arr.shape[0]
        elif arr.shape[0] != n:
            raise TamcInputError(
                f"latents disagree on the image count: {gid!r} has {arr.shape[0]}, others {n}")
        arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            raise TamcInputError(f"latents[{gid!r}] holds NaN or infinite values")
        out[gid] = arr
    return {g: out[g] for g in sort_groups(out)}


def load_latents(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``latents.npz`` (CONTRACT.md): one float32[N, C, h, w] array per group id."""
    path = Path(path)
    if not path.is_file():
        raise TamcInputError(f"latents file not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
        if not hasattr(npz, "files"):
            raise TamcInputError(f"{path} is a single .npy array, not an .npz of group latents")
        with npz:
            latents = {k: npz[k] for k in npz.files}
    except TamcInputError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise TamcInputError(f"{path} is not a readable .npz file ({exc})") from None
    return validate_latents(latents)


# -- Algorithm 1 ----------------------------------------------------------------------------

def entropy_order(entropy: dict[str, float]) -> list[str]:
    """Groups by increasing H(Y); equal entropies keep the canonical group order."""
    canon = {g: i for i, g in enumerate(sort_groups(entropy))}
    return sorted(entropy, key=lambda g: (entropy[g], canon[g]))


def choose_parents(
    entropy: dict[str, float],
    conditional: dict[str, dict[str, float]],
    accept: Callable[..., tuple[bool, dict]],
    extra: Callable[[str, str, dict], float] | None = None,
) -> tuple[dict[str, str | None], dict[str, dict]]:
    """Eq. 10 with the "only where it pays" rule.

    Each latent's candidate parent is the lower-entropy latent with the least H(Yc | Yp);
    ``accept(child, parent)`` then decides whether the edge pays and says why.
    With ``extra(child, parent, parents so far)``, the candidate is the one with the least
    H(Yc | Yp) + extra, in the child's units (the decode-set rule: what the parent's chain adds
    to what a receiver of the child must read), and ``accept`` gets the parents so far too.
    Returns the parent map and, per child, the record of that decision.
    """
    order = entropy_order(entropy)
    rank = {g: i for i, g in enumerate(order)}
    parents: dict[str, str | None] = {}
    decisions: dict[str, dict] = {}
    for i, child in enumerate(order):
        candidates = order[:i]  # strictly lower in (H, canonical) order: no cycle possible
        if not candidates:
            parents[child] = None
            decisions[child] = {"candidate": None, "accepted": False,
                                "reason": "lowest entropy: no candidate parent"}
            continue
        best = min(candidates, key=lambda p: (conditional[child][p] + (extra(child, p, parents) if extra else 0.0),
                                              rank[p]))
        ok, info = accept(child, best, parents) if extra else accept(child, best)
        parents[child] = best if ok else None
        decisions[child] = {"candidate": best, "accepted": ok, **info}
    return {g: parents[g] for g in sort_groups(parents)}, {g: decisions[g] for g in sort_groups(decisions)}


def topological_order(groups, parents: dict[str, str | None]) -> list[str]:
    """Kahn's algorithm; among ready groups the canonical order goes first.

    Preferring canonical order (rather than entropy order) means a layer moves only when the
    graph changes, not when two estimates swap by noise. Raises TamcInputError on a cycle or a
    parent that is not a group.
    """
    groups = sort_groups(groups)
    known = set(groups)
    children: dict[str, list[str]] = {g: [] for g in groups}
    indeg = {g: 0 for g in groups}
    for child, parent in parents.items():
        if child not in known:
            raise TamcInputError(f"DAG: {child!r} has a parent entry but is not a group")
        if parent is None:
            continue
        if parent not in known:
            raise TamcInputError(f"DAG: parent {parent!r} of {child!r} is not a group")
        if parent == child:
            raise TamcInputError(f"DAG: {child!r} is its own parent")
        children[parent].append(child)
        indeg[child] += 1
    canon = {g: i for i, g in enumerate(groups)}
    ready = [(canon[g], g) for g in groups if indeg[g] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, g = heapq.heappop(ready)
        order.append(g)
        for c in children[g]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(ready, (canon[c], c))
    if len(order) != len(groups):
        stuck = [g for g in groups if indeg[g] > 0]
        raise TamcInputError(f"DAG has a cycle through {', '.join(stuck)}")
    return order


# -- estimators -----------------------------------------------------------------------------

def _finite(x: float, what: str) -> float:
    if not math.isfinite(x):
        raise RuntimeError(f"estimator produced a non-finite {what}: {x}")  # a bug, not input
    return float(x)


def build_dag(
    latents: dict[str, np.ndarray],
    estimator: str = "coding",
    *,
    min_gain: float = DEFAULT_MIN_GAIN,
    seed: int | None = None,
    coding=None,
    kde=None,
    progress: Callable[[str], None] | None = None,
    serving: dict[str, str] | None = None,
) -> dict:
    """Build the ``dag.json`` object for ``latents`` ({group id: [N, C, h, w]}).

    ``estimator`` is ``"coding"`` (default: bits of a small fitted conditional coder, see
    :mod:`.cond_coding`) or ``"kde"`` (the paper's oracle, see :mod:`.kde`). ``coding`` and
    ``kde`` take a :class:`CodingSettings` / :class:`KDESettings`; ``seed`` overrides theirs.

    An edge parent → child is kept only if it pays: it must save at least ``min_gain`` of the
    child's entropy (and at least MIN_SAVING_BITS). For ``kde`` the KDE's finite-sample bias
    makes even independent latents look informative, so the saving is measured from the mean
    of a permutation null (the parent's images shuffled) instead of from H(Yc), and the real
    H(Yc | Yp) must also lie below every null value.

    ``serving`` (task → group; ``coding`` only) adds the **decode-set rule**: a receiver of a
    task decodes its group's layer *and every ancestor's*, so an edge parent → child must also
    pay for the receivers of the child's tasks: the bits per picture of the child given the
    parent, plus those of the parent's whole chain, may not exceed the child's bits alone. Bits
    per picture are bits per element times the latent's elements (C·h·w), so latents on
    different grids (scene scale) compare as the codec's layers do. A group that serves no task
    has no receiver, and only the file's total decides its edge.
    """
    if estimator not in ESTIMATORS:
        raise TamcInputError(f"unknown estimator {estimator!r} (known: {', '.join(ESTIMATORS)})")
    if not 0 <= min_gain < 1:
        raise TamcInputError(f"min_gain must be in [0, 1), got {min_gain}")
    latents = validate_latents(latents)
    groups = list(latents)
    n = next(iter(latents.values())).shape[0]
    if n < 2:
        raise TamcInputError(
            f"need latents of at least 2 images to estimate a DAG (held-out images for "
            f"'coding', a permutation null for 'kde'); got {n}")
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()

    if estimator == "coding":
        from .cond_coding import CodingOracle, CodingSettings
        s = coding or CodingSettings()
        oracle = CodingOracle(latents, s if seed is None else replace(s, seed=seed))
    else:
        from .kde import KDEOracle, KDESettings
        s = kde or KDESettings()
        oracle = KDEOracle(latents, s if seed is None else replace(s, seed=seed))

    entropy = {}
    for g in groups:
        entropy[g] = _finite(oracle.entropy(g), f"H({g})")
        say(f"H({g}) = {entropy[g]:.4f}")
    conditional: dict[str, dict[str, float]] = {c: {} for c in groups}
    for c in groups:
        for p in groups:
            if p != c:
                conditional[c][p] = _finite(oracle.conditional(c, p), f"H({c}|{p})")
                say(f"H({c} | {p}) = {conditional[c][p]:.4f}")

    served = {g: sort_tasks(t for t, sg in (serving or {}).items() if sg == g) for g in groups}
    if serving is not None:
        if estimator != "coding":
            raise TamcInputError("the decode-set rule needs bits (the coding estimator)")
        unknown = sorted({g for g in serving.values() if g not in latents})
        if unknown:
            raise TamcInputError(f"serving names groups without latents: {', '.join(unknown)}")
    elements = {g: int(np.prod(latents[g].shape[1:])) for g in groups}

    def layer_bits(g: str, parents: dict) -> float:
        """Bits per picture of g's layer as coded along the DAG decided so far."""
        p = parents.get(g)
        return elements[g] * (conditional[g][p] if p else entropy[g])

    def chain_bits(g: str, parents: dict) -> float:
        """Bits per picture a receiver reads for g and its ancestors (g's own layer included)."""
        total, seen = 0.0, set()
        while g is not None and g not in seen:
            seen.add(g)
            total += layer_bits(g, parents)
            g = parents.get(g)
        return total

    def extra(child: str, parent: str, parents: dict) -> float:
        # what the parent's chain adds to a receiver of the child, per element of the child
        return chain_bits(parent, parents) / elements[child] if served[child] else 0.0

    def accept(child: str, parent: str, parents: dict | None = None) -> tuple[bool, dict]:
        h, hc = entropy[child], conditional[child][parent]
        need = max(min_gain * h, MIN_SAVING_BITS)
        info: dict = {"min_saving": need}
        if estimator == "kde":
            null = oracle.null(child, parent)
            null_min = _finite(min(null), "null")
            null_mean = _finite(float(np.mean(null)), "null")
            # The KDE's finite-sample bias lowers H(c|p) even for an independent parent, so
            # the saving is counted from the null's mean, not from H(c).
            saving = null_mean - hc
            beats_null = hc < null_min
            info.update(null_min=null_min, null_mean=null_mean, raw_saving=h - hc,
                        p_value=(1 + sum(v <= hc for v in null)) / (1 + len(null)))
        else:
            saving, beats_null = h - hc, True
        pays = saving > 0 and saving >= need and beats_null
        reason = "pays" if pays else "within the permutation null" if not beats_null else "saves too little"
        if pays and parents is not None and served[child]:
            alone = elements[child] * h
            with_parent = elements[child] * hc + chain_bits(parent, parents)
            info.update(receivers=served[child], bits_alone=alone, bits_with_parent_chain=with_parent)
            if with_parent > alone:
                pays, reason = False, f"costs the receivers of {', '.join(served[child])} more than it saves"
        info.update(saving=saving, saving_fraction=saving / h if h > 0 else 0.0, reason=reason)
        say(f"{parent} -> {child}: saves {saving:.4f} ({info['saving_fraction']:.1%})"
            + (f", null min {info['null_min']:.4f}" if estimator == "kde" else "")
            + (", edge" if pays else ", no edge"))
        return pays, info

    rule = serving is not None
    parents, decisions = choose_parents(entropy, conditional, accept, extra if rule else None)
    order = topological_order(groups, parents)
    edges = [[parents[c], c] for c in order if parents[c] is not None]
    settings = {"min_gain": min_gain, "images": n, **oracle.settings(),
                "decode_sets": {"serving": dict(serving)} if rule else None}
    return {
        "schema": SCHEMA,
        "estimator": estimator,
        "units": UNITS[estimator],
        "groups": groups,
        "entropy": entropy,
        "conditional": conditional,
        "parents": parents,
        "edges": edges,
        "order": order,
        "settings": settings,
        "decisions": decisions,
        "latents": {g: list(latents[g].shape) for g in groups},
        "runtime_s": round(time.perf_counter() - t0, 3),
    }


# -- dag.json -------------------------------------------------------------------------------

def validate_dag(dag: dict) -> dict:
    """Check a dag.json object: fields, group ids, parents ↔ edges, and that ``order`` is a
    topological order of the graph (what the codec relies on). Returns ``dag``."""
    if not isinstance(dag, dict) or dag.get("schema") != SCHEMA:
        raise TamcInputError(f"not a {SCHEMA} object")
    for key in ("groups", "entropy", "conditional", "parents", "edges", "order"):
        if key not in dag:
            raise TamcInputError(f"dag.json lacks {key!r}")
    groups = dag["groups"]
    for g in groups:
        try:
            group_tasks(g)
        except ValueError as exc:
            raise TamcInputError(f"dag.json: {exc}") from None
    if len(set(groups)) != len(groups):
        raise TamcInputError("dag.json: repeated group")
    if set(dag["parents"]) != set(groups):
        raise TamcInputError("dag.json: 'parents' must name every group")
    edges = {(p, c) for p, c in dag["edges"]}
    implied = {(p, c) for c, p in dag["parents"].items() if p is not None}
    if edges != implied or len(dag["edges"]) != len(edges):
        raise TamcInputError("dag.json: 'edges' and 'parents' disagree")
    topological_order(groups, dag["parents"])  # raises on a cycle
    order = dag["order"]
    if sorted(order) != sorted(groups):
        raise TamcInputError("dag.json: 'order' must list every group once")
    pos = {g: i for i, g in enumerate(order)}
    for p, c in edges:
        if pos[p] > pos[c]:
            raise TamcInputError(f"dag.json: 'order' codes {c!r} before its parent {p!r}")
    for g in groups:
        vals = [dag["entropy"][g], *dag["conditional"].get(g, {}).values()]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            raise TamcInputError(f"dag.json: non-finite entropy for {g!r}")
    return dag


def fixed_dag(groups: list[str], parents: dict[str, str | None], order: list[str], estimator: str) -> dict:
    """A dag.json object for a graph chosen without measuring (no context, random, by hand).

    No entropies were estimated, so they are recorded as zero with units saying so.
    Validation happens where it is read (load_dag_json) or written (save_dag_json).
    """
    return {
        "schema": SCHEMA, "estimator": estimator, "units": f"none ({estimator} graph, not measured)",
        "groups": list(groups), "entropy": {g: 0.0 for g in groups}, "conditional": {},
        "parents": dict(parents), "edges": [[p, g] for g, p in parents.items() if p], "order": list(order),
    }


def save_dag_json(dag: dict, path: str | os.PathLike) -> Path:
    """Write ``dag`` atomically: a temporary file in the same folder, then os.replace."""
    path = Path(path)
    text = json.dumps(validate_dag(dag), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def load_dag_json(path: str | os.PathLike) -> dict:
    """Read and validate a dag.json file."""
    path = Path(path)
    try:
        dag = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TamcInputError(f"DAG file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TamcInputError(f"{path} is not JSON ({exc})") from None
    return validate_dag(dag)
