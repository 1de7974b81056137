"""Generate the golden v1 file: tests/data/golden_v1.{tamc,json} and its tables.

Run once when format version 1 is frozen; re-running must reproduce the same bytes
(tests/test_bitstream.py checks that). A format change gets a new version and a new
golden file; this one stays as it is, so old files keep being readable.

    python tests/data/make_golden.py
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np

from tamc_codec.bitstream import Header, LayerSpec, pack, pack_substreams
from tamc_codec.contract import TASKS, task_mask
from tamc_codec.entropy import (
    FactorizedCoder,
    GaussianConditionalCoder,
    TableCoder,
    default_scale_table,
    index_checksum,
    quantize_pmf,
)

HERE = Path(__file__).resolve().parent
CHANNELS = 4


def tables() -> tuple[FactorizedCoder, GaussianConditionalCoder]:
    """Small tables, so the golden file ships with its own (tests/data/golden_v1_tables.npz)."""
    gauss = GaussianConditionalCoder.build(default_scale_table(0.11, 8.0, 8), tail_mass=1e-3, precision=12)
    # Factorised: per channel, a two-sided geometric table over -3..3 plus escape.
    pmfs, lengths, offsets = [], [], []
    for c in range(CHANNELS):
        ratio = 0.3 + 0.15 * c
        p = ratio ** np.abs(np.arange(-3, 4, dtype=np.float64))
        pmfs.append(quantize_pmf(np.append(p, 0.01), 12))
        lengths.append(8)
        offsets.append(-3)
    fact = FactorizedCoder(TableCoder(np.array(pmfs), np.array(lengths), np.array(offsets), 12))
    return fact, gauss


def layer_content(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    z = rng.integers(-2, 3, size=(CHANNELS, 2, 2)).astype(np.int32)
    z[seed % CHANNELS, 0, 0] = 9 + seed           # beyond the factorised table: escape
    halves = []
    for h in range(2):
        idx = rng.integers(0, 8, size=(CHANNELS, 4, 2)).astype(np.uint8)
        y = rng.integers(-3, 4, size=(CHANNELS, 4, 2)).astype(np.int32)
        y[0, 0, 0] = [-40000, 2**31 - 1][h] if seed == 0 else y[0, 0, 0]   # escapes, incl. int32 max
        halves.append((y, idx))
    return {"z": z, "halves": halves}



def latent_layers(specs: list[LayerSpec]) -> tuple[list[tuple[LayerSpec, bytes]], list[dict]]:
    """Golden v1's first layers under new index entries, as the later golden files hold them: each
    layer's payload and what its golden JSON says of it."""
    fact, gauss = tables()
    layers, expected = [], []
    for i, spec in enumerate(specs):
        content = layer_content(i)
        streams = [fact.encode(content["z"], channel_axis=0)]
        streams += [gauss.encode(y, idx) for y, idx in content["halves"]]
        payload = pack_substreams(streams, index_checksum(*[idx for _, idx in content["halves"]]))
        layers.append((spec, payload))
        expected.append({"group": spec.group, "parent": spec.parent, "coding": "latent",
                         "tasks": [t for t in TASKS if spec.tasks >> TASKS.index(t) & 1], "length": len(payload),
                         "substream_lengths": [len(s) for s in streams], "same_as_golden_v1_layer": i})
    return layers, expected

def build() -> tuple[bytes, dict, dict]:
    fact, gauss = tables()
    header = Header(model_id=bytes(range(0xA0, 0xB0)), height=40, width=56, padded_height=64,
                    padded_width=64, quality=2, tasks=task_mask(["seg", "depth", "edge", "keypoint"]),
                    version=1)  # the writer writes version 3 unless told to reproduce an old one
    specs = [
        LayerSpec(group=0, parent=None, tasks=task_mask(["seg", "depth"])),
        LayerSpec(group=2, parent=0, tasks=task_mask(["edge"])),
        LayerSpec(group=1, parent=None, tasks=task_mask(["keypoint"])),
    ]
    layers, expected_layers = [], []
    for i, spec in enumerate(specs):
        content = layer_content(i)
        streams = [fact.encode(content["z"], channel_axis=0)]
        streams += [gauss.encode(y, idx) for y, idx in content["halves"]]
        checksum = index_checksum(*[idx for _, idx in content["halves"]])
        payload = pack_substreams(streams, checksum)
        layers.append((spec, payload))
        expected_layers.append({
            "group": spec.group,
            "parent": spec.parent,
            "tasks": [t for t in TASKS if spec.tasks >> TASKS.index(t) & 1],
            "length": len(payload),
            "crc32": None,  # filled below from the packed file
            "substream_lengths": [len(s) for s in streams],
            "index_checksum": checksum,
            "z": content["z"].tolist(),
            "halves": [{"symbols": y.tolist(), "indexes": idx.tolist()} for y, idx in content["halves"]],
        })
    data = pack(header, layers)
    tables_arrays = {**fact.to_arrays("hyper/"), **gauss.to_arrays("latent/")}
    return data, {"header": header, "layers": expected_layers}, tables_arrays


def main() -> None:
    data, exp, tables_arrays = build()
    header = exp["header"]
    offset = len(data) - sum(layer["length"] for layer in exp["layers"])
    for layer in exp["layers"]:
        layer["offset"] = offset
        layer["crc32"] = f"{zlib.crc32(data[offset:offset + layer['length']]):08x}"
        offset += layer["length"]
    doc = {
        "format_version": header.version,
        "sha256": hashlib.sha256(data).hexdigest(),
        "file_size": len(data),
        "header": {
            "model_id": header.model_id.hex(),
            "image_size": [header.height, header.width],
            "padded_size": [header.padded_height, header.padded_width],
            "quality": header.quality,
            "tasks": header.task_names,
        },
        "header_size": len(data) - sum(layer["length"] for layer in exp["layers"]),
        "layers": exp["layers"],
    }
    (HERE / "golden_v1.tamc").write_bytes(data)
    (HERE / "golden_v1.json").write_text(json.dumps(doc, indent=1) + "\n")
    np.savez(HERE / "golden_v1_tables.npz", **tables_arrays)
    print(f"wrote golden_v1.tamc ({len(data)} bytes), golden_v1.json, golden_v1_tables.npz")


if __name__ == "__main__":
    main()
