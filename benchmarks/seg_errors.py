"""Where an exported model's segmentation goes wrong: per-class recall and confusions, how the
cross-entropy splits by distance to the nearest label boundary, and how much of it is confidence
(the loss with the decoder's logits divided by a temperature T: T > 1 lowers a loss made of
confident mistakes and leaves the argmax, so mIoU, unchanged).

    python benchmarks/seg_errors.py --model models/default --data data/test --images 50 --quality 5

Each scene is coded by the model's own codec at `--quality` and seg is decoded from those latents
(the prediction `tamc decode --task seg` makes, before the argmax). Prints a table and writes
benchmarks/results/seg_errors_<data folder>.json (or --out).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BANDS = ((0, 2), (3, 8), (9, None))  # distance to the nearest label boundary, pixels
TEMPERATURES = (0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def main() -> None:
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    from tamc_codec.runtime import task_prediction
    from tamc_codec.tasks.registry import SEG_IGNORE
    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.runtime.model import RuntimeModel
    from tamc_codec.train.decoders import codec_latents

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--data", default="data/test")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--quality", type=int, default=None, help="default: the model's highest")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rt = RuntimeModel(args.model)
    q = args.quality or rt.qualities
    ds = MultiTaskDataset(args.data, ["seg"], train=False, limit=args.images)
    classes = json.loads((Path(args.data) / "meta.json").read_text())["classes"]
    n, k = len(ds), len(classes)
    latents = codec_latents(rt, ds, rt.needed_groups(["seg"]), np.full(n, q), np.zeros(n, bool))
    confusion = np.zeros((k, k), np.int64)
    ce_sum, px = np.zeros(len(BANDS)), np.zeros(len(BANDS), np.int64)
    per_image = []  # the training loss of each picture (task_loss: mean over its labelled pixels)
    per_image_at = {t: [] for t in TEMPERATURES}
    for i in range(n):
        pred = task_prediction(rt, "seg", {g: v[i:i + 1].astype(np.float32) for g, v in latents.items()},
                               ds.size, ds.size)
        label = ds.sample(i)["seg"].numpy().astype(np.int64)
        valid = label != SEG_IGNORE
        np.add.at(confusion, (label[valid], pred.argmax(0)[valid]), 1)
        logits, target = torch.from_numpy(pred)[None], torch.from_numpy(label)[None]
        ce = F.cross_entropy(logits, target, ignore_index=SEG_IGNORE, reduction="none")[0].numpy()
        per_image.append(float(ce[valid].mean()))
        for t in TEMPERATURES:  # T = 1 is the loss just measured
            per_image_at[t].append(per_image[-1] if t == 1.0 else
                                   float(F.cross_entropy(logits / t, target, ignore_index=SEG_IGNORE)))
        boundary = np.zeros(label.shape, bool)
        boundary[:-1] |= label[:-1] != label[1:]
        boundary[:, :-1] |= label[:, :-1] != label[:, 1:]
        dist = ndimage.distance_transform_edt(~boundary)
        for b, (lo, hi) in enumerate(BANDS):
            m = valid & (dist >= lo) & ((dist <= hi) if hi is not None else True)
            ce_sum[b] += ce[m].sum()
            px[b] += m.sum()
    total = confusion.sum(1)
    rows = []
    for c in range(k):
        if c == SEG_IGNORE or total[c] == 0:
            continue
        share = confusion[c] / total[c]
        iou = confusion[c, c] / (total[c] + confusion[:, c].sum() - confusion[c, c])
        worst = [{"as": classes[j], "share": round(float(share[j]), 3)} for j in np.argsort(-share)
                 if j != c and share[j] >= 0.02][:3]
        rows.append({"class": classes[c], "pixels": round(float(total[c] / total.sum()), 4),
                     "recall": round(float(share[c]), 3), "iou": round(float(iou), 3), "confused_with": worst})
    bands = [{"distance_px": f"{lo}-{hi}" if hi is not None else f">={lo}", "pixels": round(float(px[b] / px.sum()), 3),
              "mean_ce": round(float(ce_sum[b] / max(px[b], 1)), 3), "share_of_ce": round(float(ce_sum[b] / ce_sum.sum()), 3)}
             for b, (lo, hi) in enumerate(BANDS)]
    over_trivial = float(np.mean(per_image)) / rt.trivial_loss["seg"] if rt.trivial_loss else None
    print(f"{args.model} on {n} scenes of {args.data}, q{q}: mIoU {np.mean([r['iou'] for r in rows]):.3f}"
          + (f", loss / trivial {over_trivial:.3f}" if over_trivial is not None else ""))
    print(f"{'class':10s} {'pixels':>7s} {'recall':>7s} {'IoU':>6s}  mistaken for")
    for r in rows:
        print(f"{r['class']:10s} {r['pixels']:7.3f} {r['recall']:7.3f} {r['iou']:6.3f}  "
              + ", ".join(f"{w['as']} {w['share']:.2f}" for w in r["confused_with"]))
    at_t = {str(t): float(np.mean(v)) / rt.trivial_loss["seg"] for t, v in per_image_at.items()} if rt.trivial_loss else {}
    if at_t:
        print("loss / trivial with the logits divided by T: " + ", ".join(f"T {t} {v:.3f}" for t, v in at_t.items()))
    print("distance to a label boundary: " + "; ".join(
        f"{b['distance_px']} px: {b['pixels']:.1%} of pixels, {b['share_of_ce']:.1%} of the cross-entropy" for b in bands))
    out = Path(args.out or Path(__file__).parent / "results" / f"seg_errors_{Path(args.data).name}.json")
    out.write_text(json.dumps({"model": rt.id, "data": args.data, "images": n, "quality": q,
                               "miou": float(np.mean([r["iou"] for r in rows])), "loss_over_trivial": over_trivial,
                               "loss_over_trivial_at_temperature": at_t, "classes": rows, "boundary_bands": bands},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
