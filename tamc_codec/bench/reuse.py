"""`tamc bench --reuse DIR`: the classical rows of an earlier run, where they would come out the same.

A classical row (a codec variant's setting: its rate, and every task's loss and metrics over the
bench's images) depends on the pictures and labels, the codec libraries, the encoder settings and
the anchor's networks that analyse the decoded picture, not on the tamc model being measured. Every
run records what its rows depend on (``provenance.classical_inputs``, :func:`classical_inputs`);
``--reuse`` takes the rows of an earlier run whose record matches this run's and computes the rest.
The rows are the per-setting means over the same images, so the summary built from them is the one
a run without --reuse builds (docs/BENCH.md, Reusing classical rows).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import TamcInputError
from . import baselines

#: The library versions a classical row's bytes and decoded pixels depend on (run._versions's keys).
CODEC_VERSIONS = ("pillow", "libjpeg", "libwebp", "libavif", "avif_codecs")
RESULTS = "results.json"


def digest(obj) -> str:
    """SHA-256 of an object's canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _files_digest(paths: list[Path]) -> str:
    """SHA-256 over the files' names and contents, in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def data_fingerprint(images) -> dict:
    """What the bench reads of its data folder (evaluate.BenchImages): the number of images and a
    SHA-256 over the names and bytes of the files it reads, per task ('rgb': the pictures; a
    generated folder's label files per task; an image folder's labels are filters of its pictures)."""
    n = images.count
    if images.kind == "scenes":
        root = images.folder.root
        names = [f"{i:06d}.png" for i in range(n)]
        streams = sorted(set(images.folder.tasks) | {"rgb"})
        sha = {t: _files_digest([root / t / name for name in names]) for t in streams}
    else:
        sha = {"rgb": _files_digest(list(images.folder.files[:n]))}
    return {"kind": images.kind, "images": n, "sha256": sha}


def classical_inputs(images, anchor, versions: dict) -> dict:
    """Everything this run's classical rows depend on besides the encoder settings (which
    provenance.codec_settings records per variant): data, codec libraries, anchor networks."""
    return {"data": data_fingerprint(images), "codec_versions": {k: versions.get(k) for k in CODEC_VERSIONS},
            "anchor": anchor.fingerprint()}


def _short(sha: str | None) -> str:
    return (sha or "none")[:12]


def _differences(here: dict, there: dict, tasks: list[str]) -> list[str]:
    """What differs between two runs' classical inputs, as far as this run's tasks are concerned."""
    out = []
    dh, dt = here["data"], there.get("data") or {}
    if dh["kind"] != dt.get("kind"):
        out.append(f"data kind ({dh['kind']} here, {dt.get('kind')} there)")
    elif dh["images"] != dt.get("images"):
        out.append(f"number of images ({dh['images']} here, {dt.get('images')} there)")
    else:
        sh, st = dh["sha256"], dt.get("sha256") or {}
        bad = [k for k in ["rgb", *tasks] if k in sh and k in st and sh[k] != st[k]]
        if "rgb" not in st:
            bad.insert(0, "rgb")
        if bad:
            out.append("data files (" + ", ".join("pictures" if k == "rgb" else f"{k} labels"
                                                  for k in dict.fromkeys(bad)) + ")")
    vh, vt = here["codec_versions"], there.get("codec_versions") or {}
    out += [f"{k} ({vh.get(k)} here, {vt.get(k)} there)" for k in CODEC_VERSIONS if vh.get(k) != vt.get(k)]
    ah, at = here["anchor"], there.get("anchor") or {}
    if ah["kind"] != at.get("kind"):
        out.append(f"anchor kind ({ah['kind']} here, {at.get('kind')} there)")
    else:
        rh, rt = ah.get("runtime") or {}, at.get("runtime") or {}
        out += [f"anchor runtime {k} ({rh.get(k)} here, {rt.get(k)} there)" for k in sorted(set(rh) | set(rt))
                if rh.get(k) != rt.get(k)]
        th, tt = ah["tasks"], at.get("tasks") or {}
        bad = [t for t in tasks if t in th and t in tt and th[t] != tt[t]]
        if bad:
            out.append(f"anchor networks for {', '.join(bad)} (sha256 {_short(th[bad[0]])}… here, "
                       f"{_short(tt[bad[0]])}… there)")
    return out


def _row_settings_match(ours: dict, theirs: dict | None, setting: int) -> bool:
    """Whether an earlier run coded `setting` of a variant as this run does (format, options, the
    options a setting below a codec's floor stands for, resampling)."""
    if not theirs:
        return False
    for key in ("format", "options", "scale_label", "resample"):
        if ours.get(key) != theirs.get(key):
            return False
    key = str(setting)
    return (ours.get("below_floor") or {}).get(key) == (theirs.get("below_floor") or {}).get(key)


class Reuse:
    """The rows of an earlier run that this run takes instead of computing them."""

    def __init__(self, folder: str | Path, inputs: dict, tasks: list[str], filter_tasks: list[str],
                 sweeps: dict[str, dict], log=print):
        self.folder = Path(folder)
        path = self.folder / RESULTS if self.folder.is_dir() or not self.folder.suffix else self.folder
        self.path = path
        where = f"--reuse {folder}"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise TamcInputError(f"{where}: no {path.name} there (a folder written by tamc bench)") from None
        except (OSError, ValueError) as exc:
            raise TamcInputError(f"{where}: cannot read {path} ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != "tamc.bench/1" or not isinstance(doc.get("curves"), dict):
            raise TamcInputError(f"{where}: {path} is not a tamc bench results.json (schema tamc.bench/1)")
        prov = doc.get("provenance") or {}
        there = prov.get("classical_inputs")
        if not there:
            raise TamcInputError(f"{where}: {path} (written {doc.get('created', '?')}) predates --reuse and records "
                                 "no provenance.classical_inputs (the data, codec and anchor fingerprints); run "
                                 "the bench once without --reuse")
        diff = _differences(inputs, there, tasks)
        if diff:
            raise TamcInputError(f"{where}: its classical rows were measured on other inputs: differ: "
                                 + "; ".join(diff))
        self.doc = doc
        theirs_settings = prov.get("codec_settings") or {}
        data_tasks = set(there["data"]["sha256"]) | ({"edge", "keypoint", "rgb"} if inputs["data"]["kind"] == "images"
                                                     else set())
        anchor_tasks = set(there["anchor"].get("tasks") or {})
        #: (curve name, setting) -> the earlier run's point
        self.rows: dict[tuple[str, int], dict] = {}
        stale: list[str] = []
        for name, sweep in sweeps.items():
            for q in sweep["values"]:
                if not _row_settings_match(sweep, theirs_settings.get(name), q):
                    if name in theirs_settings:
                        stale.append(f"{name} {q}")
                    continue
                for curve, need, checked in ((name, tasks, anchor_tasks & data_tasks),
                                             (name + baselines.FILTER_SUFFIX, filter_tasks, data_tasks)):
                    if not need:
                        continue
                    point = next((p for p in doc["curves"].get(curve, []) if p.get("setting") == q), None)
                    if (point is not None and point.get("images") == inputs["data"]["images"]
                            and all(t in point.get("tasks", {}) and t in checked for t in need)):
                        self.rows[(curve, q)] = point
        if stale:
            log(f"--reuse: {path} coded {', '.join(stale)} with other encoder settings; computing them here")

    def point(self, curve: str, setting: int, tasks: list[str], trivial: dict[str, float]) -> dict:
        """The earlier run's point for this run's tasks, each normalised_loss by this run's trivial
        losses (the one number of a row that depends on them, as Point.result computes it)."""
        p = self.rows[(curve, setting)]
        out = {k: v for k, v in p.items() if k != "tasks"}
        out["tasks"] = {}
        for t in tasks:
            r = dict(p["tasks"][t])
            r["normalised_loss"] = r["loss"] / trivial[t] if trivial.get(t) and r.get("loss") is not None else None
            out["tasks"][t] = r
        return out

    def record(self, computed: dict[str, list[int]], anchor_now: dict) -> dict:
        """provenance.reused: where the rows came from, which were taken and which computed here."""
        rows: dict[str, list[int]] = {}
        for curve, q in self.rows:
            rows.setdefault(curve, []).append(q)
        earlier = self.doc.get("anchor", {}).get("tasks", {})
        diffs = [abs(r["loss"] - earlier[t]["loss"]) / max(abs(earlier[t]["loss"]), 1e-12)
                 for t, r in anchor_now["tasks"].items() if t in earlier and earlier[t].get("loss") is not None]
        prov = self.doc.get("provenance") or {}
        return {"from": str(self.path), "created": self.doc.get("created"), "git_commit": prov.get("git_commit"),
                "model": (prov.get("model") or {}).get("id"), "rows": rows,
                "count": sum(len(v) for v in rows.values()),
                "computed": {k: v for k, v in computed.items() if v},
                "anchor_line_max_rel_diff": max(diffs) if diffs else None}


__all__ = ["CODEC_VERSIONS", "Reuse", "classical_inputs", "data_fingerprint", "digest"]
