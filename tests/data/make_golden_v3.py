"""Generate the golden v3 file: tests/data/golden_v3.{tamc,json} (format version 3, docs/FORMAT.md).

Format version 3 is the compact header: a varint header length, the model id's first 4 bytes, no
padded size, no layer offsets, 16-bit checks. The file holds golden v1's three latent layers (its
coders and contents; the third, group 3, made a context-only child of the second so that a chain of
three is exercised) and golden v2's picture layer (the frozen AVIF file tests/data/golden_v2_picture.avif).
Re-running must reproduce the same bytes (tests/test_bitstream.py::test_golden_v3 checks that, with
the picture payload passed as it is, since deflate's own bytes may differ between zlib builds);
decoding needs only the tables of golden v1.

    python tests/data/make_golden_v3.py
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import zlib
from pathlib import Path

from tamc_codec.bitstream import CODING_AVIF, Header, LayerSpec, pack
from tamc_codec.bitstream.avif import pack_avif
from tamc_codec.contract import TASKS, task_mask

HERE = Path(__file__).resolve().parent
PICTURE = HERE / "golden_v2_picture.avif"
HEIGHT, WIDTH, SCALE = 40, 56, 4
#: the model id the file is written for; version 3 stores its first 4 bytes
MODEL_ID = bytes(range(0xC0, 0xD0))


def _v1():
    spec = importlib.util.spec_from_file_location("make_golden", HERE / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(picture_payload: bytes | None = None) -> tuple[bytes, dict]:
    """The file and what it holds. `picture_payload`: the picture layer's bytes as they are (the
    test passes the frozen ones, so that the container is checked apart from zlib's deflate)."""
    v1 = _v1()
    header = Header(model_id=MODEL_ID, height=HEIGHT, width=WIDTH, quality=2, tasks=task_mask(TASKS), version=3)
    latent = [LayerSpec(group=0, parent=None, tasks=task_mask(["seg", "depth"])),
              LayerSpec(group=2, parent=0, tasks=task_mask(["normal"])),
              LayerSpec(group=3, parent=1, tasks=0)]  # context only
    layers, expected = v1.latent_layers(latent)
    avif = PICTURE.read_bytes()
    payload = pack_avif(avif) if picture_payload is None else picture_payload
    spec = LayerSpec(group=1, parent=None, tasks=task_mask(["edge", "keypoint", "rgb"]), coding=CODING_AVIF)
    layers.append((spec, payload))
    expected.append({"group": 1, "parent": None, "coding": "avif", "tasks": ["edge", "keypoint", "rgb"],
                     "length": len(payload), "avif_sha256": hashlib.sha256(avif).hexdigest(), "avif_bytes": len(avif),
                     "scale": SCALE, "same_as_golden_v2_layer": 2})
    data = pack(header, layers)
    offset = len(data) - sum(x["length"] for x in expected)
    for x in expected:
        x["offset"] = offset
        x["check"] = f"{zlib.crc32(data[offset:offset + x['length']]) & 0xFFFF:04x}"
        offset += x["length"]
    doc = {"format_version": 3, "sha256": hashlib.sha256(data).hexdigest(), "file_size": len(data),
           "header": {"model_id": MODEL_ID[:4].hex(), "written_for_model_id": MODEL_ID.hex(),
                      "image_size": [header.height, header.width], "padded_size": None,
                      "quality": header.quality, "tasks": header.task_names},
           "header_size": len(data) - sum(x["length"] for x in expected), "layers": expected}
    return data, doc


def main() -> None:
    data, doc = build()
    (HERE / "golden_v3.tamc").write_bytes(data)
    (HERE / "golden_v3.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote golden_v3.tamc ({len(data)} bytes, header {doc['header_size']}), golden_v3.json")


if __name__ == "__main__":
    main()
