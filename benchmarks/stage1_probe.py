"""Short single-task stage-1 probes: which training set-up teaches the geometric tasks?

The first recipe (96 px crops) learned edge, keypoint and rgb but left seg, depth and
normal at the trivial predictor (docs/TRAINING.md). This trains one encoder and
decoder per task (no grouping, no rate) for a few hundred steps under one set-up and
prints validation loss / trivial loss at the training scale and at the native 256 px:

  crop   random 96 px crops of the native 256 px scenes (the first recipe)
  full   whole scenes, area-downsampled to 128 px (the network sees the entire room)
  mix    alternate batches of native 128 px crops and whole scenes at 128 px (the recipe now)

With --test, also at the test split's own scale (512 px); --coords gives the networks each
pixel's position (NetConfig.coords).

Usage:
  python benchmarks/stage1_probe.py --setup mix --norm group --coords --steps 600 --test data/test
  python benchmarks/stage1_probe.py --setup full --norm group --steps 500
  python benchmarks/stage1_probe.py --setup crop --steps 500 --json out.json
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tamc_codec.nets import NORMS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/train")
    ap.add_argument("--val", default="data/val")
    ap.add_argument("--tasks", default="seg,depth")
    ap.add_argument("--setup", choices=["crop", "full", "mix"], default="crop")
    ap.add_argument("--norm", choices=NORMS, default="none")
    ap.add_argument("--encoder-norm", choices=NORMS, default=None, help="the encoder's, if not --norm's")
    ap.add_argument("--global-context", action="store_true")
    ap.add_argument("--coords", action="store_true", help="networks see pixel positions (NetConfig.coords)")
    ap.add_argument("--scene-tasks", default=None,
                    help="with --setup mix: tasks scored on the whole-scene batches (default: all; '' for none)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-images", type=int, default=50)
    ap.add_argument("--test", help="also evaluate on this folder at its own scale (e.g. data/test, 512 px)")
    ap.add_argument("--test-images", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()

    import torch

    from tamc_codec.data.torch_dataset import MultiTaskDataset, collate
    from tamc_codec.nets.multitask import MultiGroupModel, NetConfig
    from tamc_codec.tasks.losses import task_loss
    from tamc_codec.train.evaluation import mean_maps, trivial_losses

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tasks = args.tasks.split(",")
    crops = MultiTaskDataset(args.data, tasks, crop=96 if args.setup == "crop" else 128, train=True)
    scenes = MultiTaskDataset(args.data, tasks, crop=None, train=True, downsample=2)
    sources = {"crop": [crops], "full": [scenes], "mix": [crops, scenes]}[args.setup]

    def val_at(down: int):
        ds = MultiTaskDataset(args.val, tasks, crop=None, train=False, downsample=down, limit=args.val_images)
        full = MultiTaskDataset(args.data, tasks, crop=None, train=False, downsample=down)
        return ds, trivial_losses(mean_maps(full, tasks, 256), ds)

    vals = {"128": val_at(2), "256": val_at(1)}
    if args.test:
        # the trivial predictor at the test scale: the training mean maps, upsampled
        test_ds = MultiTaskDataset(args.test, tasks, crop=None, train=False, limit=args.test_images)
        maps = mean_maps(MultiTaskDataset(args.data, tasks, crop=None, train=False), tasks, 256)
        maps = {t: _upsample_map(t, m, test_ds.size) for t, m in maps.items()}
        vals[str(test_ds.size)] = (test_ds, trivial_losses(maps, test_ds))
    cfg = NetConfig(norm=args.norm, encoder_norm=args.encoder_norm, global_context=args.global_context, coords=args.coords)
    model = MultiGroupModel(tasks, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # the probe's own loss weights: each task by its trivial loss at the training scale
    weights = vals["256" if args.setup == "crop" else "128"][1]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for step in range(args.steps):
        b = sources[step % len(sources)].random_batch(rng, args.batch)
        scored = tasks
        if args.scene_tasks is not None and sources[step % len(sources)] is scenes:
            scored = [t for t in tasks if t in args.scene_tasks.split(",")]
            if not scored:
                continue
        latents = model.encode(b["image"], origin=b["origin"])
        loss = sum(task_loss(t, model.decode(t, t, latents[t], b["origin"]), b[t]) / weights[t] for t in scored)
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = time.perf_counter() - t0

    model.eval()
    result = {"setup": args.setup, "norm": args.norm, "encoder_norm": args.encoder_norm, "global_context": args.global_context, "coords": args.coords, "scene_tasks": args.scene_tasks, "steps": args.steps,
              "batch": args.batch, "lr": args.lr, "train_s": round(train_s, 1), "loss_over_trivial": {}}
    with torch.no_grad():
        for scale, (ds, trivial) in vals.items():
            totals = {t: 0.0 for t in tasks}
            for start in range(0, len(ds), 10):
                b = collate([ds.sample(i) for i in range(start, min(start + 10, len(ds)))])
                latents = model.encode(b["image"])
                for t in tasks:
                    totals[t] += float(task_loss(t, model.decode(t, t, latents[t]), b[t])) * len(b["image"])
            result["loss_over_trivial"][scale] = {t: round(totals[t] / len(ds) / trivial[t], 3) for t in tasks}
    print(json.dumps(result))
    if args.json:
        from tamc_codec.atomic import atomic_write_bytes

        atomic_write_bytes(args.json, (json.dumps(result, indent=1) + "\n").encode())


def _upsample_map(task: str, m, size: int):
    """task_loss resizes other maps bilinearly itself; the seg prior keeps its class borders."""
    import torch.nn.functional as F

    if task != "seg" or m.shape[-1] == size:
        return m
    return F.interpolate(m[None], size=(size, size), mode="nearest")[0]


if __name__ == "__main__":
    main()
