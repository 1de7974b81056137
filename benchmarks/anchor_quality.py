"""Quality of the stage-1 anchor on the validation split (issue: networks and stage 1).

    python benchmarks/anchor_quality.py runs/default/stage1 data/val [data/train]

Prints, for each task's serving group: loss / trivial-predictor loss (target < 0.5,
i.e. at least halving the per-pixel-mean predictor) and the human metric; writes
benchmarks/results/anchor_quality.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tamc_codec.data.torch_dataset import MultiTaskDataset
from tamc_codec.train.stage1 import evaluate, load_anchor, mean_maps, trivial_losses


def main() -> None:
    run, val_dir = Path(sys.argv[1]), sys.argv[2]
    model = load_anchor(run / "anchor.pt")
    tasks = model.tasks
    val = MultiTaskDataset(val_dir, tasks, train=False)
    if len(sys.argv) > 3:
        trivial = trivial_losses(mean_maps(MultiTaskDataset(sys.argv[3], tasks, train=False), tasks, 256), val)
    else:
        import torch

        trivial = torch.load(run / "anchor.pt", map_location="cpu", weights_only=False)["trivial"]
    per_pair = evaluate(model, val, trivial)
    rows = {}
    print(f"{'task':9s} {'group':22s} {'loss/trivial':>12s}  metric")
    for t in tasks:
        g = model.serving[t]
        r = per_pair[g][t]
        metric = {k: v for k, v in r.items() if k not in ("loss", "normalised")}
        ok = "ok" if r["normalised"] < 0.5 else "NOT halved"
        print(f"{t:9s} {g:22s} {r['normalised']:12.3f}  " + ", ".join(f"{k} {v:.4g}" for k, v in metric.items()) + f"  [{ok}]")
        rows[t] = {"group": g, **r, "halves_trivial": r["normalised"] < 0.5}
    out = Path(__file__).parent / "results" / "anchor_quality.json"
    out.write_text(json.dumps({"run": str(run), "val": val_dir, "images": len(val), "trivial_loss": trivial,
                               "served": rows, "all_pairs": per_pair}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
