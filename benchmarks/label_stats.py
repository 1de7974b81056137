"""Label statistics of a generated folder: the normalisation constants of the task registry.

    tamc data synth --count 200 --size 256 --out /tmp/stats-train
    python benchmarks/label_stats.py /tmp/stats-train

Prints mean and standard deviation of each dense label (valid pixels only) and the
seg class frequencies; the registry's offset/scale are these rounded
(tamc_codec/tasks/registry.py). Writes benchmarks/results/label_stats.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tamc_codec.data.folder import SceneFolder
from tamc_codec.tasks.registry import SEG_CLASSES, TASK_SPECS


def main() -> None:
    folder = SceneFolder.open(sys.argv[1])
    acc: dict[str, list[np.ndarray]] = {"depth": [], "edge": [], "keypoint": []}
    seg_counts = np.zeros(len(SEG_CLASSES), np.int64)
    for i in range(len(folder)):
        s = folder[i]
        acc["depth"].append(s["depth"][s["valid"]].ravel()[::7])
        acc["edge"].append(s["edge"].ravel()[::7])
        acc["keypoint"].append(s["keypoint"].ravel()[::7])
        seg_counts += np.bincount(s["seg"].ravel(), minlength=len(SEG_CLASSES))
    stats = {}
    for t, parts in acc.items():
        v = np.concatenate(parts).astype(np.float64)
        stats[t] = {"mean": float(v.mean()), "std": float(v.std()), "p99": float(np.percentile(v, 99)),
                    "registry_offset": TASK_SPECS[t].offset, "registry_scale": TASK_SPECS[t].scale}
        print(f"{t:9s} mean {v.mean():.5f}  std {v.std():.5f}  p99 {np.percentile(v, 99):.5f}   "
              f"(registry: offset {TASK_SPECS[t].offset}, scale {TASK_SPECS[t].scale})")
    freq = seg_counts / seg_counts.sum()
    stats["seg_frequency"] = {c: float(f) for c, f in zip(SEG_CLASSES, freq)}
    print("seg class frequency:", ", ".join(f"{c} {f:.3f}" for c, f in zip(SEG_CLASSES, freq)))
    out = Path(__file__).parent / "results" / "label_stats.json"
    out.write_text(json.dumps({"folder": str(sys.argv[1]), "count": len(folder), **stats}, indent=2) + "\n")


if __name__ == "__main__":
    main()
