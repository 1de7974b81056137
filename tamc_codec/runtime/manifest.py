"""Model manifests: canonical form, model id, validation (docs/MODEL.md). Stdlib only."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..contract import TASKS, group_tasks
from ..errors import TamcModelError

MODEL_SCHEMA = "tamc.model/1"
MANIFEST = "manifest.json"
# What a child's entropy model takes of its decoded parent (docs/MODEL.md); a manifest without
# "parent_input" means the first, so earlier models keep their ids.
PARENT_INPUTS = ("dequantised", "quantised")
DEFAULT_PARENT_INPUT = PARENT_INPUTS[0]


def scene_factor(size: int, height: int, width: int) -> int:
    """CONTRACT.md, scene scale: the power of two f that brings max(height, width) / f nearest to
    `size` in ratio (never below 1). Integer arithmetic: encoder and decoder always agree."""
    longest, k = max(height, width), 0
    while longest * longest >= 2 * (size << k) ** 2:
        k += 1
    return 1 << k


def model_id(manifest: dict) -> str:
    """CONTRACT.md: first 16 bytes of the SHA-256 of the canonical manifest without model_id."""
    body = {k: v for k, v in manifest.items() if k != "model_id"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    return hashlib.sha256(canon).hexdigest()[:32]


def dag_ancestors(parents: dict[str, str | None], group: str) -> list[str]:
    """`group`'s ancestors along the DAG's `parents`, nearest first."""
    up: list[str] = []
    g = parents[group]
    while g is not None and g not in up:
        up.append(g)
        g = parents[g]
    return up


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TamcModelError(f"{folder}: not a tamc model (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise TamcModelError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("schema") != MODEL_SCHEMA:
        raise TamcModelError(f"{path}: not a {MODEL_SCHEMA} manifest")
    try:
        for g in m["groups"]:
            group_tasks(g)
        for t, g in m["serving"].items():
            if t not in TASKS or g not in m["groups"] or t not in group_tasks(g):
                raise ValueError(f"task {t} served by {g}")
        for g in m["groups"]:
            p = m["dag"]["parents"][g]
            if p is not None and m["dag"]["order"].index(p) >= m["dag"]["order"].index(g):
                raise ValueError(f"parent {p} of {g} comes after it")
        _check_pictures(m)
        for t, spec in m["decoders"].items():
            context = spec.get("context", [])
            ancestors = dag_ancestors(m["dag"]["parents"], m["serving"][t])
            if len(set(context)) != len(context) or not set(context) <= set(ancestors):
                raise ValueError(f"the {t} decoder's context must list ancestors of its group")
            if ("context" in spec["inputs"]) != bool(context):
                raise ValueError(f"the {t} decoder takes a context input exactly when it names its context")
        if m.get("parent_input", DEFAULT_PARENT_INPUT) not in PARENT_INPUTS:
            raise ValueError(f"unknown parent_input {m['parent_input']!r}")
        if not all(isinstance(i, str) and len(i) == 32 for i in m.get("same_coding_as", [])):
            raise ValueError("same_coding_as lists model ids (32 hex digits)")
        fixed = m.get("fixed_hyper", [])
        if not (isinstance(fixed, list) and len(set(fixed)) == len(fixed)
                and set(fixed) <= set(m["groups"]) - set(m.get("pictures", {}))):
            raise ValueError("fixed_hyper lists learned groups of the model, each once")
        if "scene_scale" in m:
            sc = m["scene_scale"]
            if not (isinstance(sc["size"], int) and sc["size"] > 0 and set(sc["groups"]) <= set(m["groups"])
                    and set(sc.get("tasks", ())) <= set(m["serving"])):
                raise ValueError("scene_scale needs a positive integer size, groups of the model and tasks it serves")
    except (KeyError, ValueError, TypeError) as exc:
        raise TamcModelError(f"{path}: inconsistent manifest ({exc})") from None
    if m.get("model_id") != model_id(m):
        raise TamcModelError(f"{path}: model_id does not match the manifest's content")
    return m


#: Picture layers (docs/MODEL.md): their codings, the tasks they may serve, their scale divisors.
#: Kept here, beside the manifest's other rules, and in runtime.picture, which codes them.
PICTURE_CODINGS = ("avif",)
PICTURE_TASKS = ("edge", "keypoint", "rgb")
PICTURE_SCALES = (1, 2, 4)


def _check_pictures(m: dict) -> None:
    """The `pictures` section: each a group of the model, a DAG root that is no group's parent,
    serving only tasks of the picture, with no graphs or decoders, and settings for every quality."""
    pictures = m.get("pictures", {})
    if not isinstance(pictures, dict):
        raise ValueError("pictures maps group ids to their coding")
    parents = m["dag"]["parents"]
    for g, spec in pictures.items():
        if g not in m["groups"]:
            raise ValueError(f"picture group {g} is not a group of the model")
        if spec.get("coding") not in PICTURE_CODINGS:
            raise ValueError(f"picture group {g}: unknown coding {spec.get('coding')!r}")
        if parents[g] is not None or g in parents.values():
            raise ValueError(f"picture group {g} must be a DAG root and no group's parent")
        served = [t for t, sg in m["serving"].items() if sg == g]
        if not set(served) <= set(PICTURE_TASKS):
            raise ValueError(f"picture group {g} may serve only {', '.join(PICTURE_TASKS)}")
        if g in m.get("graphs", {}) or any(m["serving"].get(t) == g for t in m["decoders"]):
            raise ValueError(f"picture group {g} has no graphs and no task decoders")
        qualities = spec["qualities"]
        if [s["q"] for s in qualities] != [q["q"] for q in m["qualities"]]:
            raise ValueError(f"picture group {g} needs settings for every quality, in order")
        for s in qualities:
            if s["scale"] not in PICTURE_SCALES or not isinstance(s["avif"], dict):
                raise ValueError(f"picture group {g}, quality {s['q']}: scale must be one of "
                                 f"{PICTURE_SCALES} and avif a dict of encoder options")
    for t, g in m["serving"].items():
        if g not in pictures and t not in m["decoders"]:
            raise ValueError(f"task {t} has no decoder")


REFERENCE_SCHEMA = "tamc.reference/1"
REFERENCE = "reference.json"


def read_reference(folder: str | Path, model_id_: str) -> dict | None:
    """The model's reference.json (CONTRACT.md, Models) when it belongs to this model, else None:
    a reference written for another export of the folder must not normalise this one's losses."""
    try:
        ref = json.loads((Path(folder) / REFERENCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(ref, dict) or ref.get("schema") != REFERENCE_SCHEMA or ref.get("model_id") != model_id_:
        return None
    trivial = ref.get("trivial_loss")
    if not isinstance(trivial, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in trivial.values()):
        return None
    return ref


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
