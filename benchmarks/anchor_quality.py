"""Quality of an anchor on the validation split (issue: networks and stage 1).

    python benchmarks/anchor_quality.py runs/default/stage1 data/val [data/train]
    python benchmarks/anchor_quality.py models/default data/val --limit 100 --out benchmarks/results/X.json

The anchor is a stage-1 run folder (its anchor.pt), an anchor.pt, or an exported model folder,
whose encoders and serving decoders are rebuilt from its graphs and run on the uncompressed
picture (no quantisation): what `tamc bench --anchor model` draws as the line to reach.

Prints, for each task's serving group: loss / trivial-predictor loss (target < 0.5,
i.e. at least halving the per-pixel-mean predictor) and the human metric; writes JSON
(default benchmarks/results/anchor_quality.json). The trivial losses are the anchor's own
(stage 1's, on validation; a model keeps them in reference.json) unless a training folder is
given to measure them again.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tamc_codec.data.torch_dataset import MultiTaskDataset
from tamc_codec.train.anchor import anchor_trivial, load_anchor
from tamc_codec.train.evaluation import evaluate, mean_maps, trivial_losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("anchor", type=Path, help="stage-1 run folder, anchor.pt, or exported model folder")
    ap.add_argument("val", help="validation data folder")
    ap.add_argument("train", nargs="?", help="training data folder: measure the trivial losses on it again")
    ap.add_argument("--limit", type=int, default=None, help="first N validation scenes (default: all)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "anchor_quality.json")
    a = ap.parse_args()
    anchor = a.anchor / "anchor.pt" if (a.anchor / "anchor.pt").is_file() else a.anchor
    model = load_anchor(anchor)
    tasks = model.tasks
    val = MultiTaskDataset(a.val, tasks, train=False, limit=a.limit)
    if a.train:
        trivial = trivial_losses(mean_maps(MultiTaskDataset(a.train, tasks, train=False), tasks, 256), val)
    else:
        trivial = anchor_trivial(anchor)
    per_pair = evaluate(model, val, trivial)
    rows = {}
    print(f"{'task':9s} {'group':30s} {'loss/trivial':>12s}  metric")
    for t in tasks:
        g = model.serving[t]
        r = per_pair[g][t]
        metric = {k: v for k, v in r.items() if k not in ("loss", "normalised")}
        ok = "ok" if r["normalised"] < 0.5 else "NOT halved"
        print(f"{t:9s} {g:30s} {r['normalised']:12.3f}  " + ", ".join(f"{k} {v:.4g}" for k, v in metric.items()) + f"  [{ok}]")
        rows[t] = {"group": g, **r, "halves_trivial": r["normalised"] < 0.5}
    record = {"anchor": str(anchor), "val": a.val, "images": len(val), "trivial_loss": trivial, "served": rows}
    if not anchor.is_dir():  # a model exports its serving decoders only: the others would be untrained
        record["all_pairs"] = per_pair
    a.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
