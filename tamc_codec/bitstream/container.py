"""The layered ``.tamc`` container: header, layer index, layers (spec: docs/FORMAT.md).

A file holds one coded layer per task group, in the topological order of the group
DAG, so a receiver can read the header and index, then fetch only the layers its
task needs (the serving layer and its ancestors) and never touch the rest.

Format version 3, the one written, is the compact header: a varint header length, the first 4
bytes of the model id, no padded size (the model's padding of the image size gives it), no layer
offsets (layers tile the data area in index order) and 16-bit checks. Versions 1 and 2 (a
16-byte model id, the padded size, offsets and CRC-32s; version 2 adds each layer's ``coding``)
are still read, and written only when a :class:`Header` asks for them (the golden files).

Stdlib only (zlib for CRC-32): ``tamc info`` imports this and must start fast.
Every problem with a file raises :class:`~tamc_codec.errors.TamcFormatError` with a
message naming what is wrong; nothing sized by a field of the file is allocated
before the field has been checked against fixed bounds and the file's size.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Optional, Sequence, Union

from ..atomic import atomic_write_bytes
from ..contract import TASK_CODES, TASKS
from ..errors import TamcFormatError, TamcInputError
from .substreams import LayerPayload, unpack_substreams
from .varint import decode_varint, encode_varint

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "FORMAT_VERSIONS",
    "CODING_LATENT",
    "CODING_AVIF",
    "CODINGS",
    "MODEL_ID_BYTES",
    "MODEL_ID_PREFIX_BYTES",
    "MAX_SIDE",
    "MAX_PADDED_SIDE",
    "MAX_LAYERS",
    "MAX_HEADER_BYTES",
    "Header",
    "LayerSpec",
    "LayerEntry",
    "model_id_matches",
    "pack",
    "write_tamc",
    "TamcReader",
    "read_header",
]

MAGIC = b"TAMC"
#: The version this module writes; FORMAT_VERSIONS are all it reads (and can write, for old files).
FORMAT_VERSION = 3
FORMAT_VERSIONS = (1, 2, 3)
#: How a layer is coded (index field `coding`, versions 2 and 3; a version-1 layer is always a latent layer).
CODING_LATENT = 0   # a tamc latent layer: range-coded sub-streams (docs/FORMAT.md, layer payload)
CODING_AVIF = 1     # a picture coded by AVIF, its container boxes deflated (docs/FORMAT.md, picture payload)
CODINGS = {CODING_LATENT: "latent", CODING_AVIF: "avif"}

#: A model id (CONTRACT.md, "Models"), as versions 1 and 2 store it; version 3 stores its first
#: MODEL_ID_PREFIX_BYTES bytes.
MODEL_ID_BYTES = 16
MODEL_ID_PREFIX_BYTES = 4

#: Bounds a reader enforces before trusting any field.
MAX_SIDE = 65535            # original image height/width
MAX_PADDED_SIDE = 65536     # padded height/width (the pad may push 65535 to 65536)
MAX_LAYERS = 32
MAX_GROUP_INDEX = 255
MAX_QUALITY = 255
MAX_HEADER_BYTES = 1024     # header + index + header check; 32 layers need at most 696 (version 3: 374)
_ALL_TASKS_MASK = (1 << len(TASKS)) - 1

# Versions 1 and 2: magic, version, header length, fixed so that a reader learns how much to read
# from the first 7 bytes and never reads into the layers by accident.
_PREFIX = struct.Struct("<4sBH")
_MIN_HEADER_BYTES = _PREFIX.size + 16 + 4 + 3 + (3 + 1 + 1 + 4) + 4  # one layer, every varint 1 byte
# Version 3: magic, version, then the header length as a varint (1 or 2 bytes up to
# MAX_HEADER_BYTES); a reader first fetches _PROBE_BYTES bytes, enough for either prefix.
_PROBE_BYTES = 8
_V3_PREFIX_BYTES = 5        # magic and version; the header length's varint follows
_V3_ENTRY_FIXED = 4         # group, parent, tasks served, coding; then the length varint and the check
_V3_CHECK = struct.Struct("<H")
_MIN_HEADER_BYTES_V3 = (_V3_PREFIX_BYTES + 1 + MODEL_ID_PREFIX_BYTES + 2 + 3
                        + (_V3_ENTRY_FIXED + 1 + _V3_CHECK.size) + _V3_CHECK.size)  # one layer, every varint 1 byte


def _mask_names(mask: int) -> list[str]:
    return [t for t in TASKS if mask >> TASK_CODES[t] & 1]


def _check16(data: bytes) -> int:
    """Version 3's header and layer check: the low 16 bits of the data's CRC-32."""
    return zlib.crc32(data) & 0xFFFF


def model_id_matches(file_id: bytes, model_id_hex: str) -> bool:
    """Whether a file's model id (16 bytes in versions 1 and 2, the first 4 in version 3) names the
    model whose full id is ``model_id_hex`` (32 hex digits): the model's id starts with the file's."""
    return len(file_id) > 0 and model_id_hex.lower().startswith(bytes(file_id).hex())


@dataclass(frozen=True, kw_only=True)
class Header:
    """What a ``.tamc`` file says about the image and how it was coded.

    Sizes are in pixels, height first (numpy order). ``tasks`` is the bit mask
    (bit = task code, docs/CONTRACT.md) of the tasks requested at encode time.

    ``model_id``: 16 bytes in versions 1 and 2; in version 3 the first 4 (:func:`pack` takes the
    full 16 and stores their prefix). ``padded_height``/``padded_width``: the size the networks ran
    at, stored by versions 1 and 2 only; a version-3 file leaves it to the model (its padding
    multiple for the image size, as the encoder padded), so it reads as ``None``.
    """

    model_id: bytes
    height: int
    width: int
    quality: int
    tasks: int
    padded_height: Optional[int] = None
    padded_width: Optional[int] = None
    #: the file's format version: what a reader found, and what :func:`pack` writes (FORMAT_VERSION
    #: unless told otherwise; versions 1 and 2 only to reproduce old files, such as the golden ones)
    version: int = FORMAT_VERSION

    @property
    def model_id_hex(self) -> str:
        """The model id as the file stores it, in hex: 32 digits (versions 1, 2), or 8 (version 3's prefix)."""
        return self.model_id.hex()

    @property
    def model_id_is_prefix(self) -> bool:
        """Whether the file stores only the first bytes of its model's id (version 3)."""
        return len(self.model_id) < MODEL_ID_BYTES

    def model_id_text(self) -> str:
        """The file's model id for messages: the hex digits, marked as a prefix when it is one."""
        return f"{self.model_id_hex}…" if self.model_id_is_prefix else self.model_id_hex

    def made_by(self, model_id_hex: str) -> bool:
        """Whether this file names the model whose full id is ``model_id_hex`` (:func:`model_id_matches`)."""
        return model_id_matches(self.model_id, model_id_hex)

    @property
    def task_names(self) -> list[str]:
        """Requested tasks, canonical names in code order."""
        return _mask_names(self.tasks)

    def validate(self) -> None:
        """Raise :class:`TamcFormatError` if a field is outside the format's bounds."""
        if self.version not in FORMAT_VERSIONS:
            raise TamcFormatError(f"format version {self.version} is not one of {', '.join(map(str, FORMAT_VERSIONS))}")
        if not isinstance(self.model_id, (bytes, bytearray)):
            raise TamcFormatError("model id must be bytes")
        if self.version >= 3:
            if len(self.model_id) not in (MODEL_ID_PREFIX_BYTES, MODEL_ID_BYTES):
                raise TamcFormatError(f"model id must be exactly {MODEL_ID_BYTES} bytes (or its first "
                                      f"{MODEL_ID_PREFIX_BYTES}, which format version 3 stores)")
        elif len(self.model_id) != MODEL_ID_BYTES:
            raise TamcFormatError(f"model id must be exactly {MODEL_ID_BYTES} bytes")
        if self.version < 3 and (self.padded_height is None or self.padded_width is None):
            raise TamcFormatError(f"format version {self.version} stores the padded size; it is missing")
        sizes = [("height", self.height, MAX_SIDE), ("width", self.width, MAX_SIDE)]
        if self.padded_height is not None:
            sizes.append(("padded height", self.padded_height, MAX_PADDED_SIDE))
        if self.padded_width is not None:
            sizes.append(("padded width", self.padded_width, MAX_PADDED_SIDE))
        for name, value, limit in sizes:
            if not 1 <= value <= limit:
                raise TamcFormatError(f"image {name} {value} is outside 1 .. {limit}")
        if (self.padded_height is not None and self.padded_height < self.height) or (
                self.padded_width is not None and self.padded_width < self.width):
            raise TamcFormatError(
                f"padded size {self.padded_height}x{self.padded_width} is smaller than "
                f"the image {self.height}x{self.width}"
            )
        if not 1 <= self.quality <= MAX_QUALITY:
            raise TamcFormatError(f"quality {self.quality} is outside 1 .. {MAX_QUALITY}")
        if self.tasks & ~_ALL_TASKS_MASK or self.tasks < 0:
            raise TamcFormatError(f"requested task mask {self.tasks:#x} has bits for unknown tasks")


@dataclass(frozen=True)
class LayerSpec:
    """A layer as the writer sees it: which group, its parent layer, tasks served.

    ``parent`` is the position (in this file) of the layer this one is coded
    conditionally on, or ``None`` for a root; it must come earlier in the file.
    ``tasks`` is the bit mask of the tasks this layer's group serves. ``coding`` says how its
    bytes are coded (CODINGS); a picture layer (not CODING_LATENT) is a root and no layer's parent.
    """

    group: int
    parent: int | None
    tasks: int
    coding: int = CODING_LATENT


@dataclass(frozen=True)
class LayerEntry:
    """A layer as listed in a file's index. ``offset`` is absolute in the file (version 3 stores
    none: it is the running sum of the lengths). ``crc32`` is the stored layer check: a CRC-32
    (versions 1, 2), or its low 16 bits (version 3); ``crc_bits`` says which."""

    index: int
    group: int
    parent: int | None
    tasks: int
    offset: int
    length: int
    crc32: int
    coding: int = CODING_LATENT
    crc_bits: int = 32

    @property
    def task_names(self) -> list[str]:
        return _mask_names(self.tasks)

    @property
    def coding_name(self) -> str:
        """How the layer is coded: "latent" or "avif" (CODINGS)."""
        return CODINGS[self.coding]

    @property
    def crc_hex(self) -> str:
        """The stored layer check in hex: 8 digits (CRC-32), or 4 (version 3's 16 bits)."""
        return f"{self.crc32:0{self.crc_bits // 4}x}"

    def check(self, data: bytes) -> int:
        """The check of ``data`` as this entry stores it (CRC-32, or its low 16 bits)."""
        return zlib.crc32(data) & ((1 << self.crc_bits) - 1)


# --------------------------------------------------------------------------- writing


def _check_layers(specs: Sequence[LayerSpec]) -> None:
    if not 1 <= len(specs) <= MAX_LAYERS:
        raise TamcFormatError(f"a file holds 1 .. {MAX_LAYERS} layers, not {len(specs)}")
    groups: set[int] = set()
    served = 0
    for i, spec in enumerate(specs):
        if not 0 <= spec.group <= MAX_GROUP_INDEX:
            raise TamcFormatError(f"layer {i}: group index {spec.group} is outside 0 .. {MAX_GROUP_INDEX}")
        if spec.group in groups:
            raise TamcFormatError(f"layer {i}: group {spec.group} appears in more than one layer")
        groups.add(spec.group)
        if spec.parent is not None and not 0 <= spec.parent < i:
            raise TamcFormatError(
                f"layer {i}: parent {spec.parent} must be an earlier layer (layers are in DAG order)"
            )
        if spec.coding not in CODINGS:
            raise TamcFormatError(f"layer {i}: unknown coding {spec.coding} (known: "
                                  f"{', '.join(f'{k} {v}' for k, v in CODINGS.items())})")
        if spec.coding != CODING_LATENT and spec.parent is not None:
            raise TamcFormatError(f"layer {i}: a {CODINGS[spec.coding]} picture layer has no parent")
        if spec.parent is not None and specs[spec.parent].coding != CODING_LATENT:
            raise TamcFormatError(f"layer {i}: its parent, layer {spec.parent}, is a picture layer, which is no layer's parent")
        if spec.tasks < 0 or spec.tasks & ~_ALL_TASKS_MASK:
            raise TamcFormatError(f"layer {i}: task mask {spec.tasks:#x} has bits for unknown tasks")
        if spec.tasks & served:
            raise TamcFormatError(
                f"layer {i}: serves {', '.join(_mask_names(spec.tasks & served))}, already served by an earlier layer"
            )
        served |= spec.tasks


def pack(header: Header, layers: Sequence[tuple[LayerSpec, bytes]]) -> bytes:
    """The bytes of a ``.tamc`` file holding ``layers`` (in DAG order) under ``header``, in the
    header's format version (FORMAT_VERSION, 3, unless it names an older one)."""
    header.validate()
    specs = [spec for spec, _ in layers]
    _check_layers(specs)
    if header.version == 1 and any(spec.coding != CODING_LATENT for spec in specs):
        raise TamcFormatError("format version 1 holds latent layers only; a picture layer needs version 2 or later")
    head = _pack_v3(header, layers) if header.version >= 3 else _pack_v1_v2(header, layers)
    out = bytearray(head)
    for _, data in layers:
        out += data
    return bytes(out)


def _pack_v3(header: Header, layers: Sequence[tuple[LayerSpec, bytes]]) -> bytes:
    """Header, index and header check of a version-3 file."""
    body = bytearray(bytes(header.model_id)[:MODEL_ID_PREFIX_BYTES])
    body += encode_varint(header.height) + encode_varint(header.width)
    body += bytes((header.quality, header.tasks, len(layers)))
    for spec, data in layers:
        body += bytes((spec.group, 0 if spec.parent is None else spec.parent + 1, spec.tasks, spec.coding))
        body += encode_varint(len(data))
        body += _V3_CHECK.pack(_check16(data))
    rest = len(body) + _V3_CHECK.size
    # the length counts its own varint: 1 byte while the total stays below 128, else 2
    header_len = _V3_PREFIX_BYTES + 1 + rest
    if header_len >= 0x80:
        header_len += 1
    if header_len > MAX_HEADER_BYTES:  # pragma: no cover - cannot happen within MAX_LAYERS
        raise TamcFormatError(f"header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    head = MAGIC + bytes((3,)) + encode_varint(header_len) + bytes(body)
    assert len(head) + _V3_CHECK.size == header_len
    return head + _V3_CHECK.pack(_check16(head))


def _pack_v1_v2(header: Header, layers: Sequence[tuple[LayerSpec, bytes]]) -> bytes:
    """Header, index and header CRC of a version-1 or -2 file, byte for byte as those versions wrote them."""
    version = header.version
    body = bytearray()
    body += bytes(header.model_id)
    for v in (header.height, header.width, header.padded_height, header.padded_width):
        body += encode_varint(v)
    body += bytes((header.quality, header.tasks, len(layers)))
    offset = 0
    for spec, data in layers:
        body += bytes((spec.group, 0 if spec.parent is None else spec.parent + 1, spec.tasks))
        if version >= 2:
            body += bytes((spec.coding,))
        body += encode_varint(offset)
        body += encode_varint(len(data))
        body += struct.pack("<I", zlib.crc32(data))
        offset += len(data)
    header_len = _PREFIX.size + len(body) + 4
    if header_len > MAX_HEADER_BYTES:  # pragma: no cover - cannot happen within MAX_LAYERS
        raise TamcFormatError(f"header of {header_len} bytes exceeds {MAX_HEADER_BYTES}")
    head = _PREFIX.pack(MAGIC, version, header_len) + bytes(body)
    return head + struct.pack("<I", zlib.crc32(head))


def write_tamc(path: Union[str, "os.PathLike[str]"], header: Header, layers: Sequence[tuple[LayerSpec, bytes]]) -> int:
    """Write a ``.tamc`` file atomically (temporary file, then rename); return its size."""
    data = pack(header, layers)
    atomic_write_bytes(path, data)
    return len(data)


# --------------------------------------------------------------------------- reading


class _Source:
    """Random access to a file or a bytes object, counting the bytes fetched."""

    def __init__(self, source: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]):
        self._fh: BinaryIO | None = None
        self._mem: memoryview | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._mem = memoryview(source).cast("B")
            self.size = len(self._mem)
            self.name = "<bytes>"
        else:
            path = Path(source)
            self.name = str(path)
            try:
                # Unbuffered, so that the bytes counted are the bytes fetched.
                self._fh = open(path, "rb", buffering=0)
            except FileNotFoundError:
                raise TamcInputError(f"{path}: no such file") from None
            except IsADirectoryError:
                raise TamcInputError(f"{path}: is a folder, not a .tamc file") from None
            self.size = os.fstat(self._fh.fileno()).st_size
        self.bytes_read = 0

    def read(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise TamcFormatError(f"truncated file: {what} needs bytes {offset}..{offset + n} of a {self.size}-byte file")
        if self._mem is not None:
            data = bytes(self._mem[offset : offset + n])
        else:
            assert self._fh is not None
            self._fh.seek(offset)
            chunks = []
            got = 0
            while got < n:
                chunk = self._fh.read(n - got)
                if not chunk:
                    raise TamcFormatError(f"truncated file: {what} ends early (the file shrank while being read)")
                chunks.append(chunk)
                got += len(chunk)
            data = b"".join(chunks)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _parse(prefix_and_body: bytes, file_size: int) -> tuple[Header, tuple[LayerEntry, ...]]:
    """Header and index of a version-1 or -2 file from its first ``header_len`` bytes (already CRC-checked)."""
    buf = prefix_and_body
    header_len = len(buf)
    version = buf[4]
    fixed = 3 if version == 1 else 4  # group, parent, tasks served [, coding]
    pos = _PREFIX.size
    model_id = buf[pos : pos + 16]
    pos += 16
    sizes = []
    for what in ("image height", "image width", "padded height", "padded width"):
        v, pos = decode_varint(buf, pos, what)
        sizes.append(v)
    quality, tasks, n_layers, pos = _coding_fields(buf, pos, header_len - 4)
    header = Header(model_id=bytes(model_id), height=sizes[0], width=sizes[1],
                    padded_height=sizes[2], padded_width=sizes[3], quality=quality, tasks=tasks,
                    version=version)
    _check_header(header, n_layers)

    data_size = file_size - header_len
    entries: list[LayerEntry] = []
    specs: list[LayerSpec] = []
    expected_offset = 0
    for i in range(n_layers):
        if pos + fixed > header_len - 4:
            raise TamcFormatError(f"truncated index: ends inside layer {i}'s entry")
        group, parent_code, mask = buf[pos], buf[pos + 1], buf[pos + 2]
        coding = buf[pos + 3] if version >= 2 else CODING_LATENT
        pos += fixed
        offset, pos = decode_varint(buf, pos, f"layer {i} offset")
        length, pos = decode_varint(buf, pos, f"layer {i} length")
        if pos + 4 > header_len - 4:
            raise TamcFormatError(f"truncated index: ends inside layer {i}'s CRC")
        (crc,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if offset + length > data_size:
            raise TamcFormatError(
                f"layer {i} (offset {offset}, length {length}) extends past the end of the file "
                f"({data_size} bytes of layer data)"
            )
        if offset != expected_offset:
            kind = "overlaps the previous layer" if offset < expected_offset else "leaves a gap after the previous layer"
            raise TamcFormatError(f"layer {i} at offset {offset} {kind} (expected offset {expected_offset})")
        expected_offset = offset + length
        parent = None if parent_code == 0 else parent_code - 1
        specs.append(LayerSpec(group=group, parent=parent, tasks=mask, coding=coding))
        entries.append(LayerEntry(index=i, group=group, parent=parent, tasks=mask,
                                  offset=header_len + offset, length=length, crc32=crc, coding=coding))
    if pos != header_len - 4:
        raise TamcFormatError(
            f"header length field says {header_len} bytes but header and index take {pos + 4}"
        )
    if expected_offset != data_size:
        raise TamcFormatError(
            f"file has {data_size - expected_offset} bytes after the last layer (trailing data or wrong lengths)"
        )
    _check_layers(specs)
    return header, tuple(entries)


def _coding_fields(buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """Quality, requested tasks and layer count (one byte each, every version) at `pos`, and the
    position after them; the header's fields end at `end`."""
    if pos + 3 > end:
        raise TamcFormatError("truncated header: ends before the layer count")
    return buf[pos], buf[pos + 1], buf[pos + 2], pos + 3


def _check_header(header: Header, n_layers: int) -> None:
    header.validate()
    if not 1 <= n_layers <= MAX_LAYERS:
        raise TamcFormatError(f"layer count {n_layers} is outside 1 .. {MAX_LAYERS}")


def _parse_v3(buf: bytes, file_size: int) -> tuple[Header, tuple[LayerEntry, ...]]:
    """Header and index of a version-3 file from its first ``header_len`` bytes (already checked)."""
    header_len = len(buf)
    end = header_len - _V3_CHECK.size
    body = buf[:end]  # so that no field can be read out of the header check
    _, pos = decode_varint(body, _V3_PREFIX_BYTES, "header length")
    model_id = body[pos : pos + MODEL_ID_PREFIX_BYTES]
    pos += MODEL_ID_PREFIX_BYTES
    height, pos = decode_varint(body, pos, "image height")
    width, pos = decode_varint(body, pos, "image width")
    quality, tasks, n_layers, pos = _coding_fields(body, pos, end)
    header = Header(model_id=bytes(model_id), height=height, width=width, quality=quality, tasks=tasks, version=3)
    _check_header(header, n_layers)

    data_size = file_size - header_len
    entries: list[LayerEntry] = []
    specs: list[LayerSpec] = []
    offset = 0
    for i in range(n_layers):
        if pos + _V3_ENTRY_FIXED > end:
            raise TamcFormatError(f"truncated index: ends inside layer {i}'s entry")
        group, parent_code, mask, coding = body[pos], body[pos + 1], body[pos + 2], body[pos + 3]
        pos += _V3_ENTRY_FIXED
        length, pos = decode_varint(body, pos, f"layer {i} length")
        if pos + _V3_CHECK.size > end:
            raise TamcFormatError(f"truncated index: ends inside layer {i}'s check")
        (check,) = _V3_CHECK.unpack_from(body, pos)
        pos += _V3_CHECK.size
        if offset + length > data_size:
            raise TamcFormatError(
                f"layer {i} (offset {offset}, length {length}) extends past the end of the file "
                f"({data_size} bytes of layer data)"
            )
        parent = None if parent_code == 0 else parent_code - 1
        specs.append(LayerSpec(group=group, parent=parent, tasks=mask, coding=coding))
        entries.append(LayerEntry(index=i, group=group, parent=parent, tasks=mask, offset=header_len + offset,
                                  length=length, crc32=check, coding=coding, crc_bits=16))
        offset += length
    if pos != end:
        raise TamcFormatError(f"header length field says {header_len} bytes but header and index take "
                              f"{pos + _V3_CHECK.size}")
    if offset != data_size:
        raise TamcFormatError(
            f"file has {data_size - offset} bytes after the last layer (trailing data or wrong lengths)"
        )
    _check_layers(specs)
    return header, tuple(entries)


class TamcReader:
    """Open a ``.tamc`` file (path or bytes), validate header and index, read layers.

    Opening reads only the header and index. :meth:`read_layer` fetches one layer
    and checks its CRC (CRC-32, or its low 16 bits in version 3) before returning it.
    :attr:`bytes_read` counts every byte fetched so far, so partial decoding can be
    measured against :attr:`file_size`. Use as a context manager (or call :meth:`close`)
    when opened from a path.
    """

    def __init__(self, source: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]):
        self._src = _Source(source)
        try:
            self.header, self.layers = self._open()
        except BaseException:
            self._src.close()
            raise

    def _open(self) -> tuple[Header, tuple[LayerEntry, ...]]:
        src = self._src
        # enough for either prefix (versions 1 and 2: a u16 header length; 3: a varint); every valid
        # header is longer, so these bytes are all header
        first = src.read(0, min(src.size, _PROBE_BYTES), "header prefix")
        if first[:4] != MAGIC[: len(first[:4])] or not first:
            raise TamcFormatError(f"not a .tamc file: starts with {first[:4]!r}, expected {MAGIC!r}")
        if len(first) <= 4:
            raise TamcFormatError(f"truncated file: {src.size} bytes, too short for the header")
        version = first[4]
        if version not in FORMAT_VERSIONS:
            newer = " (written by a newer tamc)" if version > FORMAT_VERSION else ""
            raise TamcFormatError(
                f"unsupported format version {version}{newer}; this reader reads versions "
                f"{', '.join(map(str, FORMAT_VERSIONS))}"
            )
        if version >= 3:
            header_len = self._v3_header_len(first)
            lowest = _MIN_HEADER_BYTES_V3
        else:
            if len(first) < _PREFIX.size:
                raise TamcFormatError(f"truncated file: {src.size} bytes, too short for the header")
            _, _, header_len = _PREFIX.unpack_from(first)
            lowest = _MIN_HEADER_BYTES
        if not lowest <= header_len <= MAX_HEADER_BYTES:
            raise TamcFormatError(f"header length {header_len} is outside {lowest} .. {MAX_HEADER_BYTES}")
        if header_len > src.size:
            raise TamcFormatError(f"truncated file: header needs {header_len} bytes, the file has {src.size}")
        rest = src.read(len(first), header_len - len(first), "header")
        buf = first + rest
        if version >= 3:
            (stored,) = _V3_CHECK.unpack_from(buf, header_len - _V3_CHECK.size)
            computed = _check16(buf[: header_len - _V3_CHECK.size])
            if stored != computed:
                raise TamcFormatError(f"header CRC mismatch (stored {stored:04x}, computed {computed:04x}): "
                                      "the file is corrupt")
            return _parse_v3(buf, src.size)
        (stored,) = struct.unpack_from("<I", buf, header_len - 4)
        computed = zlib.crc32(buf[: header_len - 4])
        if stored != computed:
            raise TamcFormatError(f"header CRC mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")
        return _parse(buf, src.size)

    def _v3_header_len(self, first: bytes) -> int:
        """Version 3's header length, a varint at byte 5: 1 or 2 bytes for any length a reader accepts."""
        pos = _V3_PREFIX_BYTES
        if len(first) <= pos or (first[pos] & 0x80 and len(first) <= pos + 1):
            raise TamcFormatError(f"truncated file: {self._src.size} bytes, too short for the header")
        if first[pos] & 0x80 and first[pos + 1] & 0x80:  # 3 bytes or more: at least 2**14
            raise TamcFormatError(f"header length is outside {_MIN_HEADER_BYTES_V3} .. {MAX_HEADER_BYTES} "
                                  "(its varint takes more than 2 bytes)")
        value, _ = decode_varint(first, pos, "header length")
        return value

    # -- info

    @property
    def file_size(self) -> int:
        return self._src.size

    @property
    def bytes_read(self) -> int:
        """Bytes fetched from the file so far (header and index included)."""
        return self._src.bytes_read

    @property
    def header_size(self) -> int:
        """Bytes before the first layer: header, index and header CRC."""
        return self.layers[0].offset

    def ancestors(self, index: int) -> list[int]:
        """Positions of the layers ``index`` is coded conditionally on, root first."""
        self._check_index(index)
        chain = []
        parent = self.layers[index].parent
        while parent is not None:  # parents are strictly earlier, so this ends
            chain.append(parent)
            parent = self.layers[parent].parent
        return chain[::-1]

    def layer_chain(self, index: int) -> list[int]:
        """The layers needed to decode layer ``index``: its ancestors, root first, then itself."""
        return self.ancestors(index) + [index]

    def serving_layer(self, task: str | int) -> int:
        """Position of the layer whose mask serves ``task`` (canonical name or code)."""
        code = TASK_CODES.get(task) if isinstance(task, str) else task
        if code is None or not 0 <= code < len(TASKS):
            raise TamcInputError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
        for entry in self.layers:
            if entry.tasks >> code & 1:
                return entry.index
        carried = _mask_names(0 if not self.layers else _or(e.tasks for e in self.layers))
        raise TamcInputError(
            f"this file does not carry task {TASKS[code]!r} (it carries: {', '.join(carried) or 'none'})"
        )

    def layers_for_task(self, task: str | int) -> list[int]:
        """The layers a receiver of ``task`` must read, in file (decoding) order."""
        return self.layer_chain(self.serving_layer(task))

    # -- data

    def read_layer(self, index: int) -> bytes:
        """One layer's bytes, after checking its CRC (CRC-32, or its low 16 bits in version 3)."""
        self._check_index(index)
        entry = self.layers[index]
        data = self._src.read(entry.offset, entry.length, f"layer {index}")
        crc = entry.check(data)
        if crc != entry.crc32:
            raise TamcFormatError(
                f"layer {index} CRC mismatch (stored {entry.crc_hex}, computed {crc:0{entry.crc_bits // 4}x}): "
                "the layer is corrupt"
            )
        return data

    def read_payload(self, index: int) -> LayerPayload:
        """One latent layer, CRC-checked and split into its sub-streams (see ``substreams``)."""
        self._check_index(index)
        if self.layers[index].coding != CODING_LATENT:
            raise TamcFormatError(f"layer {index} is an {self.layers[index].coding_name} picture layer, "
                                  "not a latent layer of sub-streams")
        return unpack_substreams(self.read_layer(index), what=f"layer {index}")

    def read_layers(self, indices: Iterable[int]) -> dict[int, bytes]:
        """Several layers by position, each CRC-checked."""
        return {i: self.read_layer(i) for i in indices}

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.layers):
            raise IndexError(f"layer {index} does not exist (the file has {len(self.layers)})")

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "TamcReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _or(masks: Iterable[int]) -> int:
    out = 0
    for m in masks:
        out |= m
    return out


def read_header(source: Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]) -> tuple[Header, tuple[LayerEntry, ...]]:
    """Header and index of a file, validated; reads nothing else."""
    with TamcReader(source) as reader:
        return reader.header, reader.layers
