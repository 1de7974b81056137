"""Where a layer's qualities should sit: from a bench of a model exported at a fine grid of quality
positions (docs/MODEL.md, "Quality positions"), on validation pictures, choose the positions of a
shipped ladder.

A receiver asks for a quality; what it needs is the lowest rate at which its task is as good as it
gets closely enough. So the ladder keeps the grid's lowest position (the least a file can cost), its
highest (the layer's ceiling), and between them, for each task, the first position whose
validation loss is within the bench's iso factor (1.15) of the anchor's: the point where that task
stops gaining much per bit. Positions two tasks share are taken once, and the ladder is filled up to
the wanted count with the grid points that halve the widest gaps in rate.

    tamc export runs/scene128/stage2/codec.pt --out GRID --quality-positions 1.5,1.6,...,3.0 ...
    tamc train fixed-hyper -m GRID --from-data data/val512 --out GRID_FIXED
    tamc bench --codecs tamc --model GRID_FIXED --data data/val512 --tasks seg,depth,normal --anchor model --out B
    python benchmarks/quality_ladder.py B/results.json --positions 1.5,1.6,...,3.0 --out benchmarks/results/quality_ladder.json

It prints and writes the chosen positions; `tamc export --quality-positions` takes them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def choose(results: dict, positions: list[float], count: int) -> dict:
    curve = sorted(results["curves"]["tamc"], key=lambda p: int(p["setting"]))
    if len(curve) != len(positions):
        raise SystemExit(f"the bench has {len(curve)} tamc qualities, --positions names {len(positions)}")
    factor = float(results.get("iso_factor", 1.15))
    rates = [p["bpp"] for p in curve]
    chosen = {0, len(curve) - 1}
    crossing = {}
    for task, s in results["summary"].items():
        target = factor * s["anchor_loss"]
        first = next((i for i, p in enumerate(curve) if p["tasks"][task]["loss"] <= target), None)
        crossing[task] = None if first is None else positions[first]
        if first is not None:
            chosen.add(first)
    while len(chosen) < count:
        picked = sorted(chosen)
        gaps = [(math.log(rates[b] / rates[a]), a, b) for a, b in zip(picked, picked[1:]) if b - a > 1]
        if not gaps:
            break
        _, a, b = max(gaps)
        mid = math.sqrt(rates[a] * rates[b])
        chosen.add(min(range(a + 1, b), key=lambda i: abs(math.log(rates[i] / mid))))
    if len(chosen) > count:
        raise SystemExit(f"{len(chosen)} positions are needed (the two ends and each task's crossing), more than {count}")
    picked = sorted(chosen)
    return {"positions": [positions[i] for i in picked], "bpp": [rates[i] for i in picked],
            "crossing": crossing, "iso_factor": factor,
            "grid": [{"position": q, "bpp": p["bpp"], "loss": {t: v["loss"] for t, v in p["tasks"].items()}}
                     for q, p in zip(positions, curve)],
            "anchor_loss": {t: s["anchor_loss"] for t, s in results["summary"].items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="results.json of a tamc bench of the grid model on validation pictures")
    ap.add_argument("--positions", required=True, help="the grid model's quality positions, lowest first")
    ap.add_argument("--count", type=int, default=5, help="qualities of the shipped ladder")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    results = json.loads(a.results.read_text())
    out = choose(results, [float(p) for p in a.positions.split(",")], a.count)
    out["source"] = {"results": str(a.results), "data": results.get("provenance", {}).get("data"),
                     "command": sys.argv}
    print("positions " + ",".join(f"{p:g}" for p in out["positions"]) + "  (bpp "
          + ", ".join(f"{b:.4f}" for b in out["bpp"]) + ")")
    for t, c in out["crossing"].items():
        print(f"  {t}: first within {out['iso_factor']} x the anchor's loss at position {c}")
    if a.out:
        a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
