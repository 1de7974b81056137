"""Group scores from pairwise affinities and the choice of groups by branch and bound.

Paper §3.2 and Appendix A.5 (Alg. 2, after Standley et al. and Zamir et al.). Groups are
bit masks over the positions of ``tasks`` (bit i = tasks[i]); numpy only.

Score of task i in group G (TAG's higher-order approximation, paper §3.2):
    s(G, i) = mean_{j in G, j != i} Ĉ(j -> i)         and s({i}, i) = 0 (no help).
A solution S (a set of groups) scores Σ_i max_{G in S, i in G} s(G, i) -- each task is
served by the chosen group that helps it most -- and must cover every task within the
budget Σ_{G in S} cost(G) <= b. Ties between solutions of equal score go to fewer groups,
then fewer members in all, then the smaller sorted list of masks, so the answer does not
depend on the search order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import TamcInputError

Costs = Callable[[int], float] | Mapping[int, float] | None

#: Branches whose bound is this close to the best score are still explored: the bound is
#: summed in another order than the objective, and an equal score may win a tie-break.
_EPS = 1e-9


def members(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def group_scores(affinity: np.ndarray) -> np.ndarray:
    """(2^N, N) table: row ``mask`` holds s(mask, i) for members i and -inf elsewhere.

    Row 0 (the empty group) is all -inf. ``affinity[j, i]`` = Ĉ(j -> i).
    """
    a = np.asarray(affinity, dtype=np.float64)
    n = a.shape[0]
    if a.shape != (n, n) or n < 1:
        raise ValueError(f"affinity must be a square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("affinity has non-finite entries")
    table = np.full((1 << n, n), -np.inf)
    for mask in range(1, 1 << n):
        ms = members(mask)
        for i in ms:
            others = [j for j in ms if j != i]
            # sum then divide in member order: the same float whichever way it is reached
            table[mask, i] = math.fsum(a[j, i] for j in others) / len(others) if others else 0.0
    return table


def _cost_fn(costs: Costs) -> Callable[[int], float]:
    if costs is None:
        return lambda mask: 1.0
    if callable(costs):
        return costs
    table = dict(costs)
    return lambda mask: float(table.get(mask, 1.0))


@dataclass(frozen=True)
class Selection:
    groups: tuple[int, ...]            # chosen masks, ascending
    objective: float                   # Σ_i of the serving group's score
    assignment: tuple[int, ...]        # assignment[i] = mask serving task i
    cost: float
    nodes: int = 0                     # search nodes visited (branch and bound effort)


def objective_of(table: np.ndarray, groups: Sequence[int]) -> float:
    """Σ_i max over chosen groups of s(G, i); -inf when a task is not covered."""
    if not groups:
        return -math.inf
    best = table[list(groups)].max(axis=0)
    if not np.all(np.isfinite(best)):
        return -math.inf
    return math.fsum(float(v) for v in best)


def _key(table: np.ndarray, groups: Sequence[int]) -> tuple:
    """Larger is better: score, then fewer groups, fewer members, smaller masks."""
    gs = sorted(groups)
    return (objective_of(table, gs), -len(gs), -sum(bin(g).count("1") for g in gs),
            tuple(-g for g in gs))


def assign(table: np.ndarray, groups: Sequence[int]) -> tuple[int, ...]:
    """Each task's serving group: best score; ties to the smaller group, then the smaller mask."""
    n = table.shape[1]
    out = []
    for i in range(n):
        cands = [g for g in groups if g >> i & 1]
        if not cands:
            raise ValueError(f"task {i} is not covered")
        out.append(max(cands, key=lambda g: (table[g, i], -bin(g).count("1"), -g)))
    return tuple(out)


def _result(table, groups, cost, nodes=0) -> Selection:
    gs = tuple(sorted(groups))
    return Selection(gs, objective_of(table, gs), assign(table, gs), cost(gs) if callable(cost) else cost, nodes)


def _check(table: np.ndarray, budget: float, cost: Callable[[int], float]) -> list[int]:
    n = table.shape[1]
    cands = list(range(1, 1 << n))
    for g in cands:
        c = cost(g)
        if not (c > 0 and math.isfinite(c)):
            raise ValueError(f"group {g:#x} has cost {c}; costs must be positive")
    if not math.isfinite(budget) or budget < min(cost(g) for g in cands):
        raise TamcInputError(f"budget {budget:g} is smaller than the cheapest group's cost ({min(cost(g) for g in cands):g})")
    return cands


def exhaustive(affinity: np.ndarray | None = None, budget: float = 1.0, costs: Costs = None, *,
               table: np.ndarray | None = None) -> Selection:
    """Reference: every set of groups within the budget; exponential, for tests and small N."""
    table = group_scores(affinity) if table is None else table
    cost = _cost_fn(costs)
    cands = _check(table, budget, cost)
    best, best_key = None, None

    def walk(start: int, chosen: list[int], left: float) -> None:
        nonlocal best, best_key
        if chosen:
            k = _key(table, chosen)
            if k[0] > -math.inf and (best_key is None or k > best_key):
                best, best_key = list(chosen), k
        for idx in range(start, len(cands)):
            c = cost(cands[idx])
            if c <= left + _EPS:
                chosen.append(cands[idx])
                walk(idx + 1, chosen, left - c)
                chosen.pop()

    walk(0, [], budget)
    if best is None:
        raise TamcInputError(f"no set of groups within budget {budget:g} covers every task")
    return _result(table, best, lambda gs: math.fsum(cost(g) for g in gs))


def branch_and_bound(affinity: np.ndarray | None = None, budget: float = 1.0, costs: Costs = None, *,
                     table: np.ndarray | None = None) -> Selection:
    """Alg. 2 (GETBESTNETWORKS): depth-first over sets of groups, pruned by an upper bound.

    At each node (running solution S, candidates C, budget left b):
    FILTER drops candidates costing more than b or improving no task of S (an uncovered
    task counts as -inf, so any group holding it improves it); SORT puts the largest
    improvement first, so good solutions come early and prune more. A node is cut when
    even an optimistic completion cannot reach the best score found. The bound is the
    smaller of (a) each task taking its best remaining score and (b) a fractional
    knapsack over the candidates' improvements: a group's improvement only shrinks as
    groups are added (the objective is a sum of maxima), so the improvements measured
    against S, packed greedily by improvement per unit cost, bound any completion.
    """
    table = group_scores(affinity) if table is None else table
    cost = _cost_fn(costs)
    cands = _check(table, budget, cost)
    n = table.shape[1]
    costs_arr = {g: cost(g) for g in cands}
    best: list[int] | None = None
    best_key: tuple | None = None
    nodes = 0

    def search(chosen: list[int], pool: list[int], left: float, cur: np.ndarray) -> None:
        nonlocal best, best_key, nodes
        nodes += 1
        if chosen and np.all(np.isfinite(cur)):
            k = _key(table, chosen)
            if best_key is None or k > best_key:
                best, best_key = list(chosen), k
        pool = [g for g in pool if costs_arr[g] <= left + _EPS and np.any(table[g] > cur)]
        if not pool:
            return
        rows = table[pool]
        # an uncovered task can end no lower than its worst remaining score
        floor = np.where(np.isfinite(cur), cur, np.where(np.isfinite(rows), rows, np.inf).min(axis=0))
        reach = np.maximum(floor, rows.max(axis=0))
        if not np.all(np.isfinite(reach)):
            return  # some task can no longer be covered
        gains = np.where(rows > floor, rows - floor, 0.0).sum(axis=1)
        if best_key is not None:
            bound_a = float(reach.sum())
            order = np.argsort(-gains / np.array([costs_arr[g] for g in pool]), kind="stable")
            room, extra = left, 0.0
            for j in order:
                c = costs_arr[pool[j]]
                if c <= room:
                    extra += gains[j]
                    room -= c
                else:
                    extra += gains[j] * room / c
                    break
            bound = min(bound_a, float(floor.sum()) + extra)
            if bound < best_key[0] - _EPS * max(1.0, abs(best_key[0])):
                return
        # most promising first: improvement over S, then the cheaper, then the smaller mask
        ranked = sorted(range(len(pool)), key=lambda j: (-gains[j], costs_arr[pool[j]], pool[j]))
        pool = [pool[j] for j in ranked]
        for idx, g in enumerate(pool):
            chosen.append(g)
            search(chosen, pool[idx + 1:], left - costs_arr[g], np.maximum(cur, table[g]))
            chosen.pop()

    search([], cands, budget, np.full(n, -np.inf))
    if best is None:
        raise TamcInputError(f"no set of groups within budget {budget:g} covers every task")
    return _result(table, best, lambda gs: math.fsum(costs_arr[g] for g in gs), nodes)


def select_groups(affinity: np.ndarray, budget: float, costs: Costs = None) -> Selection:
    """The optimal groups for ``affinity`` within ``budget`` (branch and bound)."""
    return branch_and_bound(affinity, budget, costs)


def grouping_parts(tasks: Sequence[str], affinity: np.ndarray, budget: float,
                   costs: Costs = None) -> dict:
    """Select groups for named tasks: the ``groups``/``group_scores``/``assignment``/
    ``objective`` fields of grouping.json (group ids per docs/CONTRACT.md)."""
    table = group_scores(affinity)
    sel = branch_and_bound(budget=budget, costs=costs, table=table)
    return {**describe(tasks, table, sel.groups, sel.assignment), "objective": sel.objective,
            "cost": sel.cost, "nodes": sel.nodes}


def describe(tasks: Sequence[str], table: np.ndarray, groups: Sequence[int],
             assignment: Sequence[int] | None = None) -> dict:
    """Group ids, member scores and the assignment of given masks, in grouping.json form."""
    from ..contract import group_id

    def name(g: int) -> str:
        ms = [tasks[i] for i in members(g)]
        try:
            return group_id(ms)
        except ValueError:  # not tamc task names (tests, other task sets): keep the given order
            return "+".join(ms)

    if assignment is None:
        assignment = assign(table, groups)
    gid = {g: name(g) for g in groups}
    return {
        "groups": [[tasks[i] for i in members(g)] for g in groups],
        "group_scores": {gid[g]: {tasks[i]: float(table[g, i]) for i in members(g)} for g in groups},
        "assignment": {tasks[i]: gid[assignment[i]] for i in range(len(tasks))},
    }
