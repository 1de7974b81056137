"""The stage-1 anchor on test scenes at their own 512² and area-downsampled to 256², the training
scenes' size: how much of the gap between the validation and test splits is the scale of the scene
in pixels (the rest: textures training never saw). A third row runs the networks on the picture
downsampled to 256² and scales their predictions back up to 512², scored against the 512² labels:
what a codec that analysed large pictures at the training scale would deliver.

    python benchmarks/anchor_scale.py [--anchor runs/v8/stage1b/anchor.pt] [--data data/test] [--images 50]

Prints loss / trivial loss per task (the anchor's own trivial losses, from validation, as
model_quality.py uses) and writes benchmarks/results/anchor_scale.json. Edge and keypoint labels are
defined at the picture's own resolution, so their downsampled rows measure another task.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tamc_codec.data.torch_dataset import MultiTaskDataset
from tamc_codec.train.anchor import load_anchor
from tamc_codec.train.evaluation import evaluate


class AtHalfScale(torch.nn.Module):
    """The anchor run on the picture area-downsampled ×2, its predictions upsampled back."""

    def __init__(self, model):
        super().__init__()
        self.model, self.groups = model, model.groups

    def forward(self, image: torch.Tensor) -> dict:
        preds = self.model(F.avg_pool2d(image, 2))
        return {k: F.interpolate(v, size=image.shape[-2:], mode="bilinear", align_corners=False)
                for k, v in preds.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--anchor", default="runs/v8/stage1b/anchor.pt")
    p.add_argument("--data", default="data/test")
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "anchor_scale.json"))
    a = p.parse_args()
    model = load_anchor(a.anchor)
    trivial = torch.load(a.anchor, map_location="cpu", weights_only=False)["trivial"]
    rows = {}
    t0 = time.perf_counter()
    for name, factor, net in (("own size", 1, model), ("downsampled x2", 2, model),
                              ("run at half size, upsampled", 1, AtHalfScale(model))):
        ds = MultiTaskDataset(a.data, model.tasks, train=False, limit=a.images, downsample=factor)
        per_pair = evaluate(net, ds, trivial, batch=2)
        rows[name] = {t: {k: v for k, v in per_pair[g][t].items()} for t, g in model.serving.items()}
        side = ds.size // factor
        print(f"{name:28s} {side}²  " + "  ".join(f"{t} {r['normalised']:.3f}" for t, r in rows[name].items()))
    result = {"anchor": a.anchor, "data": a.data, "images": a.images, "seconds": round(time.perf_counter() - t0, 1),
              "loss_over_trivial": rows}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
