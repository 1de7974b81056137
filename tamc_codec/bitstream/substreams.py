"""Framing inside one layer: length-prefixed sub-streams and the scale-index checksum.

A layer's payload is a few independently decodable sub-streams (hyper-latent
first, then the latent's passes, e.g. the two checkerboard halves), each produced
by its own entropy coder, followed by nothing else. Alongside them the encoder
stores a 16-bit checksum of the scale indices it used (computed by
``tamc_codec.entropy.index_checksum``): the decoder recomputes the indices from
its own network outputs, and if its float arithmetic drifted far enough to move an
index, the checksum differs and decoding fails loudly instead of returning garbage.

Layout (docs/FORMAT.md, "Layer payload"):
    u8      number of sub-streams S (1 .. MAX_SUBSTREAMS)
    S x     varint byte length of each sub-stream
    u16 LE  scale-index checksum
    ...     the S sub-streams, concatenated
Stdlib only.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

from ..errors import TamcFormatError
from .varint import decode_varint, encode_varint

__all__ = ["MAX_SUBSTREAMS", "LayerPayload", "pack_substreams", "unpack_substreams", "verify_index_checksum"]

MAX_SUBSTREAMS = 16


@dataclass(frozen=True)
class LayerPayload:
    """A layer split into its sub-streams, plus the encoder's scale-index checksum."""

    streams: tuple[bytes, ...]
    index_checksum: int

    def verify(self, computed: int, what: str = "layer") -> None:
        """Raise :class:`TamcFormatError` if ``computed`` differs from the stored checksum."""
        verify_index_checksum(self.index_checksum, computed, what)


def pack_substreams(streams: Sequence[bytes], index_checksum: int) -> bytes:
    """A layer payload from its sub-streams (in decoding order) and the 16-bit checksum."""
    if not 1 <= len(streams) <= MAX_SUBSTREAMS:
        raise ValueError(f"a layer holds 1 .. {MAX_SUBSTREAMS} sub-streams, not {len(streams)}")
    if not 0 <= index_checksum <= 0xFFFF:
        raise ValueError(f"index checksum {index_checksum} does not fit 16 bits")
    out = bytearray((len(streams),))
    for s in streams:
        out += encode_varint(len(s))
    out += struct.pack("<H", index_checksum)
    for s in streams:
        out += s
    return bytes(out)


def unpack_substreams(data: bytes | bytearray | memoryview, what: str = "layer") -> LayerPayload:
    """Split a layer payload; the lengths must account for every byte exactly."""
    if len(data) < 1:
        raise TamcFormatError(f"{what} is empty: no sub-stream count")
    count = data[0]
    if not 1 <= count <= MAX_SUBSTREAMS:
        raise TamcFormatError(f"{what}: sub-stream count {count} is outside 1 .. {MAX_SUBSTREAMS}")
    pos = 1
    lengths = []
    for i in range(count):
        n, pos = decode_varint(data, pos, f"{what} sub-stream {i} length")
        lengths.append(n)
    if pos + 2 > len(data):
        raise TamcFormatError(f"truncated {what}: ends before the scale-index checksum")
    (checksum,) = struct.unpack_from("<H", data, pos)
    pos += 2
    if pos + sum(lengths) != len(data):
        raise TamcFormatError(
            f"{what}: sub-stream lengths add up to {sum(lengths)} bytes but {len(data) - pos} follow the framing"
        )
    streams = []
    for n in lengths:
        streams.append(bytes(data[pos : pos + n]))
        pos += n
    return LayerPayload(streams=tuple(streams), index_checksum=checksum)


def verify_index_checksum(stored: int, computed: int, what: str = "layer") -> None:
    """Raise :class:`TamcFormatError` when the decoder's scale indices differ from the encoder's."""
    if stored != computed:
        raise TamcFormatError(
            f"{what}: scale-index checksum mismatch (stored {stored:04x}, decoder computed {computed:04x}); "
            "the decoder's arithmetic differs from the encoder's or the model does not match the file"
        )
