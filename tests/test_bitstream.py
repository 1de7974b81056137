"""The .tamc container: varints, header and index, layers, atomic writes, golden file."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tamc_codec.atomic import atomic_path, atomic_write_bytes
from tamc_codec.bitstream import (
    FORMAT_VERSION,
    LayerSpec,
    TamcReader,
    pack,
    pack_substreams,
    unpack_substreams,
    write_tamc,
)
from tamc_codec.bitstream.varint import decode_varint, encode_varint
from tamc_codec.entropy import FactorizedCoder, GaussianConditionalCoder, index_checksum
from tamc_codec.errors import TamcFormatError, TamcInputError

from tamc_helpers import coded_file, reseal_header, small_coders, small_header

DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- varints


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**31, 2**32 - 1])
def test_varint_round_trip(value):
    b = encode_varint(value)
    assert decode_varint(b, 0) == (value, len(b))


@pytest.mark.parametrize("raw, msg", [
    (b"\x80", "truncated"), (b"\x80\x00", "minimally"), (b"\xff\xff\xff\xff\xff\x01", "longer"),
    (b"\xff\xff\xff\xff\x7f", "32 bits"),
])
def test_varint_rejects(raw, msg):
    with pytest.raises(TamcFormatError, match=msg):
        decode_varint(raw, 0)


# --------------------------------------------------------------------------- container


def test_round_trip_and_partial_read(tmp_path):
    data, truth = coded_file(n_layers=5, size=16)
    path = tmp_path / "x.tamc"
    path.write_bytes(data)
    with TamcReader(path) as r:
        assert r.header == small_header(tasks=0b11111)
        assert r.bytes_read == r.header_size < 200
        assert [e.group for e in r.layers] == [0, 1, 2, 3, 4]
        assert r.layers_for_task("edge") == [0, 2, 3] and r.ancestors(3) == [0, 2]
        assert r.layers_for_task("normal") == [0, 2]
        assert r.layers_for_task(1) == [0, 1]
        needed = r.layers_for_task("keypoint")
        _, gauss = small_coders()
        for i in needed:
            payload = r.read_payload(i)
            z, y, idx = truth[i]
            got = [gauss.decode(s, ix) for s, ix in zip(payload.streams[1:], idx)]
            payload.verify(index_checksum(*idx))
            np.testing.assert_array_equal(np.stack(got), y)
        assert r.bytes_read == r.header_size + sum(r.layers[i].length for i in needed)
        assert r.bytes_read < r.file_size
    with pytest.raises(TamcInputError, match="does not carry task 'rgb'"):
        TamcReader(data).layers_for_task("rgb")


def test_pack_is_deterministic_and_info_from_bytes():
    a, _ = coded_file(seed=3)
    b, _ = coded_file(seed=3)
    assert a == b
    r = TamcReader(a)
    assert r.file_size == len(a) and r.layers[-1].offset + r.layers[-1].length == len(a)


def test_container_overhead_bound():
    # 48 bytes + 24 per layer, sub-stream framing included (the target).
    for n_layers in (1, 3, 8):
        data, _ = coded_file(n_layers=n_layers, size=32)
        r = TamcReader(data)
        coded = 0
        for i in range(n_layers):
            coded += sum(len(s) for s in unpack_substreams(r.read_layer(i)).streams)
        assert len(data) - coded <= 48 + 24 * n_layers


@pytest.mark.parametrize("specs, msg", [
    ([], "1 .. 32 layers"),
    ([LayerSpec(0, 0, 1)], "earlier layer"),
    ([LayerSpec(0, None, 1), LayerSpec(0, None, 2)], "more than one layer"),
    ([LayerSpec(0, None, 1), LayerSpec(1, None, 1)], "already served"),
    ([LayerSpec(0, None, 64)], "unknown tasks"),
    ([LayerSpec(300, None, 1)], "group index"),
])
def test_writer_rejects_bad_layers(specs, msg):
    with pytest.raises(TamcFormatError, match=msg):
        pack(small_header(), [(s, b"x") for s in specs])


@pytest.mark.parametrize("kw, msg", [
    (dict(model_id=b"short"), "16 bytes"), (dict(height=0), "height 0"), (dict(width=70000), "width 70000"),
    (dict(padded_height=50), "smaller"), (dict(quality=0), "quality"), (dict(tasks=1 << 6), "unknown tasks"),
])
def test_writer_rejects_bad_header(kw, msg):
    with pytest.raises(TamcFormatError, match=msg):
        pack(small_header(**kw), [(LayerSpec(0, None, 1), b"x")])


# --------------------------------------------------------------------------- bad input


def _good() -> bytes:
    return coded_file(seed=1)[0]


def _edit(data: bytes, pos: int, new: bytes, reseal: bool = True) -> bytes:
    out = data[:pos] + new + data[pos + len(new):]
    return reseal_header(out) if reseal else out


def _header_len(data: bytes) -> int:
    return struct.unpack_from("<H", data, 5)[0]


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: b"", "not a .tamc file"),
    (lambda d: b"PNG\x89" + d[4:], "not a .tamc file"),
    (lambda d: d[:5], "truncated"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:-1], "extends past the end"),
    (lambda d: d + b"\0", "after the last layer"),
    (lambda d: _edit(d, 4, bytes([FORMAT_VERSION + 1]), reseal=False), "newer"),
    (lambda d: _edit(d, 4, b"\0", reseal=False), "unsupported format version 0"),
    (lambda d: _edit(d, 5, struct.pack("<H", 60000), reseal=False), "header length"),
    (lambda d: _edit(d, 30, bytes([d[30] ^ 4]), reseal=False), "header CRC mismatch"),
    (lambda d: _edit(d, 23, b"\xff\xff\x7f"), "outside 1 .. 65535"),       # absurd height
    (lambda d: _edit(d, 23, b"\x00"), "height 0"),
])
def test_reader_rejects(mutate, msg):
    with pytest.raises(TamcFormatError, match=msg):
        TamcReader(mutate(_good()))


def test_reader_rejects_layer_fields():
    d = _good()
    r = TamcReader(d)
    # Re-pack the index by hand with a wrong offset / absurd length / bad parent.
    hlen = _header_len(d)
    first_entry = hlen - 4 - sum(3 + len(encode_varint(e.offset - hlen)) + len(encode_varint(e.length)) + 4 for e in r.layers)
    entry0 = first_entry
    # layer 0's offset varint sits after group, parent and mask bytes; change it to 1
    bad = _edit(d, entry0 + 3, b"\x01")
    with pytest.raises(TamcFormatError, match="gap|past the end"):
        TamcReader(bad)
    with pytest.raises(TamcFormatError, match="earlier layer"):
        TamcReader(_edit(d, entry0 + 1, b"\x05"))          # layer 0 claims parent 4
    with pytest.raises(TamcFormatError, match="unknown tasks"):
        TamcReader(_edit(d, entry0 + 2, b"\xc0"))
    with pytest.raises(TamcFormatError, match="layer count"):
        TamcReader(_edit(d, entry0 - 1, b"\x00"))
    with pytest.raises(TamcFormatError, match="quality"):
        TamcReader(_edit(d, entry0 - 3, b"\x00"))


def test_layer_crc_and_checksum_mismatch():
    d = _good()
    r = TamcReader(d)
    e = r.layers[1]
    flipped = d[: e.offset + 5] + bytes([d[e.offset + 5] ^ 1]) + d[e.offset + 6:]
    r2 = TamcReader(flipped)  # header and index are intact
    r2.read_layer(0)
    with pytest.raises(TamcFormatError, match="layer 1 CRC mismatch"):
        r2.read_layer(1)
    payload = unpack_substreams(r.read_layer(1))
    with pytest.raises(TamcFormatError, match="scale-index checksum mismatch"):
        payload.verify(payload.index_checksum ^ 1)


def test_substream_framing():
    p = pack_substreams([b"", b"abcd", b"x" * 300], 0xBEEF)
    u = unpack_substreams(p)
    assert u.streams == (b"", b"abcd", b"x" * 300) and u.index_checksum == 0xBEEF
    assert len(p) == 1 + 1 + 1 + 2 + 2 + 304
    for bad, msg in [(b"", "empty"), (b"\x00", "count 0"), (b"\x11", "count 17"), (p[:-1], "add up"),
                     (p + b"y", "add up"), (p[:3], "truncated")]:
        with pytest.raises(TamcFormatError, match=msg):
            unpack_substreams(bad)
    with pytest.raises(ValueError):
        pack_substreams([], 0)


def test_missing_file(tmp_path):
    with pytest.raises(TamcInputError, match="no such file"):
        TamcReader(tmp_path / "nope.tamc")
    with pytest.raises(TamcInputError, match="folder"):
        TamcReader(tmp_path)


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert path.read_bytes() == b"two" and os.listdir(tmp_path) == ["out.bin"]
    with atomic_path(tmp_path / "img.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert (tmp_path / "img.png").read_bytes() == b"png"


def test_write_tamc_atomic(tmp_path):
    path = tmp_path / "a.tamc"
    n = write_tamc(path, small_header(), [(LayerSpec(0, None, 1), b"abc")])
    assert path.stat().st_size == n
    with pytest.raises(TamcFormatError):
        write_tamc(path, small_header(quality=0), [(LayerSpec(0, None, 1), b"abc")])
    assert path.stat().st_size == n and os.listdir(tmp_path) == ["a.tamc"]


# --------------------------------------------------------------------------- golden file


def test_golden_v1():
    data = (DATA / "golden_v1.tamc").read_bytes()
    exp = json.loads((DATA / "golden_v1.json").read_text())
    tables = np.load(DATA / "golden_v1_tables.npz")
    fact = FactorizedCoder.from_arrays(tables, "hyper/")
    gauss = GaussianConditionalCoder.from_arrays(tables, "latent/")
    assert len(data) == exp["file_size"]
    r = TamcReader(data)
    h = r.header
    assert h.version == exp["format_version"] == 1
    assert h.model_id.hex() == exp["header"]["model_id"]
    assert [h.height, h.width] == exp["header"]["image_size"]
    assert [h.padded_height, h.padded_width] == exp["header"]["padded_size"]
    assert h.quality == exp["header"]["quality"] and h.task_names == exp["header"]["tasks"]
    assert r.header_size == exp["header_size"]
    assert len(r.layers) == len(exp["layers"])
    for e, x in zip(r.layers, exp["layers"]):
        assert (e.group, e.parent, e.task_names, e.offset, e.length, f"{e.crc32:08x}") == (
            x["group"], x["parent"], x["tasks"], x["offset"], x["length"], x["crc32"])
        payload = unpack_substreams(r.read_layer(e.index))
        assert [len(s) for s in payload.streams] == x["substream_lengths"]
        z = np.array(x["z"], np.int32)
        np.testing.assert_array_equal(fact.decode(payload.streams[0], z.shape, channel_axis=0), z)
        idxs = []
        for s, half in zip(payload.streams[1:], x["halves"]):
            idx = np.array(half["indexes"], np.uint8)
            np.testing.assert_array_equal(gauss.decode(s, idx), np.array(half["symbols"], np.int32))
            idxs.append(idx)
        payload.verify(index_checksum(*idxs))
    # The writer and coders still produce the frozen bytes.
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build()[0] == data


def test_format_md_matches_code():
    from tamc_codec.bitstream import MAX_HEADER_BYTES, MAX_LAYERS, MAX_SUBSTREAMS
    from tamc_codec.bitstream.container import _MIN_HEADER_BYTES, MAGIC
    from tamc_codec.entropy import ESCAPE_LENGTH_PMF
    from tamc_codec.entropy.scale_table import SCALE_LEVELS, SCALE_MAX, SCALE_MIN

    doc = (Path(__file__).parents[1] / "docs" / "FORMAT.md").read_text()
    assert doc.startswith(f"# The `.tamc` file format, version {FORMAT_VERSION}\n")
    assert f"`{MAGIC.hex(' ').upper()}` (`\"{MAGIC.decode()}\"`)" in doc
    assert f"{_MIN_HEADER_BYTES} … {MAX_HEADER_BYTES}" in doc
    assert f"1 … {MAX_LAYERS}" in doc and f"1 … {MAX_SUBSTREAMS}" in doc
    assert f"fixed {ESCAPE_LENGTH_PMF.size}-entry table" in doc
    assert f"default {SCALE_LEVELS} entries log-spaced from\n  {SCALE_MIN} to {SCALE_MAX:g}" in doc
    # The header sizes FORMAT.md quotes.
    data = pack(small_header(height=200, width=300, padded_height=256, padded_width=320),
                [(LayerSpec(0, None, 1), b"")])
    assert TamcReader(data).header_size == 38 + 3 + 1 + 1 + 4
