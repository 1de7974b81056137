"""Bench outputs: results.json (schema below and in docs/BENCH.md), CSV, plots, a terminal table."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from ..atomic import atomic_write_bytes
from . import baselines, curves
from .plotting import log_x, pyplot

_NUM = {"type": ["number", "null"]}
_BD = {"type": "object", "required": ["value", "status", "overlap"],
       "properties": {"value": _NUM, "status": {"enum": ["ok", "no_overlap", "too_few_points"]},
                      "overlap": {"type": "number"}, "points_base": {"type": "integer"},
                      "points_test": {"type": "integer"}, "dropped": {"type": "integer"}}}
_ISO = {"type": "object", "required": ["bpp", "status"],
        "properties": {"bpp": _NUM, "status": {"enum": ["reached", "at_lowest_rate", "not_reached"]}}}
_RATIO = {"type": ["object", "null"], "required": ["best_baseline", "ratio", "bound"],
          "properties": {"ratio": _NUM, "bound": {"enum": ["exact", "upper", "lower", "none"]}}}
_BEST = {"type": ["object", "null"], "required": ["name", "bpp", "status", "censored"],
         "properties": {"name": {"type": "string"}, "bpp": {"type": "number"},
                        "status": {"enum": ["reached", "at_lowest_rate"]}, "censored": {"type": "boolean"}}}
_ENVELOPE_POINT = {"type": "object", "required": ["variant", "setting", "bpp", "loss"],
                   "properties": {"variant": {"type": "string"}, "setting": {"type": "integer"},
                                  "bpp": {"type": "number"}, "loss": {"type": "number"}}}
_TASK_POINT = {"type": "object", "required": ["loss", "normalised_loss"],
               "properties": {"bpp": {"type": "number"}, "loss": {"type": "number"}, "normalised_loss": _NUM}}
_POINT = {"type": "object", "required": ["setting", "bpp", "images", "tasks"],
          "properties": {"setting": {"type": ["integer", "null"]}, "bpp": _NUM, "images": {"type": "integer"},
                         "encode_s": {"type": "number"}, "decode_s": {"type": "number"},
                         "analysis_s": {"type": "number"},
                         "tasks": {"type": "object", "additionalProperties": _TASK_POINT}}}

#: JSON Schema (draft 2020-12 subset) of results.json; docs/BENCH.md explains every field.
RESULTS_SCHEMA: dict = {
    "type": "object",
    "required": ["schema", "created", "quick", "tasks", "codecs", "primary_metric", "iso_factor", "bd", "provenance",
                 "anchor", "curves", "summary", "speed", "ablation", "runtime_s"],
    "properties": {
        "schema": {"enum": ["tamc.bench/1"]},
        "created": {"type": "string"},
        "quick": {"type": "boolean"},
        "tasks": {"type": "array", "items": {"enum": ["seg", "depth", "normal", "edge", "keypoint", "rgb"]}},
        "codecs": {"type": "array", "items": {"type": "string"}},
        "families": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "primary_metric": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["name", "higher_is_better"],
            "properties": {"name": {"type": "string"}, "higher_is_better": {"type": "boolean"}}}},
        "iso_factor": {"type": "number"},
        "bd": {"type": "object", "required": ["method", "min_overlap"]},
        "provenance": {"type": "object",
                       "required": ["model", "anchor", "data", "git_commit", "versions", "codec_settings",
                                    "classical_inputs"],
                       "properties": {
                           "model": {"type": ["object", "null"], "required": ["id", "qualities"]},
                           "anchor": {"type": "object", "required": ["kind", "path", "trivial_loss"]},
                           "data": {"type": "object", "required": ["path", "kind", "images_used"]},
                           "git_commit": {"type": ["string", "null"]},
                           "versions": {"type": "object"},
                           "codec_settings": {"type": "object", "additionalProperties": {
                               "type": "object", "required": ["parameter", "values"]}},
                           "classical_inputs": {
                               "type": "object", "required": ["data", "codec_versions", "anchor"],
                               "properties": {
                                   "data": {"type": "object", "required": ["kind", "images", "sha256"]},
                                   "codec_versions": {"type": "object"},
                                   "anchor": {"type": "object", "required": ["kind", "runtime", "files", "sha256",
                                                                             "tasks"]}}},
                           "reused": {"type": ["object", "null"], "required": ["from", "rows", "count", "computed"],
                                      "properties": {"from": {"type": "string"}, "count": {"type": "integer"},
                                                     "rows": {"type": "object", "additionalProperties": {
                                                         "type": "array", "items": {"type": "integer"}}}}}}},
        "anchor": _POINT,
        "curves": {"type": "object", "additionalProperties": {"type": "array", "items": _POINT}},
        "summary": {"type": "object", "additionalProperties": {
            "type": "object",
            "required": ["metric", "higher_is_better", "anchor_loss", "iso_target_loss", "iso_rate", "iso_ratio",
                         "best_classical", "iso_ratio_best", "envelope", "bd_rate"],
            "properties": {
                "anchor_loss": {"type": "number"}, "iso_target_loss": {"type": "number"},
                "iso_rate": {"type": "object", "additionalProperties": _ISO},
                "iso_ratio": _RATIO, "iso_ratio_best": _RATIO, "best_classical": _BEST,
                "envelope": {"type": "object", "additionalProperties": {"type": "array", "items": _ENVELOPE_POINT}},
                "bd_rate": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["loss", "metric"],
                    "properties": {"loss": _BD, "metric": _BD}}}}}},
        "speed": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["encode_s", "decode_s", "analysis_s"],
            "properties": {"encode_s": _NUM, "decode_s": _NUM, "analysis_s": _NUM}}},
        "ablation": {"type": ["object", "null"]},
        "runtime_s": {"type": "number"},
    },
}

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value, name: str) -> bool:
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def schema_errors(value, schema: dict = RESULTS_SCHEMA, where: str = "$") -> list[str]:
    """Violations of the schema subset used above (type, enum, required, properties, items,
    additionalProperties), without a jsonschema dependency on the use path."""
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [f"{where}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing {key!r}")
        props = schema.get("properties", {})
        for key, sub in value.items():
            if key in props:
                errors += schema_errors(sub, props[key], f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(sub, schema["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    return errors


def _clean(obj):
    """JSON has no NaN or infinity: those become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


# --------------------------------------------------------------------------- files


def write_all(results: dict, out: str | Path) -> dict[str, list[str]]:
    """results.json, curves.csv, summary.csv and the plots; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = _clean(results)
    errors = schema_errors(results)
    if errors:
        raise RuntimeError("results do not match their schema: " + "; ".join(errors[:5]))
    atomic_write_bytes(out / "results.json", (json.dumps(results, indent=1, sort_keys=False) + "\n").encode())
    written = {"json": [str(out / "results.json")], "csv": [], "plots": []}
    written["csv"].append(str(_write_curves_csv(results, out / "curves.csv")))
    written["csv"].append(str(_write_summary_csv(results, out / "summary.csv")))
    written["plots"] = [str(p) for p in plot_all(results, out)]
    return written


def _metric_keys(results: dict) -> list[str]:
    keys: list[str] = []
    for pts in results["curves"].values():
        for p in pts:
            for r in p["tasks"].values():
                for k in r:
                    if k not in ("bpp", "loss", "normalised_loss") and k not in keys:
                        keys.append(k)
    return keys


def _scale_of(name: str) -> str | None:
    """A curve's scale label ('1', '1/2', ...), 'best' for a family's envelope, None for tamc."""
    parsed = baselines.parse_variant(name)
    if parsed is not None:
        return baselines.scale_label(parsed[1])
    return "best" if baselines.BEST_SUFFIX in name else None


def _write_curves_csv(results: dict, path: Path) -> Path:
    mkeys = _metric_keys(results)
    cols = ["codec", "scale", "setting", "task", "bpp", "file_bpp", "loss", "normalised_loss", *mkeys,
            "encode_s", "decode_s", "analysis_s"]
    rows = []
    for t, r in results["anchor"]["tasks"].items():
        rows.append({"codec": "anchor", "task": t, **r, "analysis_s": results["anchor"].get("analysis_s")})
    for name, pts in results["curves"].items():
        for p in pts:
            for t, r in p["tasks"].items():
                rows.append({"codec": name, "scale": _scale_of(name), "setting": p["setting"], "task": t,
                             "file_bpp": p["bpp"], **r,
                             **{k: p.get(k) for k in ("encode_s", "decode_s", "analysis_s")}})
    _write_csv(path, cols, rows)
    return path


def _write_summary_csv(results: dict, path: Path) -> Path:
    cols = ["task", "codec", "scale", "anchor_loss", "iso_target_loss", "iso_bpp", "iso_status", "bd_rate_loss_pct",
            "bd_status_loss", "bd_rate_metric_pct", "bd_status_metric", "metric", "best_classical",
            "best_classical_bpp", "best_classical_censored", "iso_ratio_best", "iso_ratio_best_bound"]
    rows = []
    for t, s in results["summary"].items():
        best = s.get("best_classical") or {}
        ratio = s.get("iso_ratio_best") or {}
        per_task = {"best_classical": best.get("name"), "best_classical_bpp": best.get("bpp"),
                    "best_classical_censored": best.get("censored"), "iso_ratio_best": ratio.get("ratio"),
                    "iso_ratio_best_bound": ratio.get("bound")}
        for name, iso in s["iso_rate"].items():
            bd = s["bd_rate"].get(name, {})
            rows.append({"task": t, "codec": name, "scale": _scale_of(name), **per_task,
                         "anchor_loss": s["anchor_loss"], "iso_target_loss": s["iso_target_loss"],
                         "iso_bpp": iso["bpp"], "iso_status": iso["status"], "metric": s["metric"],
                         "bd_rate_loss_pct": bd.get("loss", {}).get("value"), "bd_status_loss": bd.get("loss", {}).get("status"),
                         "bd_rate_metric_pct": bd.get("metric", {}).get("value"),
                         "bd_status_metric": bd.get("metric", {}).get("status")})
    _write_csv(path, cols, rows)
    return path


def _write_csv(path: Path, cols: list[str], rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    atomic_write_bytes(path, buf.getvalue().encode())


# --------------------------------------------------------------------------- plots

#: Colour and marker by codec family; line style by scale (full size solid, down-scaled dashed).
FAMILY_STYLE = {"tamc": ("tab:red", "o"), "jpeg": ("tab:blue", "s"), "webp": ("tab:green", "^"),
                "avif": ("tab:purple", "D")}
SCALE_LINE = {1: "-", 2: "--", 4: "-.", 8: (0, (3, 1, 1, 1, 1, 1)), 16: (0, (5, 1, 1, 1, 1, 1, 1, 1))}  # 1/8: dash-dot-dot, 1/16: dash and three dots
METRIC_LABEL = {"miou": "mIoU", "abs_rel": "abs-rel", "angular_error_deg": "angular error (deg)", "l1": "L1",
                "psnr_db": "PSNR (dB)", "ms_ssim": "MS-SSIM"}
TASK_TITLE = {"seg": "Semantic segmentation", "depth": "Depth (z-buffer)", "normal": "Surface normals",
              "edge": "Edge texture", "keypoint": "2D keypoints", "rgb": "Image (autoencoder)"}


def _xy(results: dict, members: list[str], task: str, key: str) -> tuple[list[float], list[float]]:
    """(task bpp, value) of the points of `members`, sorted by rate."""
    pts = []
    for name in members:
        for p in results["curves"].get(name, []):
            r = p["tasks"].get(task)
            if r and r.get(key) is not None and r.get("bpp"):
                pts.append((r["bpp"], r[key]))
    pts.sort()
    return [x for x, _ in pts], [y for _, y in pts]


def _families(results: dict) -> dict[str, list[str]]:
    return results.get("families") or baselines.families(list(results["curves"]))


def _curve_xy(results: dict, task: str, key: str, name: str) -> tuple[list[float], list[float]]:
    """A curve's points; for a family's envelope, the Pareto front of its members' points on this axis."""
    family = _families(results).get(name)
    if family is None:
        return _xy(results, [name], task, key)
    higher = key != "loss" and results["summary"][task]["higher_is_better"]
    rates, values = curves.pareto_front(*_xy(results, family, task, key), higher_is_better=higher)
    return rates.tolist(), values.tolist()


def _line_style(results: dict, name: str, alone: bool) -> tuple[str | tuple, dict]:
    """Colour and marker by codec, line by scale, hollow markers for a label filter. A family's
    envelope drawn under its variants is a wide pale band; drawn alone (`alone`: the overview) it
    is a plain line, dotted for a label filter as a lone full-size variant is."""
    family = _families(results).get(name)
    parsed = baselines.parse_variant(family[0] if family else name)
    if parsed is None:
        colour, marker = FAMILY_STYLE.get(name, ("grey", "."))
        return "-", {"color": colour, "marker": marker, "ms": 4, "lw": 2.2 if name == "tamc" else 1.2}
    codec, scale, filtered = parsed
    colour, marker = FAMILY_STYLE[codec]
    if family and not alone:
        return "-", {"color": colour, "lw": 6, "alpha": 0.22, "solid_capstyle": "round"}
    line = ":" if filtered and alone else "-" if family else SCALE_LINE[scale]
    return line, {"color": colour, "marker": marker, "ms": 4 if family or scale == 1 else 3,
                  "lw": 1.6 if family else 1.2, "mfc": "none" if filtered and not alone else colour}


def _draw(ax, results: dict, task: str, key: str, names: list[str], alone: bool = False) -> None:
    for name in names:
        xs, ys = _curve_xy(results, task, key, name)
        if xs:
            line, style = _line_style(results, name, alone)
            ax.plot(xs, ys, linestyle=line, label=name, **style)
    a = results["anchor"]["tasks"][task].get(key)
    if a is not None:
        ax.axhline(a, color="black", ls="--", lw=1, label=anchor_label(results))
    if key == "loss":
        ax.axhline(results["summary"][task]["iso_target_loss"], color="grey", ls=":", lw=1,
                   label=f"{results['iso_factor']:g} x anchor loss")
    log_x(ax)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel(METRIC_LABEL.get(key, key))
    ax.grid(True, which="both", alpha=0.3)


def _receiver_rows(results: dict, task: str) -> list[tuple[str, list[str]]]:
    """The curves of a task's plot, one row per kind of CTA receiver: the networks on the decoded
    picture, then (edge, keypoint, rgb) the label filter; tamc in each, envelopes after variants."""
    rows = []
    for filtered, title in ((False, "networks on the decoded picture"), (True, "label filter on the decoded picture")):
        names = [n for n in _ordered(results) if n != "tamc" and _is_filtered(n) == filtered
                 and _xy(results, _families(results).get(n, [n]), task, "loss")[0]]
        if names:
            rows.append((title, (["tamc"] if "tamc" in results["curves"] else []) + names))
    return rows or [("", [n for n in results["curves"]])]


def _overview_names(results: dict) -> list[str]:
    """tamc, each family's envelope in place of its variants, and the variants of no family."""
    families = _families(results)
    members = {m for ms in families.values() for m in ms}
    return [n for n in _ordered(results) if n not in members]


def plot_all(results: dict, out: Path) -> list[Path]:
    plt = pyplot()
    written = []
    tasks = results["tasks"]
    for t in tasks:
        metric = results["summary"][t]["metric"]
        rows = _receiver_rows(results, t)
        fig, axes = plt.subplots(len(rows), 2, figsize=(11, 4.2 * len(rows)), squeeze=False)
        for (title, names), (ax_m, ax_l) in zip(rows, axes):
            _draw(ax_m, results, t, metric, names)
            _draw(ax_l, results, t, "loss", names)
            ax_l.set_ylabel("task loss")
            suffix = f" ({title})" if title else ""
            ax_m.set_title(f"{TASK_TITLE[t]}: {METRIC_LABEL.get(metric, metric)}{suffix}", fontsize=9)
            ax_l.set_title(f"{TASK_TITLE[t]}: loss{suffix}", fontsize=9)
            ax_l.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        path = out / f"curve_{t}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    cols = min(3, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for k, t in enumerate(tasks):
        ax = axes[k // cols][k % cols]
        metric = results["summary"][t]["metric"]
        _draw(ax, results, t, metric, _overview_names(results), alone=True)
        ax.set_title(TASK_TITLE[t], fontsize=10)
    for k in range(len(tasks), rows * cols):
        axes[k // cols][k % cols].axis("off")
    seen: dict[str, object] = {}
    for row in axes:
        for ax in row:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
    handles, labels = list(seen.values()), list(seen)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * -(-len(labels) // 5), 1, 1))
    path = out / "overview.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    if results.get("ablation"):
        from .ablation import plot_ablation

        written += plot_ablation(results["ablation"], out)
    return written


# --------------------------------------------------------------------------- terminal


def anchor_label(results: dict) -> str:
    """What the anchor line is: the stage-1 network on uncompressed images, or the model's own
    networks with unquantised latents (older results name no kind: stage 1)."""
    kind = results["provenance"]["anchor"].get("kind", "stage1")
    return "anchor (uncompressed)" if kind == "stage1" else "anchor: the model, unquantised"


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _is_filtered(name: str) -> bool:
    return name.endswith(baselines.FILTER_SUFFIX)


def _ordered(results: dict) -> list[str]:
    """Every curve and envelope: tamc, then each codec's scales followed by its envelope (networks
    on the decoded picture, then the label filter), then anything else."""
    families = _families(results)
    order = {c: k for k, c in enumerate(baselines.CODECS)}

    def key(name: str) -> tuple:
        if name == "tamc":
            return (0,)
        parsed = baselines.parse_variant(families[name][0] if name in families else name)
        if parsed is None:
            return (3, name)
        codec, scale, filtered = parsed
        return (1 + filtered, order.get(codec, len(order)), name in families, scale)

    return sorted([*results["codecs"], *families], key=key)


def _iso_cell(iso: dict | None) -> str:
    if iso is None:
        return ""
    if iso["status"] == "not_reached":
        return "n/r"
    return ("<=" if iso["status"] == "at_lowest_rate" else "") + format(iso["bpp"], ".3f")


def _ratio_cell(ratio: dict | None) -> str:
    if not ratio or ratio.get("ratio") is None:
        return "-"
    return {"upper": "<=", "lower": ">=", "exact": ""}[ratio["bound"]] + format(ratio["ratio"], ".2f")


def _bd_cell(bd: dict | None) -> str:
    if bd is None:
        return ""
    return " / ".join("n/o" if b["status"] == "no_overlap" else "few" if b["status"] == "too_few_points"
                      else format(b["value"], "+.1f") for b in (bd["loss"], bd["metric"]))


def table(results: dict) -> str:
    """Per task (columns): iso-quality rates (bpp at 1.15 x anchor loss) of every curve and
    envelope (rows), tamc's ratios, the best classical rate, and BD-rates of tamc."""
    summary = results["summary"]
    tasks = list(summary)
    names = [n for n in _ordered(results) if any(n in s["iso_rate"] for s in summary.values())]
    w = max(len(n) for n in [*names, "tamc / best classical"]) + 1
    lines = [f"iso-quality rate: bpp at which the loss reaches {results['iso_factor']:g} x the anchor's "
             "('<=' lowest setting already there, 'n/r' not reached); " + anchor_label(results)]
    head = f"{'':{w}}" + "".join(f"{t:>10}" for t in tasks)
    lines += [head, "-" * len(head),
              f"{'anchor loss':{w}}" + "".join(f"{summary[t]['anchor_loss']:>10.4f}" for t in tasks)]
    lines += [f"{n:{w}}" + "".join(f"{_iso_cell(summary[t]['iso_rate'].get(n)):>10}" for t in tasks) for n in names]
    if "tamc" in results["codecs"]:
        lines.append(f"{'tamc / best full size':{w}}"
                     + "".join(f"{_ratio_cell(summary[t]['iso_ratio']):>10}" for t in tasks))
        if any("iso_ratio_best" in s for s in summary.values()):  # results from before the variants have none
            lines.append(f"{'tamc / best classical':{w}}"
                         + "".join(f"{_ratio_cell(summary[t]['iso_ratio_best']):>10}" for t in tasks))
    if any(s.get("best_classical") for s in summary.values()):
        lines += ["", "best classical: the lowest iso-quality rate of any variant or envelope "
                  "('censored': met at that curve's lowest setting, so lower still)"]
        for t, s in summary.items():
            best = s.get("best_classical")
            if best:
                lines.append(f"  {t:9} {best['name']:{w}} {best['bpp']:.4f} bpp  "
                             f"{'censored' if best['censored'] else 'measured'}")
            elif "best_classical" in s:
                lines.append(f"  {t:9} none reaches the target")
    if any(s["bd_rate"] for s in summary.values()):
        bases = [n for n in names if any(n in s["bd_rate"] for s in summary.values())]
        lines += ["", "BD-rate of tamc vs each baseline, % (negative = tamc needs fewer bits); loss / primary metric"]
        head = f"{'':{w}}" + "".join(f"{t:>18}" for t in tasks)
        lines += [head, "-" * len(head)]
        lines += [f"{n:{w}}" + "".join(f"{_bd_cell(summary[t]['bd_rate'].get(n)):>18}" for t in tasks) for n in bases]
    lines.append("")
    lines.append("speed, seconds per image (encode / decode / analysis)")
    for n, s in results["speed"].items():
        lines.append(f"  {n:{w}} {_fmt(s['encode_s'], '.4f'):>8} / {_fmt(s['decode_s'], '.4f'):>8} / "
                     f"{_fmt(s['analysis_s'], '.4f'):>8}")
    if results.get("ablation"):
        from .ablation import ablation_table

        lines.append("")
        lines.append(ablation_table(results["ablation"]))
    return "\n".join(lines)


__all__ = ["RESULTS_SCHEMA", "schema_errors", "write_all", "plot_all", "table"]
