"""The payload of a picture layer coded by AVIF (docs/FORMAT.md, "Picture payload"). Stdlib only.

An AVIF file from libavif is an ISOBMFF container: about 275 bytes of boxes (``ftyp``; ``meta``
with ``hdlr``, ``pitm``, ``iloc``, ``iinf``, ``iprp``: ``ispe``, ``pixi``, ``av1C``, ``colr``; the
``mdat`` box's header) in front of the AV1 data, nearly the same for every picture. A picture
layer stores those bytes deflated with a fixed preset dictionary, :data:`AVIF_DICTIONARY` (the
boxes of three reference files), so they cost 14 to 25 bytes, and the AV1 data as it is. The
decoder inflates them and puts the exact AVIF file back together: :func:`pack_avif` and
:func:`unpack_avif` are inverse for any bytes, an AVIF file or not.
"""
from __future__ import annotations

import struct
import zlib

from ..errors import TamcFormatError
from .varint import decode_varint, encode_varint

__all__ = ["AVIF_DICTIONARY", "MAX_AVIF_HEAD", "avif_split", "pack_avif", "unpack_avif"]

#: The preset dictionary (frozen: a change is a new format): the boxes before the AV1 data of a
#: flat grey picture of 128², 256² and 512² pixels, coded by Pillow 13.0 (libavif 1.4.2, libaom
#: 3.14.1) at quality 50, speed 4, concatenated. SHA-256 7bd19c5a3b7ece7a6db0efd835090c931637adc5f08a3e6f4131a755e2897cfb.
AVIF_DICTIONARY = bytes.fromhex(
    "00000020667479706176696600000000617669666d6966316d6961664d413142000000eb6d6574610000000000000021"
    "68646c72000000000000000070696374000000000000000000000000000000000e7069746d0000000000010000001e69"
    "6c6f630000000044000001000100000001000001130000001f0000002869696e660000000000010000001a696e666502"
    "0000000001000061763031436f6c6f72000000006a697072700000004b6970636f000000146973706500000000000000"
    "8000000080000000107069786900000000030808080000000c6176314381000c0000000013636f6c726e636c78000100"
    "0d0006800000001769706d61000000000000000100010401028304000000276d64617400000020667479706176696600"
    "000000617669666d6966316d6961664d413142000000eb6d657461000000000000002168646c72000000000000000070"
    "696374000000000000000000000000000000000e7069746d0000000000010000001e696c6f6300000000440000010001"
    "0000000100000113000000250000002869696e660000000000010000001a696e6665020000000001000061763031436f"
    "6c6f72000000006a697072700000004b6970636f00000014697370650000000000000100000001000000001070697869"
    "00000000030808080000000c6176314381000c0000000013636f6c726e636c780001000d0006800000001769706d6100"
    "00000000000001000104010283040000002d6d64617400000020667479706176696600000000617669666d6966316d69"
    "61664d413142000000eb6d657461000000000000002168646c7200000000000000007069637400000000000000000000"
    "0000000000000e7069746d0000000000010000001e696c6f630000000044000001000100000001000001130000002d00"
    "00002869696e660000000000010000001a696e6665020000000001000061763031436f6c6f72000000006a6970727000"
    "00004b6970636f0000001469737065000000000000020000000200000000107069786900000000030808080000000c61"
    "76314381010c0000000013636f6c726e636c780001000d0006800000001769706d610000000000000001000104010283"
    "04000000356d646174"
)
#: Longest container head a reader inflates (a bound against a crafted stream, far above the
#: ~300 bytes libavif writes).
MAX_AVIF_HEAD = 65536
#: DEFLATE settings: raw stream (no zlib wrapper), 32 KiB window, best compression.
_WBITS = -15
_LEVEL = 9


def avif_split(data: bytes) -> int:
    """Where the AV1 data of an AVIF file starts: just after the header of its first top-level
    ``mdat`` box (8 bytes, or 16 with a 64-bit size); the file's length when it has none (then
    everything is container). Reads box headers only."""
    pos, n = 0, len(data)
    while pos + 8 <= n:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > n:
                break
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        if kind == b"mdat":
            return pos + head
        if size == 0 or size < head:  # box to the end of the file, or malformed: no mdat before it
            break
        pos += size
    return n


def pack_avif(data: bytes) -> bytes:
    """A picture layer's payload: varint length of the deflated head, the head (the bytes before
    the AV1 data) deflated with AVIF_DICTIONARY, then the AV1 data as it is."""
    k = avif_split(data)
    if k > MAX_AVIF_HEAD:
        raise ValueError(f"the AVIF file has {k} bytes of boxes before its data, more than {MAX_AVIF_HEAD}")
    comp = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, 9, zlib.Z_DEFAULT_STRATEGY, zdict=AVIF_DICTIONARY)
    head = comp.compress(bytes(data[:k])) + comp.flush()
    return encode_varint(len(head)) + head + bytes(data[k:])


def unpack_avif(payload: bytes, what: str = "picture layer") -> bytes:
    """The exact AVIF file a payload of :func:`pack_avif` holds; TamcFormatError when it cannot be
    one (`what` names the layer in the message)."""
    n, pos = decode_varint(payload, 0, f"{what}: container length")
    if pos + n > len(payload):
        raise TamcFormatError(f"{what}: the deflated container ({n} bytes) runs past the layer's end ({len(payload)} bytes)")
    inflater = zlib.decompressobj(_WBITS, zdict=AVIF_DICTIONARY)
    try:
        head = inflater.decompress(payload[pos:pos + n], MAX_AVIF_HEAD + 1)
    except zlib.error as exc:
        raise TamcFormatError(f"{what}: corrupt deflated container ({exc})") from None
    if len(head) > MAX_AVIF_HEAD:
        raise TamcFormatError(f"{what}: the deflated container inflates past {MAX_AVIF_HEAD} bytes")
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise TamcFormatError(f"{what}: the deflated container does not end where its length says")
    return head + bytes(payload[pos + n:])
