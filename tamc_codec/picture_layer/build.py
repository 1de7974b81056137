"""A model whose picture tasks are served by a picture layer coded by AVIF (docs/MODEL.md, "Picture
layers"; `tamc train picture-layer`).

Takes an exported model, drops its groups that serve only edge, keypoint and rgb, and adds one
picture group serving those tasks: the picture itself, coded by AVIF through Pillow at each quality's
scale and settings. The settings are chosen by measurement on pictures no test saw (training or
validation): AVIF swept at 1, 1/2 and 1/4 of the picture's sides (the bench's `avif-best`
variants, bench.baselines), and for each quality's target rate the scale whose rgb PSNR is the
highest there (the lower envelope over scales), then that scale's AVIF quality whose mean rate is
nearest the target. The kept groups' graphs and tables are copied byte for byte, so their layers
code exactly the bits they coded in the source model.

numpy and Pillow only (no torch): a picture layer needs no training.
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np

from ..contract import TASKS, group_id
from ..errors import TamcInputError
from ..runtime.manifest import DEFAULT_PARENT_INPUT, PICTURE_TASKS, REFERENCE, read_manifest
from ..train.model_folder import copy_group, write_model_folder

#: Default target rates (bits per pixel of a picture layer on the validation scenes) of qualities
#: 1..5: from about the rate where AVIF's picture meets the bench's iso targets to about 1 bpp,
#: about ×2.3 apart.
DEFAULT_TARGETS = (0.03, 0.07, 0.16, 0.4, 1.0)
DEFAULT_IMAGES = 16
#: Settings a search may take: the bench's AVIF settings, below-floor ones included (bench.baselines).
SEARCH_RANGE = (-2, 100)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


# --------------------------------------------------------------------------- pictures


def read_pictures(folder: str | Path, limit: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """The pictures of a generated data folder (its rgb/ pictures) or of a folder of image files,
    in name order, as uint8 RGB; and their names."""
    from ..runtime.images import read_image

    root = Path(folder)
    src = root / "rgb" if (root / "rgb").is_dir() else root
    if not src.is_dir():
        raise TamcInputError(f"{folder}: no such folder")
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise TamcInputError(f"{src}: no pictures")
    return [read_image(p) for p in files], [str(p) for p in files]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 pictures (tasks.metrics.psnr, the bench's rgb metric)."""
    from ..tasks.metrics import psnr as _psnr

    return float(_psnr(a.astype(np.float64), b.astype(np.float64)))


def avif_options(setting: int) -> dict:
    """Pillow's AVIF save() keywords for a bench setting (below 0: bench.baselines.BELOW_FLOOR)."""
    from ..bench.baselines import encoder_args

    return encoder_args("avif", setting)


def setting_label(scale: int, setting: int) -> str:
    """`avif@1/4 -2`: the bench's variant name and setting."""
    from ..bench.baselines import variant_name

    return f"{variant_name('avif', scale)} {setting}"


#: What a picture group's settings are chosen on, per task it serves: rgb by PSNR (its human metric)
#: and by L1 (the bench's loss), edge and keypoint by the L1 of their filters (the bench's loss).
CRITERIA = {"rgb": ("psnr", "rgb"), "edge": ("edge",), "keypoint": ("keypoint",)}


def criteria_of(tasks: list[str]) -> list[str]:
    """The measurements a group serving `tasks` is chosen on (CRITERIA), in a fixed order."""
    return [c for t in ("rgb", "edge", "keypoint") if t in tasks for c in CRITERIA[t]]


class Measurer:
    """Mean rate, rgb PSNR and the picture tasks' losses of AVIF settings on a set of pictures,
    each setting measured once.

    The rate is the picture layer's payload (the AVIF file with its container deflated,
    bitstream.avif) over the picture's pixels; `avif_bpp` is the plain AVIF file's. The losses are
    the bench's: the L1 distance, in the networks' normalised units, between a task's filter of the
    decoded picture and of the original (rgb: the picture itself, over 255)."""

    def __init__(self, images: list[np.ndarray], threads: int | None = None, log=None):
        from ..runtime.picture import picture_prediction

        self.images = images
        self.threads = threads
        self.log = log
        self.cache: dict[tuple[int, int], dict] = {}
        self.reference = [{t: picture_prediction(t, img) for t in ("edge", "keypoint", "rgb")} for img in images]

    def __call__(self, scale: int, setting: int) -> dict:
        key = (scale, setting)
        if key not in self.cache:
            from ..bitstream.avif import pack_avif
            from ..runtime.picture import coded_size, decode_avif, downscale, encode_avif, picture_prediction, upscale

            bits = avif_bits = pixels = 0
            psnrs = []
            losses: dict[str, list[float]] = {t: [] for t in ("edge", "keypoint", "rgb")}
            t0 = time.perf_counter()
            for img, ref in zip(self.images, self.reference):
                h, w = img.shape[:2]
                data = encode_avif(downscale(img, scale), avif_options(setting), self.threads)
                bits += 8 * len(pack_avif(data))
                avif_bits += 8 * len(data)
                pixels += h * w
                out = upscale(decode_avif(data, coded_size(h, w, scale)), scale, h, w)
                psnrs.append(psnr(out, img))
                for t in losses:
                    losses[t].append(float(np.mean(np.abs(picture_prediction(t, out) - ref[t]))))
            self.cache[key] = {"scale": scale, "setting": setting, "bpp": bits / pixels,
                               "avif_bpp": avif_bits / pixels, "psnr_db": float(np.mean(psnrs)),
                               "loss": {t: float(np.mean(v)) for t, v in losses.items()}}
            if self.log:
                r = self.cache[key]
                self.log(f"  {setting_label(scale, setting):<14} {r['bpp']:.4f} bpp  {r['psnr_db']:.2f} dB  L1 "
                         + " ".join(f"{t} {v:.4f}" for t, v in r["loss"].items())
                         + f"  ({time.perf_counter() - t0:.1f} s)")
        return self.cache[key]


def _value(point: dict, criterion: str) -> float:
    """A criterion on a scale where it is linear in log rate: PSNR as it is, a loss as its log."""
    return point["psnr_db"] if criterion == "psnr" else math.log(point["loss"][criterion])


def _interpolate(points: list[dict], target: float, criterion: str = "psnr") -> float | None:
    """`criterion` at `target` bpp along a scale's curve (PSNR, or a loss's log, linear in log
    rate), None outside the curve's range."""
    pts = sorted(points, key=lambda p: p["bpp"])
    for a, b in zip(pts, pts[1:]):
        if a["bpp"] <= target <= b["bpp"]:
            va, vb = _value(a, criterion), _value(b, criterion)
            if b["bpp"] == a["bpp"]:
                return max(va, vb) if criterion == "psnr" else min(va, vb)
            t = (math.log(target) - math.log(a["bpp"])) / (math.log(b["bpp"]) - math.log(a["bpp"]))
            return va + t * (vb - va)
    return None


def excess(at: dict[int, dict[str, float | None]], criteria: list[str]) -> dict[int, float | None]:
    """Each scale's worst excess over the best scale at a rate, over `criteria`: the ratio of its
    loss (for PSNR, its mean squared error) to the lowest any scale reaches; None where a
    criterion is out of the scale's measured range."""
    out: dict[int, float | None] = {}
    for s, vals in at.items():
        worst = 1.0
        for c in criteria:
            if vals[c] is None:
                worst = None
                break
            known = [v[c] for v in at.values() if v[c] is not None]
            # log ratio of losses: a loss's log difference; PSNR: a tenth of the dB difference, in log(10) units
            gap = (max(known) - vals[c]) * math.log(10) / 10 if c == "psnr" else vals[c] - min(known)
            worst = max(worst, math.exp(gap))
        out[s] = worst
    return out


def _nearest_setting(measure: Measurer, scale: int, target: float, sweep: list[dict]) -> dict:
    """The setting of `scale` whose mean rate is nearest `target` (in log), by bisection between
    the swept settings that bracket it (rate grows with the setting)."""
    pts = sorted(sweep, key=lambda p: p["setting"])
    lo, hi = SEARCH_RANGE[0], SEARCH_RANGE[1]
    for p in pts:
        if p["bpp"] <= target:
            lo = max(lo, p["setting"])
        elif p["setting"] < hi:
            hi = p["setting"]
    lo_r, hi_r = measure(scale, lo), measure(scale, hi)
    if lo_r["bpp"] >= target:
        return lo_r
    if hi_r["bpp"] <= target:
        return hi_r
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = measure(scale, mid)
        if r["bpp"] <= target:
            lo, lo_r = mid, r
        else:
            hi, hi_r = mid, r
    return min((lo_r, hi_r), key=lambda r: abs(math.log(r["bpp"] / target)))


def choose_settings(images: list[np.ndarray] | Measurer, targets: list[float], threads: int | None = None,
                    log=print, known: list[dict] | None = None, criteria: list[str] | tuple[str, ...] = ("psnr",)) -> dict:
    """Per target rate, the scale of AVIF's lower envelope there and that scale's setting nearest
    the target; with every measurement made (the envelope's points). With several `criteria`
    (psnr, and the losses rgb, edge, keypoint: criteria_of) the scale whose worst excess over the
    best scale is least (excess). `images`: the pictures, or a Measurer already holding some
    measurements; `known`: measurements of an earlier run on the same pictures (its record's
    "measured"), not made again."""
    from ..bench import baselines
    from ..runtime.manifest import PICTURE_SCALES

    measure = images if isinstance(images, Measurer) else Measurer(images, threads, log)
    for r in known or ():
        if "loss" in r or criteria == ("psnr",) or list(criteria) == ["psnr"]:
            measure.cache.setdefault((int(r["scale"]), int(r["setting"])), dict(r))
    criteria = list(criteria)
    curves: dict[int, list[dict]] = {}
    for scale in [s for s in baselines.SCALES if s in PICTURE_SCALES]:  # not every scale of the bench's
        log(f"AVIF at scale {baselines.scale_label(scale)} on {len(measure.images)} pictures:")
        curves[scale] = [measure(scale, s) for s in baselines.sweep("avif", scale, quick=False)]
    chosen = []
    for q, target in enumerate(targets, 1):
        at = {s: {c: _interpolate(pts, target, c) for c in criteria} for s, pts in curves.items()}
        worst = excess(at, criteria)
        ranked = sorted((s for s in worst if worst[s] is not None), key=lambda s: worst[s])
        if not ranked:  # below or above every scale's range: the scale whose end is nearest
            ranked = sorted(curves, key=lambda s: min(abs(math.log(p["bpp"] / target)) for p in curves[s]))
        scale = ranked[0]
        log(f"q{q}: target {target:g} bpp, worst excess over the best scale on {', '.join(criteria)}: " + ", ".join(
            f"{baselines.scale_label(s)} {worst[s]:.3f}" if worst[s] is not None else f"{baselines.scale_label(s)} out of range"
            for s in curves) + f" -> scale {baselines.scale_label(scale)}")
        best = _nearest_setting(measure, scale, target, curves[scale])
        chosen.append({"q": q, "target_bpp": target, "scale": scale, "setting": best["setting"],
                       "label": setting_label(scale, best["setting"]), "bpp": best["bpp"],
                       "avif_bpp": best["avif_bpp"], "psnr_db": best["psnr_db"], "loss": best.get("loss"),
                       "criteria": criteria,
                       "excess": {baselines.scale_label(s): worst[s] for s in curves},
                       "envelope_psnr_db": {baselines.scale_label(s): _interpolate(pts, target) for s, pts in curves.items()}})
        log(f"q{q}: {chosen[-1]['label']}: {best['bpp']:.4f} bpp (plain AVIF {best['avif_bpp']:.4f}), "
            f"{best['psnr_db']:.2f} dB")
    return {"qualities": chosen, "measured": sorted(measure.cache.values(), key=lambda r: (r["scale"], r["setting"]))}


def validation_bd(measured: list[dict], chosen: dict[str, list[dict]], header_bytes: float = 27.0,
                  pixels: float = 512 * 512) -> dict[str, dict]:
    """Each picture task's BD-rate (%, PCHIP, as the bench computes it) of the chosen settings
    against AVIF's best variant on the measured pictures: the lower envelope of every measured
    scale and setting, at the plain AVIF file's rate; the picture layers at their payload's rate
    plus `header_bytes` (a file's header and index) over `pixels`. Losses as Measurer's; rgb also
    by PSNR. Negative: the layers need fewer bits than AVIF at its best scale."""
    from ..bench.curves import bd_rate
    from ..contract import group_tasks

    by_key = {(m["scale"], m["setting"]): m for m in measured}
    head = 8 * header_bytes / pixels
    out: dict[str, dict] = {}
    for g, settings in chosen.items():
        pts = [by_key[(int(c["scale"]), int(c["setting"]))] for c in settings]
        for t in group_tasks(g):
            for c in (("rgb", "psnr") if t == "rgb" else (t,)):
                value = (lambda p: p["psnr_db"]) if c == "psnr" else (lambda p, c=c: p["loss"][c])
                r = bd_rate([m["avif_bpp"] for m in measured], [value(m) for m in measured],
                            [p["bpp"] + head for p in pts], [value(p) for p in pts], higher_is_better=c == "psnr")
                out.setdefault(t, {})["psnr" if c == "psnr" else "loss"] = r
    return out


# --------------------------------------------------------------------------- the model


def picture_qualities(chosen: list[dict]) -> list[dict]:
    """The manifest's per-quality settings of a picture group (docs/MODEL.md)."""
    return [{"q": c["q"], "scale": int(c["scale"]), "avif": avif_options(int(c["setting"])),
             "setting": c.get("label") or setting_label(int(c["scale"]), int(c["setting"])),
             **({"target_bpp": c["target_bpp"]} if "target_bpp" in c else {})} for c in chosen]


def build_picture_model(base_dir: str | Path, out_dir: str | Path, qualities: list[dict] | dict[str, list[dict]], *,
                        name: str, tasks: list[str] | None = None, provenance: dict | None = None) -> dict:
    """Write a model: `base_dir`'s groups that still serve a task once picture groups serve theirs,
    byte for byte, then the picture groups (DAG roots, no group's parent). `qualities`: one picture
    group's settings (picture_qualities: per quality its scale and AVIF options), serving `tasks`
    (default edge, keypoint, rgb); or {group id: settings} for several picture groups."""
    from ..contract import group_tasks
    from ..train.merge import _tables

    base_dir, out = Path(base_dir), Path(out_dir)
    if out.resolve() == base_dir.resolve():
        raise TamcInputError("write the new model to another folder than its source")
    base = read_manifest(base_dir)
    if not isinstance(qualities, dict):
        qualities = {group_id(sorted(tasks or PICTURE_TASKS, key=TASKS.index)): qualities}
    pictures = list(qualities)
    tasks = sorted((t for g in pictures for t in group_tasks(g)), key=TASKS.index)
    if not tasks or not set(tasks) <= set(PICTURE_TASKS) or len(set(tasks)) != len(tasks):
        raise TamcInputError(f"picture layers serve some of {', '.join(PICTURE_TASKS)}, each task once, "
                             f"not {', '.join(pictures)}")
    for g, q in qualities.items():
        if [s["q"] for s in q] != [b["q"] for b in base["qualities"]]:
            raise TamcInputError(f"{g}: settings for qualities {[s['q'] for s in q]}, the model has "
                                 f"{[b['q'] for b in base['qualities']]}")
    serving = {t: g for t, g in base["serving"].items() if t not in tasks}
    kept = [g for g in base["groups"] if g in serving.values()]
    dropped = [g for g in base["groups"] if g not in kept]
    orphans = [g for g in kept if base["dag"]["parents"][g] in dropped]
    if orphans:
        raise TamcInputError(f"{', '.join(orphans)} would lose {base['dag']['parents'][orphans[0]]}, its DAG parent")
    clash = [g for g in pictures if g in kept]
    if clash:
        raise TamcInputError(f"the model keeps a learned group {clash[0]}, a picture group's id")
    # the base's own picture layers are replaced: one left serving a task would keep tasks of another
    kept_pictures = [g for g in kept if g in base.get("pictures", {})]
    if kept_pictures:
        raise TamcInputError(f"{base_dir}'s picture layer {kept_pictures[0]} would still serve "
                             f"{', '.join(t for t, g in serving.items() if g == kept_pictures[0])}: "
                             "name every task it serves in the new picture groups")
    serving.update({t: g for g in pictures for t in group_tasks(g)})
    groups = kept + pictures

    base_tables = _tables(base_dir, base)
    tables = {k: v for k, v in base_tables.items() if k.startswith("gauss/")}
    files: dict[str, bytes] = {}
    graphs: dict[str, dict] = {}
    for g in kept:
        graphs[g] = copy_group(base_dir, base, base_tables, g, groups.index(g), tables, files)
    decoders = {}
    for t in TASKS:
        if t in serving and serving[t] not in pictures:
            spec = base["decoders"][t]
            files[spec["file"]] = (base_dir / spec["file"]).read_bytes()
            decoders[t] = dict(spec)
    buf = io.BytesIO()
    np.savez_compressed(buf, **tables)
    files["tables.npz"] = buf.getvalue()

    from ..tasks.registry import TASK_SPECS

    norm = {t: base["task_normalisation"][t] if serving[t] not in pictures else
            {"offset": TASK_SPECS[t].offset, "scale": TASK_SPECS[t].scale} for t in TASKS if t in serving}
    manifest = {
        "schema": base["schema"],
        "name": name,
        "format_version": 2,
        "tasks": [t for t in TASKS if t in serving],
        "groups": groups,
        "serving": {t: serving[t] for t in TASKS if t in serving},
        "dag": {"order": groups, "parents": {**{g: base["dag"]["parents"][g] for g in kept}, **dict.fromkeys(pictures)}},
        "qualities": [{k: ({g: v for g, v in val.items() if g in kept} if k == "lambda_by_group" else val)
                       for k, val in qb.items()} for qb in base["qualities"]],
        **{k: base[k] for k in ("padding_multiple", "latent_channels", "latent_stride", "input")},
        "task_normalisation": norm,
        "graphs": graphs,
        "decoders": decoders,
        "pictures": {g: {"coding": "avif", "qualities": qualities[g]} for g in pictures},
        "tables": "tables.npz",
        "weights_precision": base["weights_precision"],
        "provenance": {**(provenance or {}), "picture_layer": {
            **((provenance or {}).get("picture_layer") or {}),
            "base": {"model_id": base["model_id"], "path": str(base_dir), "groups": kept, "dropped": dropped,
                     "provenance": base.get("provenance", {})}}},
        "files": {},
    }
    if base.get("parent_input", DEFAULT_PARENT_INPUT) != DEFAULT_PARENT_INPUT:
        manifest["parent_input"] = base["parent_input"]
    fixed = [g for g in kept if g in base.get("fixed_hyper", ())]
    if fixed:
        manifest["fixed_hyper"] = fixed
    sc = base.get("scene_scale")
    if sc:
        sgroups = [g for g in sc.get("groups", ()) if g in kept]
        stasks = [t for t in sc.get("tasks", ()) if serving.get(t) in kept]
        if sgroups or stasks:
            manifest["scene_scale"] = {"size": sc["size"], "groups": sgroups, **({"tasks": stasks} if stasks else {})}
    try:
        ref = json.loads((base_dir / REFERENCE).read_text())
        trivial = {t: v for t, v in ref["trivial_loss"].items() if t in serving}
    except (OSError, ValueError, KeyError):
        trivial = {}
    # the trivial predictor is the task's, not the model's: the base's serves every task here
    return write_model_folder(out, manifest, files, {t: trivial[t] for t in TASKS if t in trivial},
                              f"{base['model_id']}'s ({ref.get('source', 'its reference')})" if trivial else "")


__all__ = ["CRITERIA", "DEFAULT_TARGETS", "DEFAULT_IMAGES", "Measurer", "build_picture_model", "choose_settings",
           "criteria_of", "excess", "picture_qualities", "read_pictures", "validation_bd"]
