"""Scene generator throughput: scenes/s at 256x256 including labels and PNG writing.

    python benchmarks/bench_synth.py [--count 64] [--size 256] [--workers 2]

Target (issue #2): >= 5 scenes/s on the 2-core reference machine. Writes
benchmarks/results/synth.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from tamc_codec.data.folder import synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # warm the texture cache and the worker start-up outside the timed run
        synthesize(Path(tmp) / "warm", 2, args.size, 0, workers=1)
        t0 = time.perf_counter()
        synthesize(Path(tmp) / "run", args.count, args.size, 1000, workers=args.workers)
        dt = time.perf_counter() - t0
    result = {
        "scenes": args.count, "size": args.size, "workers": args.workers, "seconds": round(dt, 3),
        "scenes_per_s": round(args.count / dt, 2), "target_scenes_per_s": 5.0,
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
    }
    print(f"{args.count} scenes {args.size}x{args.size} with {args.workers} workers: "
          f"{dt:.1f} s, {result['scenes_per_s']} scenes/s (target >= 5)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
