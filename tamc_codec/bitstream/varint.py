"""Unsigned LEB128 varints, as used in the .tamc header, index and layer framing.

Seven value bits per byte, least significant group first, high bit set on every
byte but the last. Decoding is strict: a value must use its shortest encoding and
fit ``max_bytes``, so each value has exactly one byte form and a corrupt length
cannot make a reader loop or allocate without bound.
"""
from __future__ import annotations

from ..errors import TamcFormatError

__all__ = ["encode_varint", "decode_varint", "varint_size", "MAX_VARINT_BYTES"]

#: Longest varint a v1 reader accepts (5 bytes hold any 32-bit value).
MAX_VARINT_BYTES = 5


def encode_varint(value: int) -> bytes:
    """The varint bytes of a non-negative integer below 2**32."""
    if not 0 <= value < 1 << 32:
        raise ValueError(f"varint value {value} is outside 0 .. 2**32-1")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint_size(value: int) -> int:
    """Number of bytes :func:`encode_varint` uses for ``value``."""
    return len(encode_varint(value))


def decode_varint(buf: bytes | bytearray | memoryview, pos: int, what: str = "varint") -> tuple[int, int]:
    """Decode the varint starting at ``buf[pos]``; return ``(value, next_pos)``.

    Raises :class:`TamcFormatError` naming ``what`` when the data ends early, the
    value is longer than :data:`MAX_VARINT_BYTES` or not minimally encoded.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise TamcFormatError(f"truncated {what}: data ends inside a varint")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise TamcFormatError(f"malformed {what}: varint is not minimally encoded")
            if value >= 1 << 32:
                raise TamcFormatError(f"malformed {what}: varint exceeds 32 bits")
            return value, pos + i + 1
    raise TamcFormatError(f"malformed {what}: varint longer than {MAX_VARINT_BYTES} bytes")
