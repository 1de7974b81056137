"""Lookahead task grouping on the generated training split: time per seed and spread of Ĉ.

    python benchmarks/bench_grouping.py [--data data/train] [--steps 1000] [--seeds 0 1]

Target (lookahead issue): 6 tasks in <= 20 minutes per seed on the 2-core reference
machine. Prints the time of each seed and how much Ĉ differs between seeds (mean and
largest |Ĉ1 - Ĉ2| off the diagonal, their correlation, whether the chosen groups agree).
Writes to benchmarks/results/: grouping.json (the first seed's grouping, what the model
is trained from), affinity.png (its heat map) and grouping_bench.json (timings, spread,
every seed's matrix and groups).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tamc_codec.contract import TASKS


def _offdiag(a: np.ndarray) -> np.ndarray:
    return a[~np.eye(a.shape[0], dtype=bool)]


def _rank(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def spread(a: np.ndarray, b: np.ndarray) -> dict:
    """How far two runs' Ĉ are apart, off the diagonal (the entries that score groups)."""
    x, y = _offdiag(a), _offdiag(b)
    d = np.abs(x - y)
    return {
        "mean_abs_diff": float(d.mean()),
        "max_abs_diff": float(d.max()),
        "mean_abs_value": float(np.abs(np.concatenate([x, y])).mean()),
        "relative_mean_abs_diff": float(d.mean() / max(1e-12, np.abs(np.concatenate([x, y])).mean())),
        "pearson": float(np.corrcoef(x, y)[0, 1]),
        "spearman": float(np.corrcoef(_rank(x), _rank(y))[0, 1]),
        "sign_agreement": float(np.mean(np.sign(x) == np.sign(y))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).parents[1] / "data" / "train"))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--budget", type=float, default=3.0)
    ap.add_argument("--lookahead-lr", type=float, default=0.05)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=0, help="0: the cores not busy (see tamc group)")
    ap.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--runs-dir", default=str(Path(tempfile.gettempdir()) / "tamc_bench_grouping"),
                    help="where each seed's result is kept (grouping_seedS.json)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse RUNS_DIR/grouping_seedS.json from an earlier run with the same settings")
    ap.add_argument("--from-grouping", action="append", default=[], metavar="FILE",
                    help="use this grouping.json (from `tamc group` with the same settings) as the run "
                         "of its seed instead of training again; repeatable")
    ap.add_argument("--note", action="append", default=[], help="a remark to record in grouping_bench.json")
    ap.add_argument("--notes-file", help="more remarks, one per line")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()

    import torch
    from tqdm import tqdm

    from tamc_codec.cli.group_cmd import _threads
    from tamc_codec.grouping.affinity import run_lookahead_grouping
    from tamc_codec.grouping.affinity_plot import plot_affinity
    from tamc_codec.grouping.grouping_io import save_grouping
    from tamc_codec.grouping.selection import grouping_parts

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(args.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(TASKS)
    runs = []
    same = ("steps", "every", "batch_size", "lookahead_lr", "size")
    want = {"steps": args.steps, "every": args.every, "batch_size": args.batch_size,
            "lookahead_lr": args.lookahead_lr, "size": 64}
    given = {}
    for f in args.from_grouping:
        from tamc_codec.grouping.grouping_io import load_grouping

        g = load_grouping(f)
        diff = {k: g["settings"].get(k) for k in same if g["settings"].get(k) != want[k]}
        if g["method"] != "lookahead" or g["tasks"] != tasks or diff:
            sys.exit(f"{f}: not a 6-task lookahead run with these settings ({diff or g['method']})")
        given[int(g["settings"]["seed"])] = {"seed": int(g["settings"]["seed"]), "seconds": round(g["runtime_s"], 1),
                                            "threads": g["settings"].get("threads"), "load_avg_1min": None,
                                            "grouping": g, "from": str(f)}
    for seed in args.seeds:
        if seed in given:
            runs.append(given[seed])
            print(f"seed {seed}: from {given[seed]['from']} ({given[seed]['seconds'] / 60:.1f} min when run)")
            continue
        saved = runs_dir / f"grouping_seed{seed}.json"
        if args.reuse and saved.exists():
            prev = json.loads(saved.read_text())
            if all(prev["grouping"]["settings"].get(k) == want[k] for k in same):
                runs.append(prev)
                print(f"seed {seed}: reused {saved} ({prev['seconds'] / 60:.1f} min when run)")
                continue
        threads = _threads(args.threads)
        torch.set_num_threads(threads)
        bar = None if args.quiet else tqdm(total=args.steps, desc=f"seed {seed}", unit="step", file=sys.stderr)

        def progress(step, losses, bar=bar):
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix_str(" ".join(f"{t}={v:.2f}" for t, v in losses.items()), refresh=False)

        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        d, res = run_lookahead_grouping(args.data, tasks, steps=args.steps, budget=args.budget,
                                        every=args.every, seed=seed, batch_size=args.batch_size,
                                        lookahead_lr=args.lookahead_lr, progress=progress)
        dt = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        run = {"seed": seed, "seconds": round(dt, 1), "threads": threads,
               "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)], "grouping": d}
        saved.write_text(json.dumps(run, indent=1) + "\n")
        runs.append(run)
        print(f"seed {seed}: {dt / 60:.1f} min ({args.steps} steps, {res.count} lookaheads, "
              f"{threads} thread(s)); groups {', '.join(d['groups'])}; objective {d['objective']:+.4f}",
              flush=True)

    first = runs[0]["grouping"]
    root = Path(__file__).resolve().parents[1]
    data_path = Path(args.data).resolve()
    if data_path.is_relative_to(root):  # a committed file should not name this machine's folders
        for r in runs:
            r["grouping"]["data"]["path"] = str(data_path.relative_to(root))
    save_grouping(first, out / "grouping.json")
    plot_affinity(first["affinity"], tasks, out / "affinity.png", std=first["affinity_std"],
                  groups=first["groups"],
                  title=f"Lookahead affinity Ĉ(u → v), generated training data, seed {runs[0]['seed']}, "
                        f"{args.steps} steps (± spread over the run)")
    report = {
        "target_minutes_per_seed": 20,
        "settings": {k: first["settings"][k] for k in ("steps", "every", "size", "lr", "lookahead_lr", "batch_size")},
        "data": first["data"],
        "budget": args.budget,
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "torch": torch.__version__,
        "notes": args.note + ([ln.strip() for ln in Path(args.notes_file).read_text().splitlines() if ln.strip()]
                              if args.notes_file else []),
        "seeds": [{"seed": r["seed"], "seconds": r["seconds"], "minutes": round(r["seconds"] / 60, 2),
                   "threads": r["threads"], "load_avg_1min_before_after": r["load_avg_1min"],
                   "groups": r["grouping"]["groups"], "assignment": r["grouping"]["assignment"],
                   "objective": r["grouping"]["objective"], "affinity": r["grouping"]["affinity"],
                   "final_loss": r["grouping"]["settings"]["final_loss"],
                   "from": r.get("from")} for r in runs],
    }
    times = ", ".join(f"{r['seconds'] / 60:.1f} min" for r in runs)
    print(f"time per seed: {times} (target <= 20 min)")
    if len(runs) >= 2:
        ga, gb = runs[0]["grouping"], runs[1]["grouping"]
        a, b = np.array(ga["affinity"]), np.array(gb["affinity"])
        s = spread(a, b)
        mean = (a + b) / 2
        both = grouping_parts(tasks, mean, args.budget)
        s["same_groups"] = runs[0]["grouping"]["groups"] == runs[1]["grouping"]["groups"]
        s["groups_from_mean_of_seeds"] = sorted("+".join(g) for g in both["groups"])
        # how much of the between-seed difference is plain noise of the run average
        se = np.sqrt(np.array(ga["affinity_std"]) ** 2 / ga["settings"]["lookaheads"]
                     + np.array(gb["affinity_std"]) ** 2 / gb["settings"]["lookaheads"])
        s["mean_standard_error_of_difference"] = float(_offdiag(se).mean())
        report["spread_between_seeds"] = s
        print(f"spread of Ĉ between seeds {runs[0]['seed']} and {runs[1]['seed']} (off-diagonal): "
              f"mean |ΔĈ| {s['mean_abs_diff']:.4f} (mean |Ĉ| {s['mean_abs_value']:.4f}, "
              f"relative {s['relative_mean_abs_diff']:.2f}), max |ΔĈ| {s['max_abs_diff']:.4f}, "
              f"Pearson {s['pearson']:.3f}, Spearman {s['spearman']:.3f}, "
              f"same signs {100 * s['sign_agreement']:.0f}%, same groups: {s['same_groups']}")
    (out / "grouping_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    print("Ĉ (seed %d), rows u = source, columns v = recipient, order %s:" % (runs[0]["seed"], ", ".join(tasks)))
    print(np.array(first["affinity"]))
    print(f"wrote {out / 'grouping.json'}, {out / 'affinity.png'}, {out / 'grouping_bench.json'}")


if __name__ == "__main__":
    main()
