"""Writing a model folder (docs/MODEL.md, "Files"): torch-free, shared by every step that makes
a model (export, decoder replacement, merging, picture layers, fixed hyper-latents)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..runtime.manifest import MANIFEST, REFERENCE, REFERENCE_SCHEMA, model_id

__all__ = ["previous_files", "write_model_folder"]


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
