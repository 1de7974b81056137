"""Quality of an exported model on the test split, against its stage-1 anchor.

    python benchmarks/model_quality.py --model models/default \
        --anchor runs/default/stage1b/anchor.pt --data data/test [--images N]

The anchor is the stage-1 network the model's stage 2 started from (stage 1b's in bin/train-default).
`--anchor model` uses the model's own networks on unquantised latents instead (no training run
needed; losses divided by the model's reference.json; docs/BENCH.md): the issue's 1.15 x check is
then against those networks, not the stage-1 anchor.

For each quality: bits per pixel (real .tamc bytes: the whole file, and per task the
header plus the layers that task needs) and every task's loss / trivial loss and
human metric, computed from the codec's own decoded latents (exported graphs, no
torch in the coding). The anchor analyses each group at the scale the codec does (CONTRACT.md,
scene scale). Checks (issue: second stage and the shipped model):
- highest quality: every task's loss <= 1.15 x the anchor's loss on uncompressed input
- every quality >= 3: every task at least halves the trivial predictor's loss
Every picture of the split by default (`--images N`: the first N): a verdict on a half of the test
split can differ from one on the whole of it (docs/TRAINING.md). Each mean loss / trivial comes with
its 95 % bootstrap interval over the pictures (`ci95`; the per-picture losses are in
`per_image_loss`), and the halving check is also given at the interval's upper end: whether it
would still hold for another draw of pictures as large.
Writes benchmarks/results/model_quality.json (or --out).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tamc_codec import runtime
from tamc_codec.atomic import atomic_write_bytes
from tamc_codec.bitstream import TamcReader
from tamc_codec.data.torch_dataset import MultiTaskDataset
from tamc_codec.tasks.losses import task_loss
from tamc_codec.bench.evaluate import Anchor, ModelAnchor, tamc_predictions
from tamc_codec.bench.intervals import LEVEL, RESAMPLES, bootstrap_interval
from tamc_codec.train.evaluation import TaskMetrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--anchor", default="runs/default/stage1b/anchor.pt",
                    help="stage-1 anchor.pt, or 'model' for the model's own networks, unquantised")
    ap.add_argument("--data", default="data/test")
    ap.add_argument("--images", type=int, default=None, help="the first N pictures (default: all)")
    ap.add_argument("--tasks", default=None,
                    help="comma-separated tasks (default: every task the model serves); files carry these tasks only, "
                         "so a model's picture layers, slow to code, can be left out when only its scene tasks changed")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_quality.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    rt = runtime.load_model(args.model)
    tasks = list(rt.serving)
    if args.tasks:
        from tamc_codec.contract import parse_task_list

        wanted = parse_task_list(args.tasks)
        unknown = [t for t in wanted if t not in tasks]
        if unknown:
            raise SystemExit(f"model_quality.py: {args.model} serves no {', '.join(unknown)}")
        tasks = wanted
    # the codec's own analysis without the coding: each group at the scale the codec runs it
    anchor = ModelAnchor(rt, tasks) if args.anchor == "model" else Anchor(args.anchor, tasks, scale_of=rt)
    trivial = anchor.trivial
    if not all(trivial.get(t) for t in tasks):
        raise SystemExit(f"model_quality.py: no trivial losses for {args.model} (no reference.json for this model)")
    ds = MultiTaskDataset(args.data, tasks, train=False, limit=args.images)
    n = len(ds)
    anchor_loss: dict[str, list[float]] = {t: [] for t in tasks}
    anchor_met = {t: TaskMetrics(t) for t in tasks}
    per_q = {q: {"loss": {t: [] for t in tasks}, "met": {t: TaskMetrics(t) for t in tasks},
                 "bits_task": {t: 0 for t in tasks}, "bits_all": 0, "enc_s": 0.0} for q in range(1, rt.qualities + 1)}
    pixels = 0
    for i in range(n):
        s = ds.sample(i)
        img = np.rint(s["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        pixels += img.shape[0] * img.shape[1]
        for t, p in anchor.predict(img).items():
            p = torch.from_numpy(p)[None]
            anchor_loss[t].append(float(task_loss(t, p, s[t][None])))
            anchor_met[t].update(p, s[t][None])
        for q in per_q:
            t0 = time.perf_counter()
            enc = runtime.encode_image(img, tasks, q, rt)
            per_q[q]["enc_s"] += time.perf_counter() - t0
            per_q[q]["bits_all"] += 8 * len(enc.data)
            with TamcReader(enc.data) as r:
                for t in tasks:
                    need = r.layers_for_task(t)
                    per_q[q]["bits_task"][t] += 8 * (r.header_size + sum(r.layers[k].length for k in need))
            for t, pred in tamc_predictions(rt, enc, tasks).items():
                pred = torch.from_numpy(pred)[None]
                per_q[q]["loss"][t].append(float(task_loss(t, pred, s[t][None])))
                per_q[q]["met"][t].update(pred, s[t][None])
        print(f"\rimage {i + 1}/{n}", end="", flush=True)
    print()
    per_image = {"anchor": anchor_loss, **{f"q{q}": r["loss"] for q, r in per_q.items()}}
    mean = {k: {t: float(np.mean(vs)) for t, vs in by_task.items()} for k, by_task in per_image.items()}
    result = {"model": str(args.model), "model_id": rt.id, "anchor_source": str(args.anchor), "data": str(args.data),
              "images": n, "tasks": tasks, "trivial_loss_val": trivial,
              "anchor": {t: {"loss": mean["anchor"][t], "normalised": mean["anchor"][t] / trivial[t],
                             **anchor_met[t].result()} for t in tasks},
              "qualities": []}
    for q, r in per_q.items():
        m = mean[f"q{q}"]
        result["qualities"].append({
            "quality": q, "bpp_all": r["bits_all"] / pixels,
            "encode_s_per_image": r["enc_s"] / n,
            "tasks": {t: {"bpp": r["bits_task"][t] / pixels, "loss": m[t], "normalised": m[t] / trivial[t],
                          "vs_anchor": m[t] / max(mean["anchor"][t], 1e-12),
                          **r["met"][t].result()} for t in tasks},
        })
    # per picture, so that the intervals (and any other statistic) can be recomputed from the record
    result["per_image_loss"] = {k: {t: [round(v, 6) for v in vs] for t, vs in by_task.items()}
                                for k, by_task in per_image.items()}
    result["ci95"] = {"method": f"percentile bootstrap over the pictures, {RESAMPLES} resamples, seed 0",
                      "level": LEVEL,
                      **{k: {t: [v / trivial[t] for v in bootstrap_interval(vs)] for t, vs in by_task.items()}
                         for k, by_task in per_image.items()}}
    top = result["qualities"][-1]["tasks"]
    high = [f"q{qr['quality']}" for qr in result["qualities"][2:]]
    checks = {
        "highest_quality_within_1.15x_anchor": {t: top[t]["vs_anchor"] <= 1.15 for t in tasks},
        "q>=3_halves_trivial": {t: all(qr["tasks"][t]["normalised"] < 0.5 for qr in result["qualities"][2:])
                                for t in tasks},
        # the same check at the upper end of each mean's 95 % interval: how firm the verdict is
        "q>=3_halves_trivial_at_upper_95": {t: all(result["ci95"][k][t][1] < 0.5 for k in high) for t in tasks},
        "rate_span_highest_over_lowest": result["qualities"][-1]["bpp_all"] / result["qualities"][0]["bpp_all"],
    }
    result["checks"] = checks
    print(f"{'':10s}" + "".join(f"{t:>18s}" for t in tasks))
    print(f"{'anchor':10s}" + "".join(f"{result['anchor'][t]['normalised']:>18.3f}" for t in tasks))
    for qr in result["qualities"]:
        print(f"q{qr['quality']} {qr['bpp_all']:.3f}bpp" + "".join(
            f"{qr['tasks'][t]['normalised']:>10.3f} @{qr['tasks'][t]['bpp']:.3f}" for t in tasks))
    metric_line = {t: {k: round(v, 4) for k, v in top[t].items() if k not in ("bpp", "loss", "normalised", "vs_anchor")}
                   for t in tasks}
    print("highest quality metrics:", json.dumps(metric_line))
    print("95 % intervals at q>=3:", json.dumps({t: {k: [round(v, 3) for v in result["ci95"][k][t]] for k in high}
                                                 for t in tasks}))
    print("checks:", json.dumps(checks))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
