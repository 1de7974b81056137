"""What a picture layer saves by deflating the AVIF container (docs/FORMAT.md, "Picture payload").

    python benchmarks/avif_stripping.py --model models/default --data data/test --images 24

For each quality of the model's picture layer and each picture: the AVIF file Pillow writes at
the quality's scale and settings, the layer's payload (container deflated against the fixed
dictionary, AV1 data as it is), the bytes saved, and a check that the payload gives back the
AVIF file byte for byte. Prints a table; writes benchmarks/results/avif_stripping.json (--out).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    from tamc_codec.bitstream.avif import avif_split, pack_avif, unpack_avif
    from tamc_codec.runtime import load_model
    from tamc_codec.runtime.picture import downscale, encode_avif
    from tamc_codec.picture_layer.build import read_pictures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--data", default="data/test")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--out", default="benchmarks/results/avif_stripping.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rt = load_model(args.model)
    if not rt.pictures:
        sys.exit(f"{args.model} has no picture layer")
    pictures, names = read_pictures(args.data, args.images)
    rows = []
    for group, s in ((g, s) for g, spec in rt.pictures.items() for s in spec["qualities"]):
        avif_b, payload_b, heads, deflated, pixels, exact = [], [], [], [], 0, 0
        for img in pictures:
            data = encode_avif(downscale(img, s["scale"]), s["avif"])
            payload = pack_avif(data)
            exact += unpack_avif(payload) == data
            avif_b.append(len(data))
            payload_b.append(len(payload))
            heads.append(avif_split(data))
            deflated.append(len(payload) - (len(data) - avif_split(data)))
            pixels += img.shape[0] * img.shape[1]
        saved = np.array(avif_b) - np.array(payload_b)
        rows.append({"group": group, "q": s["q"], "setting": s["setting"], "images": len(pictures),
                     "avif_bytes": float(np.mean(avif_b)), "payload_bytes": float(np.mean(payload_b)),
                     "container_bytes": float(np.mean(heads)), "deflated_container_bytes": float(np.mean(deflated)),
                     "saved_bytes": float(np.mean(saved)), "saved_min": int(saved.min()), "saved_max": int(saved.max()),
                     "saved_percent": float(100 * saved.sum() / np.sum(avif_b)),
                     "avif_bpp": 8 * float(np.sum(avif_b)) / pixels, "payload_bpp": 8 * float(np.sum(payload_b)) / pixels,
                     "byte_exact": f"{exact}/{len(pictures)}"})
    doc = {"schema": "tamc.avif_stripping/1", "model": rt.id, "groups": list(rt.pictures), "data": args.data,
           "files": [Path(n).name for n in names], "qualities": rows,
           "command": "python benchmarks/avif_stripping.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "runtime_s": round(time.perf_counter() - t0, 1)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'group':<18} {'q':>2} {'setting':<14} {'AVIF B':>8} {'layer B':>8} {'container':>9} {'deflated':>8} {'saved B':>8} "
          f"{'saved %':>7} {'bpp':>7} {'exact':>6}")
    for r in rows:
        print(f"{r['group']:<18} {r['q']:>2} {r['setting']:<14} {r['avif_bytes']:8.0f} {r['payload_bytes']:8.0f} {r['container_bytes']:9.0f} "
              f"{r['deflated_container_bytes']:8.1f} {r['saved_bytes']:8.1f} {r['saved_percent']:7.2f} "
              f"{r['payload_bpp']:7.4f} {r['byte_exact']:>6}")
    return doc


if __name__ == "__main__":
    main()
