"""``grouping.json`` (docs/CONTRACT.md, "Files exchanged between pipeline stages"): build,
validate, save and load. Pure Python (no numpy needed to read one back).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..contract import TASK_CODES, group_id, group_tasks, sort_tasks
from ..atomic import atomic_write_bytes
from ..errors import TamcInputError

SCHEMA = "tamc.grouping/1"
METHODS = ("lookahead", "dmtg")
REQUIRED = ("schema", "method", "tasks", "affinity", "groups", "group_scores", "assignment",
            "serving", "objective", "budget", "settings", "runtime_s", "data")


def _matrix(x: Any) -> list[list[float]]:
    return [[float(v) for v in row] for row in x]


def build_grouping(*, method: str, tasks: Sequence[str], affinity, groups: Sequence[Sequence[str]],
                   group_scores: Mapping[str, Mapping[str, float]], assignment: Mapping[str, str],
                   budget: float, settings: Mapping[str, Any], runtime_s: float,
                   data: Mapping[str, Any], affinity_std=None, objective: float | None = None,
                   **extra: Any) -> dict:
    """A validated grouping dict; ``serving`` starts equal to ``assignment``.

    ``groups`` are member lists (any order); ``objective`` defaults to the sum of each
    task's score in its assigned group. Extra keyword arguments become extra keys.
    """
    ids = sorted({group_id(g) for g in groups}, key=_group_order)
    if objective is None:
        objective = math.fsum(float(group_scores[assignment[t]][t]) for t in tasks)
    d = {
        "schema": SCHEMA,
        "method": method,
        "tasks": list(tasks),
        "affinity": None if affinity is None else _matrix(affinity),
    }
    if affinity_std is not None:
        d["affinity_std"] = _matrix(affinity_std)
    d.update({
        "groups": ids,
        "group_scores": {g: {t: float(group_scores[g][t]) for t in group_tasks(g)} for g in ids},
        "assignment": {t: assignment[t] for t in tasks},
        "serving": {t: assignment[t] for t in tasks},
        "objective": float(objective),
        "budget": float(budget),
        "settings": dict(settings),
        "runtime_s": float(runtime_s),
        "data": dict(data),
    })
    d.update(extra)
    validate_grouping(d)
    return d


def _group_order(gid: str) -> tuple:
    # bigger groups first, then by code order of members, so files read top-down
    ms = gid.split("+")
    return (-len(ms), [TASK_CODES.get(t, 99) for t in ms])


def _fail(msg: str) -> None:
    raise TamcInputError(f"grouping.json: {msg}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_matrix(name: str, m: Any, n: int) -> None:
    if not (isinstance(m, list) and len(m) == n and all(isinstance(r, list) and len(r) == n for r in m)):
        _fail(f"{name} must be a {n}x{n} list of lists (one row per task)")
    if not all(_number(v) for r in m for v in r):
        _fail(f"{name} holds a value that is not a finite number")


def validate_grouping(d: Any) -> None:
    """Raise TamcInputError naming the first violation of the grouping.json schema."""
    if not isinstance(d, dict):
        _fail("not a JSON object")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        _fail(f"missing keys: {', '.join(missing)}")
    if d["schema"] != SCHEMA:
        _fail(f"schema is {d['schema']!r}, expected {SCHEMA!r}")
    if d["method"] not in METHODS:
        _fail(f"method must be one of {', '.join(METHODS)} (got {d['method']!r})")
    tasks = d["tasks"]
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        _fail("tasks must be a non-empty list of task names")
    try:
        canonical = sort_tasks(tasks)
    except ValueError as exc:
        _fail(str(exc))
    if canonical != tasks:
        _fail(f"tasks must be canonical names in code order without repeats (expected {canonical})")
    n = len(tasks)
    if d["affinity"] is None:
        if d["method"] != "dmtg" or "assignment_probs" not in d:
            _fail("affinity may be null only for method dmtg with assignment_probs")
    else:
        _check_matrix("affinity", d["affinity"], n)
    if "affinity_std" in d and d["affinity_std"] is not None:
        _check_matrix("affinity_std", d["affinity_std"], n)
    if "assignment_probs" in d:
        p = d["assignment_probs"]
        if not (isinstance(p, list) and len(p) == n and all(isinstance(r, list) and r and all(_number(v) for v in r) for r in p)):
            _fail("assignment_probs must be one row of numbers per task")
    groups = d["groups"]
    if not isinstance(groups, list) or not groups:
        _fail("groups must be a non-empty list of group ids")
    for g in groups:
        if not isinstance(g, str):
            _fail(f"group id {g!r} is not a string")
        try:
            ms = group_tasks(g)
        except ValueError as exc:
            _fail(str(exc))
        stray = [t for t in ms if t not in tasks]
        if stray:
            _fail(f"group {g} names tasks not in tasks: {', '.join(stray)}")
    if len(set(groups)) != len(groups):
        _fail("groups has repeats")
    scores = d["group_scores"]
    if not isinstance(scores, dict) or set(scores) != set(groups):
        _fail("group_scores must have exactly one entry per group")
    for g, s in scores.items():
        if not isinstance(s, dict) or set(s) != set(group_tasks(g)):
            _fail(f"group_scores[{g!r}] must score exactly the group's members")
        if not all(_number(v) for v in s.values()):
            _fail(f"group_scores[{g!r}] holds a value that is not a finite number")
    for key in ("assignment", "serving"):
        m = d[key]
        if not isinstance(m, dict) or set(m) != set(tasks):
            _fail(f"{key} must map every task to a group")
        for t, g in m.items():
            if g not in groups:
                _fail(f"{key}[{t!r}] = {g!r} is not one of the groups")
            if t not in group_tasks(g):
                _fail(f"{key}[{t!r}] = {g!r} does not contain {t}")
    for key in ("objective", "runtime_s"):
        if not _number(d[key]):
            _fail(f"{key} must be a finite number")
    if d["runtime_s"] < 0:
        _fail("runtime_s must not be negative")
    if not _number(d["budget"]) or d["budget"] <= 0:
        _fail("budget must be a positive number")
    for key in ("settings", "data"):
        if not isinstance(d[key], dict):
            _fail(f"{key} must be an object")


def dumps_grouping(d: Mapping) -> str:
    return json.dumps(d, indent=2) + "\n"


def save_grouping(d: Mapping, path: str | os.PathLike) -> Path:
    """Validate and write atomically: a reader sees the old file or the new, never half."""
    validate_grouping(d)
    dest = Path(path)
    atomic_write_bytes(dest, dumps_grouping(d).encode("utf-8"))
    return dest


def load_grouping(path: str | os.PathLike) -> dict:
    """Read and validate a grouping.json."""
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TamcInputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TamcInputError(f"{p}: not a readable grouping.json ({exc})") from None
    try:
        validate_grouping(d)
    except TamcInputError as exc:
        raise TamcInputError(f"{p}: {exc}") from None
    return d
