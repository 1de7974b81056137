"""Ablations (paper Tab. 2, Fig. 6): grouping vs tasks alone, the chosen DAG vs none vs random.

Training (``bin/train-ablation`` -> :func:`train_ablation`) writes one stage-2 checkpoint per
variant and ``ablation.json`` listing them with their budget:

- **DAG variants** share the stage-1 anchor of the main run; only the entropy models (and
  per-quality gains) are trained, with the transforms and decoders frozen
  (``steps_finetune = 0``), for the same steps and seed. Task losses therefore differ only
  through the gains' effect on quantisation, and the comparison is about bits.
  Variants: ``chosen`` (the run's dag.json), ``none`` (no parent context), ``random-k``
  (each group but the first of a random order takes a random earlier group as parent).
- **Global context** (kind ``global``, name ``chosen-global``): the chosen DAG with the global
  cross-task term of Eq. 12 added to each child's second pass, trained like the DAG variants;
  compared with ``chosen`` it says whether that term pays for its parameters and time.
- **Grouping variants** train stage 1 afresh with one shared, smaller budget: ``grouped``
  (the anchor's groups) and ``single`` (every task its own group), then entropy models
  without parents (the DAG is left out to isolate grouping, as in the paper's Tab. 1-2).

Evaluation (:func:`evaluate_ablation`, ``tamc bench --ablation``) runs each checkpoint on the
bench images with ``evaluate_rd``: rates are the entropy models' estimated bits (what the
coder would spend to within the range coder's overhead), the same estimator for every
variant. Bits are compared at equal loss by BD-rate over the quality sweep.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..contract import TASKS
from ..dag.dag import fixed_dag
from ..errors import TamcInputError
from ..runtime.manifest import PARENT_INPUTS
from ..train import DEFAULT_GAIN_RANGE, DEFAULT_LAMBDAS, VIEWS
from . import curves

SCHEMA = "tamc.ablation/1"
MANIFEST = "ablation.json"


@dataclass
class AblationBudget:
    """Training budget of the ablation models (smaller than the main recipe; stated in results)."""

    stage1_steps: int = 600
    entropy_steps: int = 600
    batch: int = 8
    crop: int = 128
    views: str = "mix"  # Stage1Config.views, as the main recipe
    random_dags: int = 1
    seed: int = 0
    hyper_channels: int = 32
    lambdas: list[float] = field(default_factory=lambda: list(DEFAULT_LAMBDAS))
    gain_range: tuple[float, float] = DEFAULT_GAIN_RANGE
    val_limit: int | None = 50
    trivial_samples: int = 256
    parent_input: str = "quantised"  # Stage2Config.parent_input of the DAG variants, as bin/train-default


def random_dag(groups: list[str], rng: np.random.Generator, avoid: dict | None = None, tries: int = 50) -> dict:
    """A random tree over the groups (one parent each, as the codec allows), unlike `avoid`."""
    for _ in range(tries):
        order = [groups[i] for i in rng.permutation(len(groups))]
        parents = {order[0]: None}
        for k, g in enumerate(order[1:], start=1):
            parents[g] = order[int(rng.integers(0, k))]
        if avoid is None or any(parents[g] != avoid.get(g) for g in groups) or len(groups) < 2:
            break
    return fixed_dag(groups, parents, order, "random")


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


KINDS = ("dag", "grouping", "global")
DEFAULT_KINDS = ("dag", "grouping")


def train_ablation(anchor: str | Path, dag: str | Path, data: str | Path, val: str | Path, out: str | Path,
                   budget: AblationBudget | None = None, *, kinds: tuple[str, ...] = DEFAULT_KINDS, progress: bool = True,
                   log=print) -> dict:
    """Train the ablation variants of `kinds` into `out` (resumable: finished variants are kept).

    The manifest lists the variants trained so far, so the DAG variants (entropy models
    only, minutes) can be benchmarked before the grouping variants (two stage-1 runs)."""
    import torch

    from ..nets.multitask import coded_groups
    from ..train.stage1 import Stage1Config, train_stage1
    from ..train.stage2 import Stage2Config, train_stage2

    b = budget or AblationBudget()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = torch.load(anchor, map_location="cpu", weights_only=False)
    desc = state["describe"]
    all_groups, net = list(desc["groups"]), dict(desc["config"])
    groups = coded_groups(all_groups, desc["serving"])
    tasks = [t for t in TASKS if t in desc["serving"]]
    chosen = json.loads(Path(dag).read_text())
    variants: list[dict] = []

    def stage2(name: str, anchor_pt: Path, dag_file: Path, no_parents: bool, use_global: bool = False) -> Path:
        folder = out / name
        if not (folder / "stage2.json").exists():
            log(f"ablation {name}: entropy models ({b.entropy_steps} steps, transforms frozen)")
            train_stage2(Stage2Config(anchor=str(anchor_pt), dag=str(dag_file), data=str(data), val=str(val),
                                      out=str(folder), lambdas=list(b.lambdas), gain_range=tuple(b.gain_range),
                                      steps_entropy=b.entropy_steps,
                                      steps_finetune=0, batch=b.batch, crop=b.crop, views=b.views, seed=b.seed,
                                      hyper_channels=b.hyper_channels, no_parents=no_parents,
                                      use_global=use_global, parent_input=b.parent_input,
                                      val_limit=b.val_limit, ckpt_every=max(200, b.entropy_steps)),
                         progress=progress, log=log)
        return folder / "codec.pt"

    # (name, DAG file, without parents, with Eq. 12's global term), in listing order
    dag_runs: list[tuple[str, Path, bool, bool]] = [("chosen", Path(dag), False, False)] if "dag" in kinds else []
    for k in range(b.random_dags if "dag" in kinds else 0):
        f = out / f"dag-random-{k + 1}.json"
        if not f.exists():
            # one generator per DAG: a resumed run draws the same graphs
            _write_json(f, random_dag(groups, np.random.default_rng([b.seed, 7, k]), chosen.get("parents")))
        dag_runs.append((f"random-{k + 1}", f, False, False))
    if "dag" in kinds:
        dag_runs.append(("none", Path(dag), True, False))
    if "global" in kinds:
        dag_runs.append(("chosen-global", Path(dag), False, True))
    for name, f, no_parents, use_global in dag_runs:
        codec = stage2(f"dag-{name}", Path(anchor), f, no_parents=no_parents, use_global=use_global)
        parents = {} if no_parents else json.loads(f.read_text())["parents"]
        variants.append({"kind": "dag", "name": name, "codec": str(codec.relative_to(out)),
                         "dag": None if no_parents else str(f), "parents": {g: parents.get(g) for g in groups},
                         **({"global_context": True} if use_global else {})})

    for name, gs in (("grouped", all_groups), ("single", list(tasks))) if "grouping" in kinds else ():
        folder = out / f"group-{name}"
        if not (folder / "s1" / "anchor.pt").exists():
            log(f"ablation {name}: stage 1 on groups {', '.join(gs)} ({b.stage1_steps} steps)")
            train_stage1(Stage1Config(data=str(data), val=str(val), groups=gs, out=str(folder / "s1"),
                                      steps=b.stage1_steps, batch=b.batch, crop=b.crop, views=b.views,
                                      seed=b.seed,
                                      warmup=min(200, max(1, b.stage1_steps // 10)), eval_every=b.stage1_steps,
                                      ckpt_every=max(200, b.stage1_steps), val_limit=b.val_limit,
                                      trivial_samples=b.trivial_samples, net=net), progress=progress, log=log)
        s1 = torch.load(folder / "s1" / "anchor.pt", map_location="cpu", weights_only=False)["describe"]
        gs = coded_groups(list(s1["groups"]), s1["serving"])
        flat = folder / "dag-flat.json"
        _write_json(flat, fixed_dag(gs, {g: None for g in gs}, gs, "none"))
        codec = stage2(f"group-{name}/s2", folder / "s1" / "anchor.pt", flat, no_parents=True)
        variants.append({"kind": "grouping", "name": name, "codec": str(codec.relative_to(out)), "groups": gs,
                         "parents": {g: None for g in gs}})
    # variants of kinds not trained in this call stay listed, so kinds can be added one at a time
    listed = {(v["kind"], v["name"]) for v in variants}
    earlier = json.loads((out / MANIFEST).read_text())["variants"] if (out / MANIFEST).exists() else []
    variants = [v for v in earlier if (v["kind"], v["name"]) not in listed] + variants
    # DAG variants first: evaluation normalises every loss by the first variant's trivial loss
    variants.sort(key=lambda v: v["kind"] != "dag")
    manifest = {"schema": SCHEMA, "anchor": str(anchor), "dag": str(dag), "data": str(data), "val": str(val),
                "groups": groups, "tasks": tasks, "budget": asdict(b), "variants": variants,
                "notes": {"dag": "shared stage-1 anchor; entropy models and gains trained, transforms frozen",
                          "grouping": "stage 1 retrained for both with the same budget; no DAG parents",
                          "global": "chosen DAG plus Eq. 12's global term in each child's second pass"}}
    _write_json(out / MANIFEST, manifest)
    return manifest


# --------------------------------------------------------------------------- evaluation


def _chain_bpp(bpp: dict[str, float], parents: dict[str, str | None], group: str) -> float:
    total, g = 0.0, group
    while g is not None:
        total += bpp[g]
        g = parents.get(g)
    return total


def evaluate_ablation(folder: str | Path, data: str | Path, images: int = 8, *, log=print,
                      progress: bool = True) -> dict:
    """Rate and loss of every variant on the bench images, and bits at equal loss (BD-rate)."""
    import torch

    from ..data.torch_dataset import MultiTaskDataset
    from ..train.stage2 import evaluate_rd, load_codec_model

    folder = Path(folder)
    mpath = folder / MANIFEST
    if not mpath.exists():
        raise TamcInputError(f"{mpath}: no ablation models; run bin/train-ablation first (or pass --ablation-dir)")
    manifest = json.loads(mpath.read_text())
    results: dict[str, dict] = {}
    trivial_common = None
    from tqdm import tqdm

    for v in tqdm(manifest["variants"], desc="ablation", unit="model", dynamic_ncols=True, disable=not progress):
        codec_pt = folder / v["codec"]
        model = load_codec_model(codec_pt)
        trivial = torch.load(codec_pt, map_location="cpu", weights_only=False)["trivial"]
        if trivial_common is None:
            trivial_common = dict(trivial)  # the first (chosen DAG) variant's, so every loss is normalised alike
        tasks = [t for t in TASKS if t in model.base.serving]
        ds = MultiTaskDataset(data, tasks, train=False, limit=images)
        rd = evaluate_rd(model, ds, trivial, batch=2)
        parents = model.parents
        points = []
        for r in rd:
            task_rows = {}
            for t, tr in r["tasks"].items():
                task_rows[t] = {"loss": tr["loss"], "normalised_loss": tr["loss"] / trivial_common[t],
                                "bpp": _chain_bpp(r["bpp"], parents, model.base.serving[t])}
            points.append({"quality": r["quality"], "bpp_total": r["bpp_total"], "bpp_groups": r["bpp"],
                           "mean_normalised_loss": float(np.mean([x["normalised_loss"] for x in task_rows.values()])),
                           "tasks": task_rows})
        results[f"{v['kind']}:{v['name']}"] = {**v, "serving": model.base.serving, "points": points}
    comparisons = {"dag": _compare(results, "dag", "chosen"), "grouping": _compare(results, "grouping", "grouped")}
    return {"schema": SCHEMA, "folder": str(folder), "images": images, "budget": manifest["budget"],
            "notes": {**manifest.get("notes", {}),
                      "rate": "estimated bits from the entropy models' likelihoods (same estimator for all variants)",
                      "bd_rate": "percent more bits than the reference variant at equal loss (positive = costs more)"},
            "variants": results, "comparisons": comparisons}


def _compare(results: dict, kind: str, reference: str) -> dict:
    ref = results.get(f"{kind}:{reference}")
    if ref is None:
        return {}
    out = {}
    for key, v in results.items():
        if v["kind"] != kind or v["name"] == reference:
            continue
        entry = {"reference": reference,
                 "total": curves.bd_rate([p["bpp_total"] for p in ref["points"]],
                                         [p["mean_normalised_loss"] for p in ref["points"]],
                                         [p["bpp_total"] for p in v["points"]],
                                         [p["mean_normalised_loss"] for p in v["points"]], higher_is_better=False),
                 "tasks": {}, "per_quality": []}
        for t in ref["points"][0]["tasks"]:
            if t in v["points"][0]["tasks"]:
                entry["tasks"][t] = curves.bd_rate([p["tasks"][t]["bpp"] for p in ref["points"]],
                                                   [p["tasks"][t]["loss"] for p in ref["points"]],
                                                   [p["tasks"][t]["bpp"] for p in v["points"]],
                                                   [p["tasks"][t]["loss"] for p in v["points"]], higher_is_better=False)
        for pr, pv in zip(ref["points"], v["points"]):
            entry["per_quality"].append({
                "quality": pr["quality"], "bits_ratio": pv["bpp_total"] / pr["bpp_total"] if pr["bpp_total"] else None,
                "loss_ratio": pv["mean_normalised_loss"] / pr["mean_normalised_loss"]
                if pr["mean_normalised_loss"] else None})
        out[v["name"]] = entry
    return out


# --------------------------------------------------------------------------- report


def plot_ablation(abl: dict, out: Path) -> list[Path]:
    from .plotting import log_x, pyplot

    plt = pyplot()
    written = []
    for kind, title in (("dag", "DAG ablation (entropy models only)"), ("grouping", "Grouped vs single-task")):
        vs = [v for v in abl["variants"].values() if v["kind"] == kind]
        if not vs:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for v in vs:
            pts = sorted(v["points"], key=lambda p: p["bpp_total"])
            ax.plot([p["bpp_total"] for p in pts], [p["mean_normalised_loss"] for p in pts], marker="o", ms=4,
                    lw=2.2 if v["name"] in ("chosen", "grouped") else 1.2, label=v["name"])
        log_x(ax)
        ax.set_xlabel("bits per pixel, all tasks (estimated)")
        ax.set_ylabel("mean normalised task loss")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"ablation_{kind}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def ablation_table(abl: dict) -> str:
    lines = ["ablation: extra bits at equal loss relative to the reference variant, BD-rate % "
             "(positive = the variant costs more)"]
    b = abl["budget"]
    lines.append(f"budget: stage 1 {b['stage1_steps']} steps (grouping variants), entropy models "
                 f"{b['entropy_steps']} steps, batch {b['batch']}, crop {b['crop']}; {abl['images']} images")
    for kind, comps in abl["comparisons"].items():
        for name, c in comps.items():
            def cell(r):
                return format(r["value"], "+.1f") if r["status"] == "ok" else r["status"]
            tasks = ", ".join(f"{t} {cell(r)}" for t, r in c["tasks"].items())
            lines.append(f"  {kind:8} {name:10} vs {c['reference']:8} total {cell(c['total']):>10}   {tasks}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="train-ablation", description=__doc__.split("\n")[0])
    p.add_argument("--anchor", required=True)
    p.add_argument("--dag", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True)
    d = AblationBudget()
    for f in ("stage1_steps", "entropy_steps", "batch", "crop", "random_dags", "seed", "hyper_channels",
              "trivial_samples"):
        p.add_argument("--" + f.replace("_", "-"), type=int, default=getattr(d, f))
    p.add_argument("--val-limit", type=int, default=d.val_limit)
    p.add_argument("--lambdas", default=",".join(str(x) for x in d.lambdas))
    p.add_argument("--gain-range", default=",".join(str(x) for x in d.gain_range))
    p.add_argument("--parent-input", choices=PARENT_INPUTS, default=d.parent_input)
    p.add_argument("--views", choices=VIEWS, default=d.views)
    p.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                   help="variants to train, any of: dag, grouping, global (the chosen DAG with Eq. 12's term)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    budget = AblationBudget(stage1_steps=a.stage1_steps, entropy_steps=a.entropy_steps, batch=a.batch, crop=a.crop,
                            random_dags=a.random_dags, seed=a.seed, hyper_channels=a.hyper_channels,
                            lambdas=[float(x) for x in a.lambdas.split(",")],
                            gain_range=tuple(float(x) for x in a.gain_range.split(",")), val_limit=a.val_limit,
                            trivial_samples=a.trivial_samples, parent_input=a.parent_input, views=a.views)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        p.error(f"--kinds takes {', '.join(KINDS)}")
    m = train_ablation(a.anchor, a.dag, a.data, a.val, a.out, budget, kinds=kinds, progress=not a.quiet)
    print(f"wrote {Path(a.out) / MANIFEST}: {len(m['variants'])} variants")


if __name__ == "__main__":
    main()


__all__ = ["AblationBudget", "random_dag", "train_ablation", "evaluate_ablation", "plot_ablation", "ablation_table"]
