"""Generate the golden v2 file: tests/data/golden_v2.{tamc,json} (format version 2, docs/FORMAT.md).

Two latent layers (the golden v1 file's coders and contents) and a picture layer coded by AVIF,
whose AVIF file is frozen beside it (tests/data/golden_v2_picture.avif, made once by
`python tests/data/make_golden_v2.py --new-picture`, since an encoder of another version may write
other bytes). Re-running without it must reproduce the same bytes (tests/test_bitstream.py checks
that); decoding needs only the tables of golden v1.

    python tests/data/make_golden_v2.py
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
import zlib
from pathlib import Path

import numpy as np

from tamc_codec.bitstream import CODING_AVIF, Header, LayerSpec, pack
from tamc_codec.bitstream.avif import pack_avif
from tamc_codec.contract import TASKS, task_mask

HERE = Path(__file__).resolve().parent
PICTURE = HERE / "golden_v2_picture.avif"
HEIGHT, WIDTH, SCALE = 40, 56, 4


def _v1():
    spec = importlib.util.spec_from_file_location("make_golden", HERE / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def new_picture() -> bytes:
    """A 10x14 gradient coded by Pillow's AVIF at quality 50, speed 4: the picture at 1/4 scale."""
    from PIL import Image

    h, w = -(-HEIGHT // SCALE), -(-WIDTH // SCALE)
    i, j = np.mgrid[0:h, 0:w]
    img = np.stack([i * 255 // (h - 1), j * 255 // (w - 1), (i + j) * 255 // (h + w - 2)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="AVIF", quality=50, speed=4, max_threads=2)
    return buf.getvalue()


def build(picture_payload: bytes | None = None) -> tuple[bytes, dict]:
    """The file and what it holds. `picture_payload`: the picture layer's bytes as they are (the
    test passes the frozen ones, so that the container is checked apart from zlib's deflate)."""
    v1 = _v1()
    header = Header(model_id=bytes(range(0xB0, 0xC0)), height=HEIGHT, width=WIDTH, padded_height=64,
                    padded_width=64, quality=2, tasks=task_mask(TASKS),
                    version=2)  # the writer writes version 3 unless told to reproduce an old one
    layers, expected = v1.latent_layers([LayerSpec(group=0, parent=None, tasks=task_mask(["seg", "depth"])),
                                          LayerSpec(group=2, parent=0, tasks=task_mask(["normal"]))])
    avif = PICTURE.read_bytes()
    payload = pack_avif(avif) if picture_payload is None else picture_payload
    spec = LayerSpec(group=1, parent=None, tasks=task_mask(["edge", "keypoint", "rgb"]), coding=CODING_AVIF)
    layers.append((spec, payload))
    expected.append({"group": 1, "parent": None, "coding": "avif", "tasks": ["edge", "keypoint", "rgb"],
                     "length": len(payload), "avif_sha256": hashlib.sha256(avif).hexdigest(), "avif_bytes": len(avif),
                     "scale": SCALE})
    data = pack(header, layers)
    offset = len(data) - sum(x["length"] for x in expected)
    for x in expected:
        x["offset"] = offset
        x["crc32"] = f"{zlib.crc32(data[offset:offset + x['length']]):08x}"
        offset += x["length"]
    doc = {"format_version": 2, "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data),
           "header": {"model_id": header.model_id.hex(), "image_size": [header.height, header.width],
                      "padded_size": [header.padded_height, header.padded_width], "quality": header.quality,
                      "tasks": header.task_names},
           "header_size": len(data) - sum(x["length"] for x in expected), "layers": expected}
    return data, doc


def main() -> None:
    if "--new-picture" in sys.argv[1:]:
        PICTURE.write_bytes(new_picture())
    data, doc = build()
    from PIL import Image

    with Image.open(PICTURE) as im:
        doc["layers"][-1]["picture_sha256"] = hashlib.sha256(np.asarray(im.convert("RGB")).tobytes()).hexdigest()
        doc["layers"][-1]["picture_size"] = [im.size[1], im.size[0]]
    (HERE / "golden_v2.tamc").write_bytes(data)
    (HERE / "golden_v2.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote golden_v2.tamc ({len(data)} bytes), golden_v2.json")


if __name__ == "__main__":
    main()
