"""The .tamc container: varints, header and index (format version 3, and versions 1 and 2 still
read), layers, atomic writes, golden files."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tamc_codec.atomic import atomic_path, atomic_write_bytes
from tamc_codec.bitstream import (
    CODING_AVIF,
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

from tamc_helpers import coded_file, header_len, index_positions, read_back, reseal_header, small_coders, small_header

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
        assert r.header == read_back(small_header(tasks=0b11111))
        assert r.header.version == FORMAT_VERSION == 3 and r.header.model_id == bytes(range(4))
        assert r.header.padded_height is None and r.header.padded_width is None
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


@pytest.mark.parametrize("kw, msg", [
    (dict(version=1), "stores the padded size"), (dict(version=2, padded_width=192), "stores the padded size"),
    (dict(version=1, padded_height=128, padded_width=192, model_id=bytes(4)), "exactly 16 bytes"),
    (dict(version=4), "format version 4"),
])
def test_writer_rejects_headers_a_version_cannot_hold(kw, msg):
    with pytest.raises(TamcFormatError, match=msg):
        pack(small_header(**kw), [(LayerSpec(0, None, 1), b"x")])
    with pytest.raises(TamcFormatError, match="version 1 holds latent layers only"):
        pack(small_header(version=1, padded_height=128, padded_width=192), [(LayerSpec(0, None, 1, CODING_AVIF), b"x")])


# --------------------------------------------------------------------------- format version 3


def test_version_3_header_sizes():
    """The compact header: a one-layer file of a 512 x 512 picture spends 27 bytes on framing,
    where versions 1 and 2 spent 48 and 49."""
    layer = [(LayerSpec(0, None, 0b111), b"x" * 828)]
    sizes = dict(height=512, width=512)
    v3 = pack(small_header(**sizes), layer)
    # magic 4, version 1, header length 1, id prefix 4, height 2, width 2, quality, tasks, count 3;
    # the entry: group, parent, tasks, coding 4, length 2, check 2; the header check 2
    assert TamcReader(v3).header_size == 4 + 1 + 1 + 4 + 2 + 2 + 3 + (4 + 2 + 2) + 2 == 27
    assert v3[4] == 3 and v3[5] == 27 and len(v3) == 27 + 828
    old = dict(padded_height=512, padded_width=512)
    assert TamcReader(pack(small_header(version=1, **sizes, **old), layer)).header_size == 48
    assert TamcReader(pack(small_header(version=2, **sizes, **old), layer)).header_size == 49
    # three layers: 8 bytes each (16-bit check, length varint of 2 bytes, no offset)
    three = [(LayerSpec(i, None if i == 0 else 0, 1 << i), b"y" * 300) for i in range(3)]
    assert TamcReader(pack(small_header(**sizes), three)).header_size == 19 + 3 * 8 == 43
    assert TamcReader(pack(small_header(version=1, **sizes, **old), three)).header_size == 70
    # the smallest header, and one long enough for a 2-byte header length
    tiny = pack(small_header(height=1, width=1), [(LayerSpec(0, None, 1), b"")])
    from tamc_codec.bitstream.container import _MIN_HEADER_BYTES_V3

    assert len(tiny) == TamcReader(tiny).header_size == _MIN_HEADER_BYTES_V3 == 24
    many = pack(small_header(), [(LayerSpec(i, None, 0), b"z" * 200) for i in range(32)])
    r = TamcReader(many)
    assert r.header_size == header_len(many) > 127 and many[5] & 0x80 and len(r.layers) == 32
    assert [r.read_layer(i) for i in range(32)] == [b"z" * 200] * 32


def test_version_3_round_trip_with_a_picture_layer():
    layers = [(LayerSpec(0, None, 0b11), b"abc"), (LayerSpec(2, 0, 0b100), b""),
              (LayerSpec(1, None, 0b111000, CODING_AVIF), b"picture")]
    data = pack(small_header(), layers)
    r = TamcReader(data)
    assert r.header == read_back(small_header())
    assert [(e.group, e.parent, e.tasks, e.coding_name, e.length) for e in r.layers] == [
        (0, None, 0b11, "latent", 3), (2, 0, 0b100, "latent", 0), (1, None, 0b111000, "avif", 7)]
    assert [e.offset for e in r.layers] == [r.header_size, r.header_size + 3, r.header_size + 3]
    assert r.bytes_read == r.header_size
    assert r.layers_for_task("rgb") == [2] and r.read_layer(2) == b"picture"
    assert r.bytes_read == r.header_size + 7
    assert r.layers_for_task("normal") == [0, 1] and r.read_layers([0, 1]) == {0: b"abc", 1: b""}
    assert [e.crc_bits for e in r.layers] == [16] * 3 and r.layers[0].crc_hex == f"{zlib.crc32(b'abc') & 0xFFFF:04x}"
    # the same layers under the old versions read back the same, bar the header fields version 3 drops
    old = small_header(padded_height=128, padded_width=192)
    for version in (2,):
        r2 = TamcReader(pack(replace(old, version=version), layers))
        assert r2.header.version == version and r2.header.model_id == bytes(range(16))
        assert [(e.group, e.parent, e.tasks, e.coding, e.length) for e in r2.layers] == [
            (e.group, e.parent, e.tasks, e.coding, e.length) for e in r.layers]
        assert [r2.read_layer(i) for i in range(3)] == [r.read_layer(i) for i in range(3)]


def test_model_id_prefix_matching():
    from tamc_codec.bitstream import model_id_matches

    full = bytes(range(16)).hex()
    h3 = read_back(small_header())
    assert h3.model_id_hex == "00010203" and h3.model_id_is_prefix and h3.model_id_text() == "00010203…"
    assert h3.made_by(full) and h3.made_by(full.upper()) and not h3.made_by("00010204" + full[8:])
    h1 = small_header(version=1, padded_height=128, padded_width=192)
    assert h1.made_by(full) and not h1.made_by(full[:31] + "0") and not h1.model_id_is_prefix
    assert not model_id_matches(b"", full)


def test_version_3_reads_back_what_the_old_versions_read():
    """Every version still reads: golden v1 and v2 as they are, and v1/v2 files written on request."""
    for name, version in (("golden_v1.tamc", 1), ("golden_v2.tamc", 2), ("golden_v3.tamc", 3)):
        r = TamcReader(DATA / name)
        assert r.header.version == version
        assert len(r.header.model_id) == (4 if version == 3 else 16)
        assert (r.header.padded_height is None) == (version == 3)
        assert r.layers_for_task("seg") == [0] and r.read_layer(0) == TamcReader(DATA / "golden_v1.tamc").read_layer(0)
        r.close()


# --------------------------------------------------------------------------- bad input


def _good() -> bytes:
    return coded_file(seed=1)[0]


def _edit(data: bytes, pos: int, new: bytes, reseal: bool = True) -> bytes:
    out = data[:pos] + new + data[pos + len(new):]
    return reseal_header(out) if reseal else out


# version 3, a 42-byte header: magic, version, header length (byte 5), id prefix (6..9), height
# (byte 10: 100), width (11, 12: 150), quality, tasks, layer count, then the index
HEIGHT_AT = 10


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: b"", "not a .tamc file"),
    (lambda d: b"PNG\x89" + d[4:], "not a .tamc file"),
    (lambda d: d[:5], "truncated"),
    (lambda d: d[:6] + b"\x80", "truncated"),                              # ends inside the header length
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "extends past the end"),
    (lambda d: d + b"\0", "after the last layer"),
    (lambda d: _edit(d, 4, bytes([FORMAT_VERSION + 1]), reseal=False), "newer"),
    (lambda d: _edit(d, 4, b"\0", reseal=False), "unsupported format version 0"),
    (lambda d: _edit(d, 5, b"\xff\x7f", reseal=False), "header length 16383 is outside 24 .. 1024"),
    (lambda d: _edit(d, 5, b"\xff\xff\x01", reseal=False), "header length is outside"),
    (lambda d: _edit(d, 5, b"\x17", reseal=False), "header length 23 is outside"),
    (lambda d: _edit(d, 5, b"\x80\x00", reseal=False), "not minimally encoded"),
    (lambda d: _edit(d, 5, bytes([d[5] + 1]), reseal=False), "header CRC mismatch"),
    (lambda d: _edit(d, 30, bytes([d[30] ^ 4]), reseal=False), "header CRC mismatch"),
    (lambda d: _edit(d, 7, bytes([d[7] ^ 1]), reseal=False), "header CRC mismatch"),  # the model id
    (lambda d: _edit(d, HEIGHT_AT, b"\xff\xff\x7f"), "outside 1 .. 65535"),       # absurd height
    (lambda d: _edit(d, HEIGHT_AT, b"\x00"), "height 0"),
    (lambda d: _edit(d, 5, bytes([d[5] + 1])), "past the end"),  # resealed at its new end: one layer byte short
    (lambda d: _edit(d[:41] + b"\0" + d[41:], 5, bytes([d[5] + 1])), "header length field says"),  # a stray index byte
])
def test_reader_rejects(mutate, msg):
    d = _good()
    assert header_len(d) == TamcReader(d).header_size == 42 and d[HEIGHT_AT] == 100
    with pytest.raises(TamcFormatError, match=msg):
        TamcReader(mutate(d))


def test_reader_rejects_layer_fields():
    # small layers, so every length is a 1-byte varint
    d = pack(small_header(), [(LayerSpec(0, None, 1), b"abc"), (LayerSpec(1, 0, 2), b"de"), (LayerSpec(2, None, 4), b"f")])
    (entry0, check0), (entry1, _), _ = index_positions(d)
    assert check0 == entry0 + 5 and d[entry0 + 4] == 3
    with pytest.raises(TamcFormatError, match="after the last layer"):
        TamcReader(_edit(d, entry0 + 4, b"\x02"))       # layer 0 shorter: the layers no longer tile the file
    with pytest.raises(TamcFormatError, match="past the end"):
        TamcReader(_edit(d, entry0 + 4, b"\x64"))
    with pytest.raises(TamcFormatError, match="earlier layer"):
        TamcReader(_edit(d, entry0 + 1, b"\x05"))          # layer 0 claims parent 4
    with pytest.raises(TamcFormatError, match="unknown tasks"):
        TamcReader(_edit(d, entry0 + 2, b"\xc0"))
    with pytest.raises(TamcFormatError, match="unknown coding 9"):
        TamcReader(_edit(d, entry0 + 3, b"\x09"))
    with pytest.raises(TamcFormatError, match="already served"):
        TamcReader(_edit(d, entry1 + 2, b"\x01"))
    with pytest.raises(TamcFormatError, match="layer count"):
        TamcReader(_edit(d, entry0 - 1, b"\x00"))
    with pytest.raises(TamcFormatError, match="truncated index|header length field"):
        TamcReader(_edit(d, entry0 - 1, b"\x04"))         # a fourth layer the index does not hold
    with pytest.raises(TamcFormatError, match="quality"):
        TamcReader(_edit(d, entry0 - 3, b"\x00"))
    with pytest.raises(TamcFormatError, match="layer 0 CRC mismatch"):
        TamcReader(_edit(d, check0, b"\x00\x00")).read_layer(0)


def test_reader_rejects_old_version_fields():
    """Versions 1 and 2 keep their own checks: offsets, the u16 header length, the padded size."""
    layers = [(LayerSpec(0, None, 1), b"abc"), (LayerSpec(1, 0, 2), b"de")]
    d = pack(small_header(version=1, padded_height=128, padded_width=192), layers)
    assert TamcReader(d).header.version == 1
    (entry0, _), _ = index_positions(d)
    with pytest.raises(TamcFormatError, match="gap|past the end"):
        TamcReader(_edit(d, entry0 + 3, b"\x01"))        # layer 0's offset
    with pytest.raises(TamcFormatError, match="header length 60000"):
        TamcReader(_edit(d, 5, struct.pack("<H", 60000), reseal=False))
    with pytest.raises(TamcFormatError, match="smaller than the image"):
        TamcReader(_edit(d, 26, b"\x01"))                # padded height 1 (after height 100 at 23, width 150 at 24, 25)
    with pytest.raises(TamcFormatError, match="truncated"):
        TamcReader(d[:6])


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
    from tamc_codec.bitstream.container import _MIN_HEADER_BYTES, _MIN_HEADER_BYTES_V3, MAGIC
    from tamc_codec.entropy import ESCAPE_LENGTH_PMF
    from tamc_codec.entropy.scale_table import SCALE_LEVELS, SCALE_MAX, SCALE_MIN

    doc = (Path(__file__).parents[1] / "docs" / "FORMAT.md").read_text()
    assert doc.startswith(f"# The `.tamc` file format, version {FORMAT_VERSION}\n")
    assert f"`{MAGIC.hex(' ').upper()}` (`\"{MAGIC.decode()}\"`)" in doc
    assert f"{_MIN_HEADER_BYTES} … {MAX_HEADER_BYTES}" in doc and f"{_MIN_HEADER_BYTES_V3} … {MAX_HEADER_BYTES}" in doc
    assert f"1 … {MAX_LAYERS}" in doc and f"1 … {MAX_SUBSTREAMS}" in doc
    assert f"fixed {ESCAPE_LENGTH_PMF.size}-entry table" in doc
    assert f"default {SCALE_LEVELS} entries log-spaced from\n  {SCALE_MIN} to {SCALE_MAX:g}" in doc
    # The header sizes FORMAT.md quotes: version 3, 19 bytes and 8 per layer (sides of 128 … 16383
    # pixels, layers of 128 … 16383 bytes); versions 1 and 2, 38 and 10 or 11 per layer.
    sides = dict(height=200, width=300)
    assert "19 bytes for images of 128 to 16383 pixels a side, plus 8 bytes per layer" in " ".join(doc.split())
    assert "has a 27-byte header" in doc and "spends 27 bytes, a three-layer file 43" in " ".join(doc.split())
    for n in (1, 3, 8):
        layers = [(LayerSpec(i, None, 0), b"x" * 200) for i in range(n)]
        assert TamcReader(pack(small_header(**sides), layers)).header_size == 19 + 8 * n
    data = pack(small_header(**sides, padded_height=256, padded_width=320, version=1), [(LayerSpec(0, None, 1), b"")])
    assert TamcReader(data).header_size == 38 + 3 + 1 + 1 + 4


def test_golden_v3():
    """Format version 3, frozen: golden v1's latent layers and golden v2's picture layer under the
    compact header (tests/data/make_golden_v3.py)."""
    from tamc_codec.bitstream.avif import unpack_avif

    data = (DATA / "golden_v3.tamc").read_bytes()
    exp = json.loads((DATA / "golden_v3.json").read_text())
    assert len(data) == exp["file_size"] and hashlib.sha256(data).hexdigest() == exp["sha256"]
    r = TamcReader(data)
    h = r.header
    assert h.version == exp["format_version"] == 3 and data[4] == 3
    assert h.model_id.hex() == exp["header"]["model_id"] == exp["header"]["written_for_model_id"][:8]
    assert h.made_by(exp["header"]["written_for_model_id"])
    assert [h.height, h.width] == exp["header"]["image_size"] and exp["header"]["padded_size"] is None
    assert h.padded_height is None and h.padded_width is None
    assert h.quality == exp["header"]["quality"] and h.task_names == exp["header"]["tasks"]
    assert r.header_size == exp["header_size"] == 5 + 1 + 4 + 1 + 1 + 3 + 4 * 7 + 2 == 45
    assert len(r.layers) == len(exp["layers"]) == 4
    for e, x in zip(r.layers, exp["layers"]):
        assert (e.group, e.parent, e.coding_name, e.task_names, e.offset, e.length, e.crc_hex) == (
            x["group"], x["parent"], x["coding"], x["tasks"], x["offset"], x["length"], x["check"])
    assert r.layers_for_task("normal") == [0, 1] and r.ancestors(2) == [0, 1] and r.layers_for_task("rgb") == [3]
    # the latent layers are golden v1's, byte for byte, and decode with its tables
    v1 = TamcReader(DATA / "golden_v1.tamc")
    v1_exp = json.loads((DATA / "golden_v1.json").read_text())
    tables = np.load(DATA / "golden_v1_tables.npz")
    fact = FactorizedCoder.from_arrays(tables, "hyper/")
    gauss = GaussianConditionalCoder.from_arrays(tables, "latent/")
    for i in range(3):
        layer = r.read_layer(i)
        assert layer == v1.read_layer(exp["layers"][i]["same_as_golden_v1_layer"])
        payload = unpack_substreams(layer)
        x = v1_exp["layers"][i]
        z = np.array(x["z"], np.int32)
        np.testing.assert_array_equal(fact.decode(payload.streams[0], z.shape, channel_axis=0), z)
        for s, half in zip(payload.streams[1:], x["halves"]):
            np.testing.assert_array_equal(gauss.decode(s, np.array(half["indexes"], np.uint8)),
                                          np.array(half["symbols"], np.int32))
    v1.close()
    # the picture layer is golden v2's, and holds the frozen AVIF file exactly
    frozen = r.read_layer(3)
    assert frozen == TamcReader(DATA / "golden_v2.tamc").read_layer(2)
    assert hashlib.sha256(unpack_avif(frozen)).hexdigest() == exp["layers"][3]["avif_sha256"]
    # the writer still produces the frozen bytes around the frozen payloads
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_golden_v3", DATA / "make_golden_v3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build(picture_payload=frozen)[0] == data
