"""How much of the anchor's depth error is one wrong scale per picture.

A single picture fixes depth only up to the scene's size: the network must read the room's scale
from cues (furniture sizes, camera height, where walls meet the floor). This script runs the
stage-1 anchor's serving depth decoder and, per picture, rescales its prediction by the factor
that matches the label best (the median of label / prediction over valid pixels, in metres). The
loss that remains after that rescale is the error in the depth map's shape; the difference to the
raw loss is what a better estimate of the scene's scale alone could gain.

    python benchmarks/depth_scale.py [--anchor runs/v8/stage1b/anchor.pt] [--images 50]

Prints, for the validation scenes (256²), the test scenes (512²) and the test scenes downsampled
to 256²: loss / trivial loss raw and scale-aligned, abs-rel raw and scale-aligned, and the median
|log scale| (0.1 ≈ 10 % too near or too far). Writes benchmarks/results/depth_scale.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tamc_codec.data.torch_dataset import MultiTaskDataset
from tamc_codec.tasks.losses import task_loss
from tamc_codec.tasks.registry import spec
from tamc_codec.train.anchor import load_anchor
from tamc_codec.train.evaluation import ordered_batches


def _metres(x: torch.Tensor) -> torch.Tensor:
    s = spec("depth")
    return x * s.scale + s.offset


def _normalised(z: torch.Tensor) -> torch.Tensor:
    s = spec("depth")
    return (z - s.offset) / s.scale


@torch.no_grad()
def depth_scale_rows(model, ds: MultiTaskDataset, trivial: float) -> dict[str, float]:
    group = model.serving["depth"]
    raw, aligned, rel_raw, rel_aligned, log_scales = [], [], [], [], []
    for b in ordered_batches(ds, 4):
        latent = model.encode(b["image"], [group])[group]
        pred = model.decode(group, "depth", latent)
        target = b["depth"]
        pred = F.interpolate(pred, size=target.shape[-2:], mode="bilinear", align_corners=False)
        for p, t in zip(pred.split(1), target.split(1)):
            valid = torch.isfinite(t)
            if not bool(valid.any()):
                continue
            # a prediction at or behind the camera has no scale to correct; clamp it to 10 cm
            zp, zt = _metres(p).clamp(min=0.1), _metres(torch.nan_to_num(t))
            scale = torch.median(zt[valid] / zp[valid])
            raw.append(float(task_loss("depth", p, t)))
            aligned.append(float(task_loss("depth", _normalised(zp * scale), t)))
            rel_raw.append(float(((zp - zt).abs() / zt)[valid].mean()))
            rel_aligned.append(float(((zp * scale - zt).abs() / zt)[valid].mean()))
            log_scales.append(abs(float(torch.log(scale))))
    return {
        "images": len(raw),
        "loss_over_trivial": float(np.mean(raw)) / trivial,
        "scale_aligned_loss_over_trivial": float(np.mean(aligned)) / trivial,
        "abs_rel": float(np.mean(rel_raw)),
        "scale_aligned_abs_rel": float(np.mean(rel_aligned)),
        "median_abs_log_scale": float(np.median(log_scales)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--anchor", default="runs/v8/stage1b/anchor.pt")
    p.add_argument("--val", default="data/val")
    p.add_argument("--test", default="data/test")
    p.add_argument("--images", type=int, default=50, help="pictures per split (validation: twice as many)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "depth_scale.json"))
    a = p.parse_args()
    torch.set_num_threads(2)
    model = load_anchor(a.anchor)
    trivial = float(torch.load(a.anchor, map_location="cpu", weights_only=False)["trivial"]["depth"])
    t0 = time.perf_counter()
    sets = (("validation 256²", a.val, 2 * a.images, 1), ("test 512²", a.test, a.images, 1),
            ("test downsampled to 256²", a.test, a.images, 2))
    rows = {}
    for name, data, n, factor in sets:
        ds = MultiTaskDataset(data, model.tasks, train=False, limit=n, downsample=factor)
        r = rows[name] = depth_scale_rows(model, ds, trivial)
        print(f"{name:26s} loss/trivial {r['loss_over_trivial']:.3f} -> {r['scale_aligned_loss_over_trivial']:.3f}"
              f"  abs-rel {r['abs_rel']:.3f} -> {r['scale_aligned_abs_rel']:.3f}"
              f"  median |log scale| {r['median_abs_log_scale']:.3f}")
    result = {"anchor": a.anchor, "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
