"""Names, codes and ids shared by every part of tamc (see docs/CONTRACT.md).

Pure Python on purpose: the CLI imports this on every start, so it must stay
free of numpy/torch. Change docs/CONTRACT.md first, then this file.
"""
from __future__ import annotations

from typing import Iterable

#: Task names in code order; a task's code is its index here and never changes.
TASKS: tuple[str, ...] = ("seg", "depth", "normal", "edge", "keypoint", "rgb")
TASK_CODES: dict[str, int] = {name: code for code, name in enumerate(TASKS)}
#: Tasks that describe the scene rather than the picture's pixels: a group serving only these
#: may analyse large pictures at the training scenes' scale (CONTRACT.md, Models: scene scale).
SCENE_TASKS: tuple[str, ...] = ("seg", "depth", "normal")

#: Taskonomy's names, accepted by the CLI only (the library takes canonical names).
TASK_ALIASES: dict[str, str] = {
    "segment_semantic": "seg",
    "depth_zbuffer": "depth",
    "edge_texture": "edge",
    "keypoints2d": "keypoint",
    "autoencoder": "rgb",
}

#: Tasks whose labels are computed from the image itself, so any photo can be labelled.
IMAGE_DERIVED_TASKS: tuple[str, ...] = ("edge", "keypoint", "rgb")

#: Seed ranges of the generated-data splits: scene seed s belongs to the split whose
#: range holds it. The test split is rendered at 512x512 for reported numbers.
SPLIT_SEED_BASE: dict[str, int] = {"train": 0, "val": 1_000_000, "test": 2_000_000}
SPLIT_SEED_SPAN = 1_000_000

# Surface material sets of generated scenes (CONTRACT.md, "Material sets"); "wide" is for training splits only.
MATERIAL_SETS: tuple[str, ...] = ("standard", "wide")

GROUP_SEPARATOR = "+"


def split_of_seed(seed: int) -> str:
    """The split a scene seed belongs to."""
    for name, base in SPLIT_SEED_BASE.items():
        if base <= seed < base + SPLIT_SEED_SPAN:
            return name
    raise ValueError(f"scene seed {seed} is outside every split's range")


def sort_tasks(tasks: Iterable[str]) -> list[str]:
    """Canonical task names, deduplicated, in code order."""
    out = set()
    for t in tasks:
        if t not in TASK_CODES:
            raise ValueError(f"unknown task {t!r} (known: {', '.join(TASKS)})")
        out.add(t)
    return sorted(out, key=TASK_CODES.__getitem__)


def parse_task_list(text: str, *, allow_aliases: bool = True) -> list[str]:
    """Parse a CLI task list such as ``seg,depth`` or ``all`` into canonical names."""
    text = text.strip()
    if text == "all":
        return list(TASKS)
    names = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if allow_aliases:
            name = TASK_ALIASES.get(name, name)
        if name not in TASK_CODES:
            raise ValueError(
                f"unknown task {raw.strip()!r} (known: {', '.join(TASKS)}, or 'all')"
            )
        names.append(name)
    if not names:
        raise ValueError("no task given (known: " + ", ".join(TASKS) + ", or 'all')")
    return sort_tasks(names)


def group_id(tasks: Iterable[str]) -> str:
    """A group's id: its member task names in code order joined by '+'."""
    members = sort_tasks(tasks)
    if not members:
        raise ValueError("a group needs at least one task")
    return GROUP_SEPARATOR.join(members)


def group_tasks(gid: str) -> list[str]:
    """Inverse of :func:`group_id`; rejects ids that are not canonical."""
    members = gid.split(GROUP_SEPARATOR)
    if group_id(members) != gid:
        raise ValueError(f"{gid!r} is not a canonical group id (expected {group_id(members)!r})")
    return members


def task_mask(tasks: Iterable[str]) -> int:
    """Bit mask with bit ``code`` set for each task (used in the .tamc layer index)."""
    mask = 0
    for t in tasks:
        mask |= 1 << TASK_CODES[t]
    return mask


def mask_tasks(mask: int) -> list[str]:
    """Inverse of :func:`task_mask`; unknown bits raise ValueError."""
    if mask < 0 or mask >> len(TASKS):
        raise ValueError(f"task mask {mask:#x} has bits for unknown tasks")
    return [t for t in TASKS if mask >> TASK_CODES[t] & 1]
