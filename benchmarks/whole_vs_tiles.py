"""Does a stage-1 network compute the same on a whole scene as on the crops it was trained on?

Training shows the networks 128² crops (each told where it sits in its scene) and whole scenes
downsampled to 128²; validation and the codec run whole pictures at their own size. A network
whose layers take statistics over the picture (GroupNorm) can behave differently on the whole
picture than on its crops. This predicts the validation scenes four ways and prints
loss / trivial loss of every served task:

  whole        the whole 256² scene in one piece (what validation and the codec do)
  tiles        four 128² tiles, each told its origin, predictions stitched
  enc-tiles    the encoder on the tiles, the decoders on the stitched latent
  dec-tiles    the encoder on the whole scene, the decoders on latent tiles

With only local layers, whole ≈ tiles up to the tiles' borders. The two mixed rows say
whether the encoder or the decoders carry the difference. The trivial predictor here is the
per-pixel mean of the scenes scored (stricter than the training mean that stage1.json uses), so
compare the rows with each other.

Usage:
  python benchmarks/whole_vs_tiles.py runs/v2/stage1/anchor.pt --json out.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TASKS = ["seg", "depth", "normal", "edge", "keypoint", "rgb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("anchor", help="stage-1 anchor.pt")
    ap.add_argument("--val", default="data/val")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--tile", type=int, default=128, help="tile side (the training crop)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()

    import torch

    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.nets.multitask import LATENT_STRIDE
    from tamc_codec.tasks.losses import task_loss
    from tamc_codec.train.anchor import load_anchor
    from tamc_codec.train.evaluation import mean_maps, ordered_batches, trivial_losses

    torch.set_num_threads(args.threads)
    model = load_anchor(args.anchor).eval()
    ds = MultiTaskDataset(args.val, TASKS, train=False, limit=args.images)
    trivial = trivial_losses(mean_maps(ds, TASKS, args.images), ds)
    size, tile, s = ds.size, args.tile, LATENT_STRIDE
    if size % tile or tile % s:
        ap.error(f"--tile must divide the scene size {size} and be a multiple of {s}")
    corners = [(y, x) for y in range(0, size, tile) for x in range(0, size, tile)]
    sums: dict[str, dict[str, float]] = {k: {} for k in ("whole", "tiles", "enc-tiles", "dec-tiles")}
    n = 0

    def origin(y: int, x: int, k: int) -> torch.Tensor | None:
        if not model.cfg.coords:
            return None
        return torch.tensor([y, x, size, size], dtype=torch.float32).expand(k, 4)

    with torch.no_grad():
        for b in ordered_batches(ds, 8):
            img, k = b["image"], b["image"].shape[0]
            for g in model.coded_groups:
                enc = model.encoders[g.replace("+", "_")]
                y_whole = enc(img)
                y_tiles = torch.zeros_like(y_whole)
                for y, x in corners:
                    y_tiles[:, :, y // s:(y + tile) // s, x // s:(x + tile) // s] = enc(
                        img[:, :, y:y + tile, x:x + tile], origin(y, x, k))
                for t in TASKS:
                    if model.serving.get(t) != g:
                        continue

                    def stitched(latent: torch.Tensor) -> torch.Tensor:
                        out = None
                        for y, x in corners:
                            p = model.decode(g, t, latent[:, :, y // s:(y + tile) // s, x // s:(x + tile) // s],
                                             origin(y, x, k))
                            if out is None:
                                out = p.new_zeros(k, p.shape[1], size, size)
                            out[:, :, y:y + tile, x:x + tile] = p
                        return out

                    preds = {"whole": model.decode(g, t, y_whole), "tiles": stitched(y_tiles),
                             "enc-tiles": model.decode(g, t, y_tiles), "dec-tiles": stitched(y_whole)}
                    for way, p in preds.items():
                        sums[way][t] = sums[way].get(t, 0.0) + float(task_loss(t, p, b[t])) * k
            n += k
    result = {"anchor": args.anchor, "images": n, "tile": tile, "net": model.cfg.to_dict(),
              "loss_over_trivial": {way: {t: round(v / n / trivial[t], 3) for t, v in row.items()}
                                    for way, row in sums.items()}}
    for way, row in result["loss_over_trivial"].items():
        print(f"{way:10s} " + "  ".join(f"{t} {v:.3f}" for t, v in row.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
