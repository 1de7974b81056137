"""`tamc bench`: every codec on the same images, then curves, iso-quality rates and BD-rates."""
from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..contract import TASKS
from ..effort import DEFAULT_EFFORT
from ..errors import TamcInputError
from . import baselines, curves
from .evaluate import (FILTER_TASKS, HIGHER_IS_BETTER, PRIMARY_METRIC, Anchor, ModelAnchor, Point, ensure_test_split,
                       filter_prediction, open_images, quick_qualities, tamc_layer_bytes, tamc_predictions,
                       timed_decode)
from .reuse import Reuse, classical_inputs

SCHEMA = "tamc.bench/1"
#: Iso-quality target: the loss 15% above the anchor's on uncompressed images.
ISO_FACTOR = 1.15
DEFAULT_IMAGES = 24
QUICK_IMAGES = 4
TEST_SPLIT_COUNT = 100
DEFAULT_DATA = "data/test"
DEFAULT_ANCHOR = "models/default/anchor/anchor.pt"


@dataclass
class BenchConfig:
    out: str
    data: str | None = None
    tasks: list[str] | None = None
    codecs: list[str] = field(default_factory=lambda: ["tamc", *baselines.CODECS])
    #: scale divisors of the classical codecs' sweeps (1: full size; 2, 4, 8: a half, quarter, eighth of the sides)
    scales: list[int] = field(default_factory=lambda: list(baselines.SCALES))
    quick: bool = False
    ablation: bool = False
    ablation_dir: str | None = None
    model: str | None = None
    anchor: str | None = None
    images: int | None = None
    qualities: list[int] | None = None
    #: tamc's encoder effort (effort.EFFORTS)
    effort: int = DEFAULT_EFFORT
    speed_images: int = 4
    progress: bool = True
    #: threads for torch and onnxruntime; None = their defaults (all cores). On a shared
    #: machine 1 avoids the stalls of oversubscribed thread pools.
    threads: int | None = None
    #: an earlier bench's output folder whose classical rows are taken where its recorded inputs
    #: (data, codec libraries, anchor networks) match this run's (bench.reuse)
    reuse: str | None = None


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("tamc-codec", "numpy", "pillow", "torch", "onnxruntime", "constriction", "bjontegaard",
                "pytorch-msssim", "scipy", "scikit-image", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    try:
        from PIL import features

        out["libavif"] = features.version("avif")
        out["libwebp"] = features.version("webp")
        out["libjpeg"] = features.version("jpg")
        from PIL import _avif

        out["avif_codecs"] = _avif.codec_versions()  # libaom's version decides what BELOW_FLOOR's options do
    except Exception:  # feature probing differs across Pillow builds; versions are informative only
        pass
    return out


def _git_commit() -> str | None:
    import subprocess

    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode:
            return None
        return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


#: `--anchor model`: the exported model's own networks, unquantised (evaluate.ModelAnchor).
MODEL_ANCHOR = "model"


def _anchor_candidates(rt) -> list[Path]:
    candidates = [Path(DEFAULT_ANCHOR)]
    if rt is not None:
        candidates.insert(0, rt.folder / "anchor" / "anchor.pt")
        candidates.append(rt.folder.parent / "anchor" / "anchor.pt")
    return candidates


def make_anchor(cfg: BenchConfig, rt, tasks: list[str], log=print):
    """The CTA receivers' task networks: the stage-1 anchor.pt named or found beside the model, an
    exported model folder named (its own networks, unquantised: the anchor of a model whose picture
    tasks are a picture layer, which has no networks for them), else the model's own networks
    (which need no training artefacts)."""
    if cfg.anchor and cfg.anchor != MODEL_ANCHOR and (Path(cfg.anchor) / "manifest.json").is_file():
        from ..runtime.model import RuntimeModel

        return ModelAnchor(RuntimeModel(cfg.anchor), tasks, cfg.threads or None)
    if cfg.anchor and cfg.anchor != MODEL_ANCHOR:
        return Anchor(cfg.anchor, tasks, scale_of=rt)
    if cfg.anchor != MODEL_ANCHOR:
        found = [c for c in _anchor_candidates(rt) if c.is_file()]
        if found:
            return Anchor(found[0], tasks, scale_of=rt)
    if rt is None:
        from ..runtime import load_model

        rt = load_model(cfg.model)
    if cfg.anchor != MODEL_ANCHOR:
        log(f"anchor: no stage-1 anchor.pt ({', '.join(str(c) for c in _anchor_candidates(rt))}); "
            f"using model {rt.id[:8]}'s own networks on unquantised latents")
    if not rt.trivial_loss:
        log(f"{rt.folder} has no reference.json for this model: losses are not divided by the trivial loss")
    return ModelAnchor(rt, tasks, cfg.threads or None)


def run_bench(cfg: BenchConfig, log=print) -> dict:
    """Measure every codec; returns results.json's content (report.write_all writes the files)."""
    from tqdm import tqdm

    t_start = time.perf_counter()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    for c in cfg.codecs:
        if c != "tamc" and c not in baselines.CODECS:
            raise TamcInputError(f"unknown codec {c!r} (known: tamc, {', '.join(baselines.CODECS)})")
        if c != "tamc" and not baselines.available(c):
            raise TamcInputError(f"this Pillow build cannot write {c.upper()}; install a Pillow with {c} support")
    if not cfg.scales or any(s not in baselines.SCALES for s in cfg.scales):
        raise TamcInputError(f"scales must be some of {', '.join(baselines.scale_label(s) for s in baselines.SCALES)}")
    limit = cfg.images or (QUICK_IMAGES if cfg.quick else DEFAULT_IMAGES)
    if cfg.data:
        data_path = Path(cfg.data)
    elif cfg.quick and not (Path(DEFAULT_DATA) / "meta.json").exists():
        # a few scenes of the test split, not the whole split, so CI stays fast
        data_path = ensure_test_split(Path(cfg.out) / "data-test", limit, log=log)
    else:
        data_path = ensure_test_split(DEFAULT_DATA, TEST_SPLIT_COUNT, log=log)

    rt = None
    if "tamc" in cfg.codecs or cfg.model:
        from ..runtime import load_model

        rt = load_model(cfg.model)
    probe = open_images(data_path, None, 1)
    tasks = list(cfg.tasks) if cfg.tasks else [t for t in TASKS if t in probe.tasks and (rt is None or t in rt.serving)]
    if rt is not None:
        missing = [t for t in tasks if t not in rt.serving]
        if missing:
            raise TamcInputError(f"model {rt.folder} does not serve {', '.join(missing)}")
    images = open_images(data_path, tasks, limit)
    if not tasks:
        raise TamcInputError("no task to benchmark")
    anchor = make_anchor(cfg, rt, tasks, log=log)
    trivial = anchor.trivial
    versions = _versions()
    inputs = classical_inputs(images, anchor, versions)

    cta = [c for c in cfg.codecs if c != "tamc"]
    sweeps = baselines.settings(cta, cfg.quick, sorted(set(cfg.scales)))
    if rt is not None:
        qualities = cfg.qualities or (quick_qualities(rt.qualities) if cfg.quick else list(range(1, rt.qualities + 1)))
        bad = [q for q in qualities if not 1 <= q <= rt.qualities]
        if bad:
            raise TamcInputError(f"qualities must be 1..{rt.qualities}")
    else:
        qualities = []
    ftasks = [t for t in tasks if t in FILTER_TASKS]
    reuse = Reuse(cfg.reuse, inputs, tasks, ftasks, sweeps, log=log) if cfg.reuse else None
    reused = reuse.rows if reuse else {}
    # per setting of each variant: whether its networks' row and its label filter's row are computed here
    todo = {(name, q): ((name, q) not in reused, bool(ftasks) and (name + baselines.FILTER_SUFFIX, q) not in reused)
            for name, sweep in sweeps.items() for q in sweep["values"]}
    if reuse:
        log(f"--reuse: taking {len(reused)} classical rows from {reuse.path}, computing "
            f"{sum(a + b for a, b in todo.values())}")

    anchor_point = Point(None, tasks)
    points: dict[str, dict] = {}
    for name, sweep in sweeps.items():
        points[name] = {q: Point(q, tasks) for q in sweep["values"]}
        if ftasks:
            points[name + baselines.FILTER_SUFFIX] = {q: Point(q, ftasks) for q in sweep["values"]}
    if rt is not None:
        points["tamc"] = {q: Point(q, tasks) for q in qualities}
    decode_checks = {"checked": 0, "matched": 0}

    steps = images.count * (1 + sum(any(v) for v in todo.values()) + len(qualities))
    bar = tqdm(total=steps, desc="bench", unit="step", dynamic_ncols=True, disable=not cfg.progress)
    for i in range(images.count):
        image, targets = images.item(i)
        h, w = image.shape[:2]
        bar.set_postfix_str(f"image {i + 1}/{images.count} anchor", refresh=False)
        t0 = time.perf_counter()
        preds = anchor.predict(image)
        anchor_point.time("analysis", time.perf_counter() - t0)
        for t in tasks:
            anchor_point.scores[t].add(preds[t], targets[t])
        bar.update(1)
        for name, sweep in sweeps.items():
            for q in sweep["values"]:
                networks, filters = todo[(name, q)]
                if not (networks or filters):
                    continue
                bar.set_postfix_str(f"image {i + 1}/{images.count} {name} q{q}", refresh=False)
                codec, scale, _ = baselines.parse_variant(name)
                coded = baselines.code(image, codec, q, scale)
                bits = 8.0 * coded.nbytes
                if networks:
                    pt = _add_coded(points[name][q], coded)
                    t0 = time.perf_counter()
                    preds = anchor.predict(coded.decoded)
                    pt.time("analysis", time.perf_counter() - t0)
                    for t in tasks:
                        pt.scores[t].add(preds[t], targets[t], bits)
                if filters:
                    fp = _add_coded(points[name + baselines.FILTER_SUFFIX][q], coded)
                    t0 = time.perf_counter()
                    for t in ftasks:
                        fp.scores[t].add(filter_prediction(t, coded.decoded), targets[t], bits)
                    fp.time("analysis", time.perf_counter() - t0)
                bar.update(1)
        if rt is not None:
            from ..runtime import encode_image

            for q in qualities:
                bar.set_postfix_str(f"image {i + 1}/{images.count} tamc q{q}", refresh=False)
                pt = points["tamc"][q]
                t0 = time.perf_counter()
                enc = encode_image(image, tasks, q, rt, threads=cfg.threads or None, effort=cfg.effort)
                pt.time("encode", time.perf_counter() - t0)
                pt.bits += 8.0 * len(enc.data)
                pt.pixels += h * w
                task_bytes = tamc_layer_bytes(enc.data, tasks)
                preds = tamc_predictions(rt, enc, tasks, cfg.threads or None)
                for t in tasks:
                    pt.scores[t].add(preds[t], targets[t], 8.0 * task_bytes[t])
                if i < cfg.speed_images:
                    total = 0.0
                    for t in tasks:
                        seconds, same = timed_decode(rt, enc.data, t, preds[t], cfg.threads or None)
                        pt.time(f"decode_{t}", seconds)
                        total += seconds
                        decode_checks["checked"] += 1
                        decode_checks["matched"] += int(same)
                    pt.time("decode", total)
                bar.update(1)
    bar.close()

    curves_out = {name: [reuse.point(name, q, list(p.scores), trivial) if (name, q) in reused else p.result(trivial)
                         for q, p in pts.items()] for name, pts in points.items()}
    anchor_res = anchor_point.result(trivial)
    reuse_record = None
    if reuse:
        computed: dict[str, list[int]] = {}
        for (name, q), (networks, filters) in todo.items():
            for curve, done in ((name, networks), (name + baselines.FILTER_SUFFIX, filters)):
                if done:
                    computed.setdefault(curve, []).append(q)
        reuse_record = reuse.record(computed, anchor_res)
        if (reuse_record["anchor_line_max_rel_diff"] or 0) > 1e-6:
            log(f"--reuse: the anchor line differs from {reuse.path}'s by up to "
                f"{reuse_record['anchor_line_max_rel_diff']:.2g} (relative): the networks do not give the same "
                "numbers here, so the reused rows may differ from computed ones as much")
    summary = summarise(tasks, curves_out, anchor_res)
    speed = _speed(curves_out, anchor_res)
    rt_info = None
    if rt is not None:
        rt_info = {"id": rt.id, "name": rt.manifest.get("name"), "folder": str(rt.folder), "qualities": rt.qualities,
                   "groups": rt.groups, "serving": rt.serving, "parents": rt.parents,
                   "provenance": rt.manifest.get("provenance", {})}
    results = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": cfg.quick,
        "tasks": tasks,
        "codecs": list(curves_out),
        "families": baselines.families(list(curves_out)),
        "primary_metric": {t: {"name": PRIMARY_METRIC[t], "higher_is_better": HIGHER_IS_BETTER[PRIMARY_METRIC[t]]}
                           for t in tasks},
        "iso_factor": ISO_FACTOR,
        "bd": {"method": curves.BD_METHOD, "min_overlap": curves.MIN_OVERLAP, "package": "bjontegaard"},
        "provenance": {
            "model": rt_info,
            "anchor": anchor.provenance(),
            "data": images.info,
            "git_commit": _git_commit(),
            "versions": versions,
            "codec_settings": {**sweeps, **({"tamc": {"parameter": "quality", "values": qualities, "effort": cfg.effort}} if rt else {})},
            # what every classical row depends on, for a later --reuse; and where this run's came from
            "classical_inputs": inputs,
            "reused": reuse_record,
            "tamc_decode_check": decode_checks,
            "speed_images": min(cfg.speed_images, images.count),
            "command": sys.argv,
            "platform": {"machine": platform.machine(), "system": platform.system(),
                         "processor": platform.processor(), "cpus": _cpus()},
            "config": asdict(cfg),
        },
        "anchor": anchor_res,
        "curves": curves_out,
        "summary": summary,
        "speed": speed,
        "ablation": None,
        "runtime_s": None,
    }
    if cfg.ablation:
        from .ablation import evaluate_ablation

        if images.kind != "scenes":
            raise TamcInputError("--ablation needs a generated data folder (scene labels for every task)")
        results["ablation"] = evaluate_ablation(cfg.ablation_dir or "runs/ablation", data_path,
                                                 images=min(images.count, 4 if cfg.quick else 8), log=log,
                                                 progress=cfg.progress)
    results["runtime_s"] = round(time.perf_counter() - t_start, 1)
    return results


def _add_coded(pt: Point, coded: baselines.Coded) -> Point:
    """Charge a curve point one image's classical coding: its bits over the original pixels."""
    h, w = coded.decoded.shape[:2]
    pt.bits += 8.0 * coded.nbytes
    pt.pixels += h * w
    pt.time("encode", coded.encode_s)
    pt.time("decode", coded.decode_s)
    return pt


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _labelled(points: list[dict], task: str, key: str) -> list[tuple[object, float, float]]:
    """(setting, task bpp, value) of a curve's points that have both."""
    out = []
    for p in points:
        r = p["tasks"].get(task)
        if r is None or r.get(key) is None or r.get("bpp") is None:
            continue
        out.append((p["setting"], r["bpp"], r[key]))
    return out


def _curve(curves_out: dict[str, list[dict]], members: list[str], task: str,
           key: str) -> tuple[list[float], list[float]]:
    """Rates and values of the points of `members` (one curve, or a family's union)."""
    rates, values = [], []
    for m in members:
        for _, r, v in _labelled(curves_out[m], task, key):
            rates.append(r)
            values.append(v)
    return rates, values


def _envelope(curves_out: dict[str, list[dict]], members: list[str], task: str) -> list[dict]:
    """A family's lower (rate, loss) envelope: which variant and setting a user picks at each rate."""
    pts = {m: _labelled(curves_out[m], task, "loss") for m in members}
    front = curves.envelope({m: ([p[1] for p in v], [p[2] for p in v]) for m, v in pts.items()}, higher_is_better=False)
    return [{"variant": m, "setting": pts[m][i][0], "bpp": pts[m][i][1], "loss": pts[m][i][2]} for m, i in front]


def _full_scale(name: str) -> bool:
    parsed = baselines.parse_variant(name)
    return parsed is not None and parsed[1] == 1


def summarise(tasks: list[str], curves_out: dict[str, list[dict]], anchor: dict) -> dict:
    """Per task: the iso-quality rate of every codec variant and of each codec family's envelope
    over its scales, the best classical rate, tamc's ratios, BD-rates against each baseline."""
    families = baselines.families([n for n in curves_out if n != "tamc"])
    sources = {**{n: [n] for n in curves_out}, **families}
    out = {}
    for t in tasks:
        metric = PRIMARY_METRIC[t]
        higher = HIGHER_IS_BETTER[metric]
        a = anchor["tasks"][t]
        target = ISO_FACTOR * a["loss"]
        iso = {}
        for name, members in sources.items():
            r, v = _curve(curves_out, members, t, "loss")
            if r:
                iso[name] = curves.iso_rate(r, v, target, higher_is_better=False)
        base_names = [n for n in iso if n != "tamc"]
        tamc_iso = iso.get("tamc")
        entry = {"metric": metric, "higher_is_better": higher, "anchor_loss": a["loss"],
                 "anchor_metric": a.get(metric), "iso_target_loss": target, "iso_rate": iso,
                 # against the codecs at full size alone, as before down-scaled variants existed
                 "iso_ratio": curves.iso_ratio(tamc_iso, {n: iso[n] for n in base_names if _full_scale(n)})
                 if tamc_iso else None,
                 "best_classical": curves.best_rate({n: iso[n] for n in base_names}),
                 "iso_ratio_best": curves.iso_ratio(tamc_iso, {n: iso[n] for n in base_names}) if tamc_iso else None,
                 "envelope": {f: _envelope(curves_out, m, t) for f, m in families.items() if f in iso},
                 "bd_rate": {}}
        if "tamc" in curves_out:
            rl, vl = _curve(curves_out, ["tamc"], t, "loss")
            rm, vm = _curve(curves_out, ["tamc"], t, metric)
            for name in base_names:
                bl, bv = _curve(curves_out, sources[name], t, "loss")
                bm, bmv = _curve(curves_out, sources[name], t, metric)
                entry["bd_rate"][name] = {
                    "loss": curves.bd_rate(bl, bv, rl, vl, higher_is_better=False),
                    "metric": curves.bd_rate(bm, bmv, rm, vm, higher_is_better=higher),
                }
        out[t] = entry
    return out


def _speed(curves_out: dict[str, list[dict]], anchor: dict) -> dict:
    """Mean seconds per image over each codec's sweep (analysis: the task networks or filters)."""
    out = {}
    for name, pts in curves_out.items():
        row = {}
        for key in ("encode_s", "decode_s", "analysis_s"):
            vals = [p[key] for p in pts if p.get(key) is not None]
            row[key] = float(np.mean(vals)) if vals else None
        if name == "tamc":
            row["decode_per_task_s"] = {k[len("decode_"):-2]: float(np.mean([p[k] for p in pts if k in p]))
                                        for k in sorted({k for p in pts for k in p if k.startswith("decode_")
                                                         and k != "decode_s"})}
        out[name] = row
    out["anchor"] = {"encode_s": None, "decode_s": None, "analysis_s": anchor.get("analysis_s")}
    return out


__all__ = ["BenchConfig", "run_bench", "summarise", "SCHEMA", "ISO_FACTOR", "DEFAULT_DATA", "DEFAULT_ANCHOR"]
