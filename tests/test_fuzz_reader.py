"""Property-based fuzzing: mutated and truncated files raise only TamcFormatError.

The files are format version 3, what the writer writes (a varint header length, 16-bit checks,
no offsets); random bytes after the magic also go through the readers of versions 1 and 2.

Each mutated file goes through everything a decoder would do with it: open,
read every layer, split the sub-streams and entropy-decode them. Anything but
success or TamcFormatError (another exception, a hang, a huge allocation) fails.
Half of the mutations re-seal the header CRC, so the checks behind it (field
bounds, index consistency) are reached too rather than stopped by the CRC.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tamc_codec.bitstream import TamcReader, unpack_substreams
from tamc_codec.errors import TamcFormatError

from tamc_helpers import coded_file, index_positions, reseal_header, small_coders

GOOD, TRUTH = coded_file(seed=7, n_layers=3, size=6)
FACT, GAUSS = small_coders()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decode_all(data: bytes) -> None:
    reader = TamcReader(data)
    assert reader.bytes_read <= len(data)
    for i in range(len(reader.layers)):
        payload = unpack_substreams(reader.read_layer(i))
        if len(payload.streams) != 3:
            raise TamcFormatError("unexpected sub-stream count")  # what a codec would say
        z, y, idx = TRUTH[i] if i < len(TRUTH) else TRUTH[0]
        FACT.decode(payload.streams[0], z.shape, channel_axis=0)
        for s, ix in zip(payload.streams[1:], idx):
            GAUSS.decode(s, ix)


def _check(data: bytes) -> None:
    try:
        _decode_all(data)
    except TamcFormatError as exc:
        assert str(exc)


def _reseal_layers(data: bytes) -> bytes:
    """Recompute every layer check in the index, so corrupt payloads reach the decoders."""
    try:
        reader = TamcReader(data)
    except TamcFormatError:
        return data
    out = bytearray(data)
    for e, (_, at) in zip(reader.layers, index_positions(data)):
        crc = zlib.crc32(data[e.offset: e.offset + e.length])
        if e.crc_bits == 16:
            out[at: at + 2] = struct.pack("<H", crc & 0xFFFF)
        else:
            out[at: at + 4] = struct.pack("<I", crc)
    return reseal_header(bytes(out))


def test_good_file_decodes():
    assert GOOD[4] == 3 and TamcReader(GOOD).header.version == 3
    _decode_all(GOOD)
    assert _reseal_layers(GOOD) == GOOD
    bad = bytearray(GOOD)
    e = TamcReader(GOOD).layers[1]
    bad[e.offset] ^= 1
    assert TamcReader(_reseal_layers(bytes(bad))).read_layer(1) == bytes(bad[e.offset:e.offset + e.length])


@FUZZ
@given(cut=st.integers(0, len(GOOD) - 1))
def test_truncated(cut):
    try:
        _decode_all(GOOD[:cut])
    except TamcFormatError as exc:
        assert str(exc)
    else:
        raise AssertionError("a truncated file was accepted")


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 7)), min_size=1, max_size=4),
       reseal=st.sampled_from(["none", "header", "all"]))
def test_bit_flips(flips, reseal):
    data = bytearray(GOOD)
    for pos, bit in flips:
        data[pos] ^= 1 << bit
    data = bytes(data)
    if reseal == "header":
        data = reseal_header(data)
    elif reseal == "all":
        data = _reseal_layers(reseal_header(data))
    _check(data)


@FUZZ
@given(pos=st.integers(0, len(GOOD)), junk=st.binary(min_size=0, max_size=40),
       drop=st.integers(0, 40), reseal=st.booleans())
def test_splices(pos, junk, drop, reseal):
    data = GOOD[:pos] + junk + GOOD[pos + drop:]
    if reseal:
        data = _reseal_layers(reseal_header(data))
    _check(data)


@FUZZ
@given(blob=st.binary(min_size=0, max_size=300), version=st.sampled_from([1, 2, 3]))
def test_random_bytes_after_magic(blob, version):
    _check(b"TAMC" + bytes([version]) + blob)
    _check(reseal_header(b"TAMC" + bytes([version]) + blob))


@FUZZ
@given(head=st.binary(min_size=0, max_size=60), tail=st.binary(min_size=0, max_size=200))
def test_random_version_3_headers(head, tail):
    """A header length that fits, then random fields: the checks behind the header check."""
    hlen = 5 + 1 + len(head) + 2
    if hlen < 128:
        _check(reseal_header(b"TAMC\x03" + bytes([hlen]) + head + b"\0\0" + tail))


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(min_size=0, max_size=200))
def test_layer_payload_and_streams(payload):
    """Arbitrary layer bytes straight into framing and the coders."""
    try:
        p = unpack_substreams(payload)
        for s in p.streams:
            GAUSS.decode(s, np.arange(40, dtype=np.uint8) % 12)
            FACT.decode(s, (3, 2, 2), channel_axis=0)
    except TamcFormatError as exc:
        assert str(exc)
