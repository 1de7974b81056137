"""Shared builders for the bitstream and codec command-line tests (not a test module)."""
from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np

from tamc_codec.bitstream import Header, LayerSpec, TamcReader, pack, pack_substreams
from tamc_codec.bitstream.container import _PREFIX
from tamc_codec.bitstream.varint import decode_varint, encode_varint
from tamc_codec.errors import TamcFormatError
from tamc_codec.entropy import FactorizedCoder, GaussianConditionalCoder, TableCoder, default_scale_table, index_checksum, quantize_pmf


def small_header(**kw) -> Header:
    """A version-3 header (give version=1 or 2, and the padded size, for the old layouts)."""
    base = dict(model_id=bytes(range(16)), height=100, width=150, quality=3, tasks=0b111011)
    base.update(kw)
    return Header(**base)


def read_back(header: Header) -> Header:
    """What a reader finds in a file packed with `header`: version 3 keeps the id's first 4 bytes."""
    if header.version < 3:
        return header
    return replace(header, model_id=bytes(header.model_id)[:4])


def small_coders() -> tuple[FactorizedCoder, GaussianConditionalCoder]:
    gauss = GaussianConditionalCoder.build(default_scale_table(0.11, 16.0, 12))
    pmfs = [quantize_pmf(np.append(0.5 ** np.abs(np.arange(-4, 5.0)), 0.01), 16) for _ in range(3)]
    fact = FactorizedCoder(TableCoder(np.array(pmfs), np.full(3, 10), np.full(3, -4)))
    return fact, gauss


def coded_file(seed: int = 0, n_layers: int = 3, size: int = 8) -> tuple[bytes, list]:
    """A file whose layers hold real sub-streams; returns it and what each layer holds."""
    rng = np.random.default_rng(seed)
    fact, gauss = small_coders()
    layers, truth = [], []
    for i in range(n_layers):
        z = rng.integers(-6, 7, size=(3, 2, 2)).astype(np.int32)
        idx = rng.integers(0, 12, size=(2, 3, size, size)).astype(np.uint8)
        y = np.rint(rng.normal(0, 1, idx.shape) * gauss.scale_table[idx] * 1.5).astype(np.int32)
        streams = [fact.encode(z, channel_axis=0), gauss.encode(y[0], idx[0]), gauss.encode(y[1], idx[1])]
        payload = pack_substreams(streams, index_checksum(idx[0], idx[1]))
        parent = None if i == 0 else i - 1 if i % 2 else 0
        layers.append((LayerSpec(group=i, parent=parent, tasks=1 << i if i < 6 else 0), payload))
        truth.append((z, y, idx))
    return pack(small_header(tasks=(1 << min(n_layers, 6)) - 1), layers), truth


def header_len(data: bytes) -> int | None:
    """The header length a file's prefix states (any version; None when it cannot be read)."""
    if len(data) < 6:
        return None
    if data[4] >= 3:
        try:
            return decode_varint(data[:7], 5)[0]
        except TamcFormatError:
            return None
    return _PREFIX.unpack_from(data)[2] if len(data) >= _PREFIX.size else None


def reseal_header(data: bytes) -> bytes:
    """Recompute the header CRC after a deliberate edit, so the field checks are reached."""
    hlen = header_len(data)
    check = 2 if len(data) > 4 and data[4] >= 3 else 4
    if hlen is None or hlen < check or hlen > len(data):
        return data
    head = data[: hlen - check]
    crc = zlib.crc32(head)
    return head + (struct.pack("<H", crc & 0xFFFF) if check == 2 else struct.pack("<I", crc)) + data[hlen:]


def index_positions(data: bytes) -> list[tuple[int, int]]:
    """Where each layer's index entry starts in a (valid) file, and where its stored check starts."""
    r = TamcReader(data)
    hlen = r.header_size
    check = 2 if r.header.version >= 3 else 4
    pos = hlen - check
    out = []
    for e in reversed(r.layers):
        crc_at = pos - check
        size = len(encode_varint(e.length))
        if r.header.version < 3:
            size += len(encode_varint(e.offset - hlen))
        fixed = 3 if r.header.version == 1 else 4
        start = crc_at - size - fixed
        out.append((start, crc_at))
        pos = start
    return out[::-1]


# --------------------------------------------------------------------------- the command line


def tamc(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit status, stdout, stderr)."""
    from tamc_codec.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tamc: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size and whose pixel data is missing."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
