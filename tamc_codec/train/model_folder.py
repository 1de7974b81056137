"""Writing a model folder (docs/MODEL.md, "Files"): torch-free, shared by every step that makes
a model (export, decoder replacement, merging, picture layers, fixed hyper-latents)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..runtime.manifest import MANIFEST, REFERENCE, REFERENCE_SCHEMA, model_id

__all__ = ["copy_group", "group_tables", "previous_files", "write_model_folder"]


_GROUP_TABLE = re.compile(r"^(z(\d+)/.*|gain(\d+)|inv_gain(\d+))$")


def group_tables(tables: dict[str, np.ndarray], k: int, new_k: int) -> dict[str, np.ndarray]:
    """Group k's tables under group new_k's names."""
    out = {}
    for key, value in tables.items():
        m = _GROUP_TABLE.match(key)
        if m and int(next(i for i in m.groups()[1:] if i is not None)) == k:
            out[re.sub(r"\d+", str(new_k), key, count=1)] = value
    return out


def copy_group(src_dir: Path, src: dict, src_tables: dict, group: str, new_k: int,
               tables: dict, files: dict[str, bytes]) -> dict:
    """Copy `group` of the model in `src_dir` (manifest `src`, tables `src_tables`) into a new model
    as its group `new_k`: its tables renamed into `tables`, its graphs byte for byte into `files`;
    returns the group's graph specs for the new manifest."""
    tables.update(group_tables(src_tables, src["groups"].index(group), new_k))
    graphs = {}
    for part, spec in src["graphs"][group].items():
        fname = f"g{new_k}_{part}.onnx"
        files[fname] = (Path(src_dir) / spec["file"]).read_bytes()
        graphs[part] = {**spec, "file": fname}
    return graphs


def previous_files(folder: Path) -> set[str]:
    """The files the model now in `folder` lists (none when there is none)."""
    try:
        listed = json.loads((folder / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return set()
    # only plain names inside the folder: a damaged manifest must not reach other paths
    return {f for f in listed if isinstance(f, str) and f == Path(f).name and f != MANIFEST}


def write_model_folder(out: str | Path, manifest: dict, files: dict[str, bytes],
                       trivial_loss: dict[str, float] | None = None, reference_source: str = "") -> dict:
    """Write `files` and `manifest` (its "files" hashes and model id filled in here) to `out`, and
    reference.json when `trivial_loss` is given; returns the manifest.

    Every file is written atomically and the manifest last but one, so a reader never pairs a new
    manifest with old graphs. Graphs of the model this one replaces that it no longer lists are
    removed; files no manifest listed, such as the model card, are the user's and stay."""
    out = Path(out)
    manifest = {k: v for k, v in manifest.items() if k != "model_id"}
    manifest["files"] = {f: hashlib.sha256(d).hexdigest() for f, d in sorted(files.items())}
    manifest["model_id"] = model_id(manifest)
    previous = previous_files(out)
    out.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        atomic_write_bytes(out / fname, data)
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    if trivial_loss:
        reference = {"schema": REFERENCE_SCHEMA, "model_id": manifest["model_id"],
                     "trivial_loss": dict(trivial_loss), "source": reference_source}
        atomic_write_bytes(out / REFERENCE, (json.dumps(reference, indent=2) + "\n").encode())
    for fname in previous - set(files):
        (out / fname).unlink(missing_ok=True)
    return manifest
