"""Put the layers of two exported models into one (docs/MODEL.md, "Merging models").

A group trained on its own (`tamc train start-group`, then stage 2 and export) becomes a layer of
an existing model without touching that model's layers: every graph of both is copied byte for
byte, only the files of the base's groups are renumbered and their tables renamed to match. The
added model's groups come first in the coding order, as DAG roots, and serve the tasks they
serve in the added model; a base group left serving nothing is dropped, since coding it would
only cost bits. The base's remaining layers therefore code exactly the bits they coded before.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..contract import TASKS
from ..errors import TamcInputError
from ..runtime.manifest import DEFAULT_PARENT_INPUT, REFERENCE, read_manifest
from .model_folder import copy_group, write_model_folder

#: what must be equal for the two models' layers to live in one file
SHARED_KEYS = ("format_version", "latent_channels", "latent_stride", "padding_multiple", "input", "weights_precision")


def _tables(folder: Path, manifest: dict) -> dict[str, np.ndarray]:
    with np.load(folder / manifest["tables"]) as z:
        return {k: z[k] for k in z.files}


def merge_models(base_dir: str | Path, added_dir: str | Path, out_dir: str | Path, *, name: str,
                 provenance: dict | None = None) -> dict:
    """Write a model coding `added_dir`'s groups (roots, first) and `base_dir`'s still-serving groups."""
    base_dir, added_dir, out = Path(base_dir), Path(added_dir), Path(out_dir)
    if out.resolve() in (base_dir.resolve(), added_dir.resolve()):
        raise TamcInputError("write the merged model to another folder than its sources")
    base, added = read_manifest(base_dir), read_manifest(added_dir)
    if base.get("pictures") or added.get("pictures"):
        raise TamcInputError("merge the models' learned layers first, then add the picture layer "
                             "(tamc train picture-layer): a model with a picture layer cannot be merged")
    for key in SHARED_KEYS:
        if base.get(key) != added.get(key):
            raise TamcInputError(f"the models differ in {key} ({base.get(key)!r} / {added.get(key)!r})")
    if len(base["qualities"]) != len(added["qualities"]):
        raise TamcInputError(f"the models have {len(base['qualities'])} and {len(added['qualities'])} qualities")
    if set(added["groups"]) & set(base["groups"]):
        raise TamcInputError("the models share a group; rename or drop one first")
    if any(added["dag"]["parents"][g] for g in added["groups"]):
        raise TamcInputError(f"{added_dir}: only models whose groups are all DAG roots can be added")
    base_tables, added_tables = _tables(base_dir, base), _tables(added_dir, added)
    gauss = sorted(k for k in base_tables if k.startswith("gauss/"))
    # the scale table is float64 built with exp/log, whose last bit differs between numpy builds; the
    # merged file keeps the base's, so encoder and decoder still agree on every bin
    if gauss != sorted(k for k in added_tables if k.startswith("gauss/")) or not all(
            np.allclose(base_tables[k], added_tables[k], rtol=1e-12, atol=0) if k.endswith("scale_table")
            else np.array_equal(base_tables[k], added_tables[k]) for k in gauss):
        raise TamcInputError("the models' Gaussian coder tables differ: their layers cannot share a file")

    serving = {t: g for t, g in base["serving"].items()}
    serving.update(added["serving"])
    kept = [g for g in base["groups"] if g in serving.values()]
    # a dropped group may not be the parent of a kept one: that layer would lose its context
    dropped = set(base["groups"]) - set(kept)
    orphans = [g for g in kept if base["dag"]["parents"][g] in dropped]
    if orphans:
        raise TamcInputError(f"{', '.join(orphans)} would lose {base['dag']['parents'][orphans[0]]}, its DAG parent")
    groups = list(added["groups"]) + kept
    files: dict[str, bytes] = {}
    graphs: dict[str, dict] = {}
    tables = {k: base_tables[k] for k in gauss}
    for src_dir, src, src_tables in ((added_dir, added, added_tables), (base_dir, base, base_tables)):
        for g in src["groups"]:
            if g not in groups:
                continue
            graphs[g] = copy_group(src_dir, src, src_tables, g, groups.index(g), tables, files)
    decoders = {}
    for t in TASKS:
        if t not in serving:
            continue
        src_dir, src = (added_dir, added) if t in added["serving"] else (base_dir, base)
        spec = src["decoders"][t]
        files[spec["file"]] = (src_dir / spec["file"]).read_bytes()
        decoders[t] = dict(spec)
    buf = io.BytesIO()
    np.savez_compressed(buf, **tables)
    files["tables.npz"] = buf.getvalue()

    scene_groups = sorted({*base.get("scene_scale", {}).get("groups", ()), *added.get("scene_scale", {}).get("groups", ())}
                          & set(groups))
    # tasks decoded at scene scale from a full-size group: only those the base still serves that way
    scene_tasks = [t for t in base.get("scene_scale", {}).get("tasks", ()) if serving[t] in kept
                   and serving[t] not in scene_groups]
    # the base's scene size matters only where one of its kept groups or tasks works at scene scale
    base_scene = base.get("scene_scale") or {}
    base_uses_it = bool(set(base_scene.get("groups", ())) & set(kept) or scene_tasks)
    sizes = {sc["size"] for sc in (base_scene if base_uses_it else None, added.get("scene_scale")) if sc}
    if len(sizes) > 1:
        raise TamcInputError(f"the models' scene scales differ ({sorted(sizes)})")
    parents = {g: None for g in added["groups"]}
    parents.update({g: base["dag"]["parents"][g] for g in kept})
    manifest = {
        "schema": base["schema"],
        "name": name,
        "format_version": base["format_version"],
        "tasks": [t for t in TASKS if t in serving],
        "groups": groups,
        "serving": {t: serving[t] for t in TASKS if t in serving},
        "dag": {"order": groups, "parents": parents},
        # each quality's λ per group: the groups were trained apart, each with its own
        "qualities": [{"q": qa["q"], "lambda": qb["lambda"],
                       "lambda_by_group": {**{g: qa["lambda"] for g in added["groups"]},
                                           **{g: qb["lambda"] for g in kept}},
                       **({"gain_blend": qb["gain_blend"]} if "gain_blend" in qb else {})}
                      for qa, qb in zip(added["qualities"], base["qualities"])],
        **{k: base[k] for k in ("padding_multiple", "latent_channels", "latent_stride", "input")},
        "task_normalisation": {t: (added if t in added["serving"] else base)["task_normalisation"][t]
                               for t in TASKS if t in serving},
        "graphs": graphs,
        "decoders": decoders,
        "tables": "tables.npz",
        "weights_precision": base["weights_precision"],
        "provenance": {**(provenance or {}), "merged": {
            "base": {"model_id": base["model_id"], "path": str(base_dir), "groups": kept},
            "added": {"model_id": added["model_id"], "path": str(added_dir), "groups": list(added["groups"]),
                      "provenance": added.get("provenance", {})}}},
        "files": {},
    }
    if base.get("parent_input", DEFAULT_PARENT_INPUT) != DEFAULT_PARENT_INPUT:
        manifest["parent_input"] = base["parent_input"]
    fixed = [g for g in groups if g in added.get("fixed_hyper", ()) or g in base.get("fixed_hyper", ())]
    if fixed:
        manifest["fixed_hyper"] = fixed
    if scene_groups or scene_tasks:
        manifest["scene_scale"] = {"size": sizes.pop(), "groups": scene_groups,
                                   **({"tasks": scene_tasks} if scene_tasks else {})}
    trivial = {}
    for src_dir, src in ((base_dir, base), (added_dir, added)):
        try:
            ref = json.loads((src_dir / REFERENCE).read_text())
            trivial.update({t: v for t, v in ref["trivial_loss"].items() if src["serving"].get(t) in groups
                            and (t in added["serving"]) == (src is added)})
        except (OSError, ValueError, KeyError):
            pass
    manifest = write_model_folder(out, manifest, files, {t: trivial[t] for t in TASKS if t in trivial},
                                  f"merged from {base['model_id']} and {added['model_id']}")
    return manifest


__all__ = ["merge_models"]
