"""The layered ``.tamc`` container: header, layer index, layers (spec: docs/FORMAT.md).

A file holds one coded layer per task group, in the topological order of the group
DAG, so a receiver can read the header and index, then fetch only the layers its
task needs (the serving layer and its ancestors) and never touch the rest.

Format version 2 adds how each layer is coded (``coding``: a tamc latent layer, or a picture
coded by AVIF); a writer writes version 1 whenever every layer is a latent layer, so those files
keep every byte they had, and a reader reads both.

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
from typing import BinaryIO, Iterable, Sequence, Union

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
    "MAX_SIDE",
    "MAX_PADDED_SIDE",
    "MAX_LAYERS",
    "MAX_HEADER_BYTES",
    "Header",
    "LayerSpec",
    "LayerEntry",
    "pack",
    "write_tamc",
    "TamcReader",
    "read_header",
]

MAGIC = b"TAMC"
#: The newest version this module writes and reads; FORMAT_VERSIONS are all it reads.
FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)
#: How a layer is coded (index field `coding`, version 2; a version-1 layer is always a latent layer).
CODING_LATENT = 0   # a tamc latent layer: range-coded sub-streams (docs/FORMAT.md, layer payload)
CODING_AVIF = 1     # a picture coded by AVIF, its container boxes deflated (docs/FORMAT.md, picture payload)
CODINGS = {CODING_LATENT: "latent", CODING_AVIF: "avif"}

#: Bounds a reader enforces before trusting any field.
MAX_SIDE = 65535            # original image height/width
MAX_PADDED_SIDE = 65536     # padded height/width (the pad may push 65535 to 65536)
MAX_LAYERS = 32
MAX_GROUP_INDEX = 255
MAX_QUALITY = 255
MAX_HEADER_BYTES = 1024     # header + index + header CRC; 32 layers need at most 696
_ALL_TASKS_MASK = (1 << len(TASKS)) - 1

# magic, version, header length: fixed so that a reader learns how much to read
# from the first 7 bytes and never reads into the layers by accident.
_PREFIX = struct.Struct("<4sBH")
_MIN_HEADER_BYTES = _PREFIX.size + 16 + 4 + 3 + (3 + 1 + 1 + 4) + 4  # one layer, every varint 1 byte


def _mask_names(mask: int) -> list[str]:
    return [t for t in TASKS if mask >> TASK_CODES[t] & 1]


@dataclass(frozen=True)
class Header:
    """What a ``.tamc`` file says about the image and how it was coded.

    Sizes are in pixels, height first (numpy order). ``tasks`` is the bit mask
    (bit = task code, docs/CONTRACT.md) of the tasks requested at encode time.
    """

    model_id: bytes
    height: int
    width: int
    padded_height: int
    padded_width: int
    quality: int
    tasks: int
    #: the file's format version: read from a file; :func:`pack` writes the lowest version that
    #: holds its layers (1 unless a layer is not a latent layer) whatever this says
    version: int = 1

    @property
    def model_id_hex(self) -> str:
        return self.model_id.hex()

    @property
    def task_names(self) -> list[str]:
        """Requested tasks, canonical names in code order."""
        return _mask_names(self.tasks)

    def validate(self) -> None:
        """Raise :class:`TamcFormatError` if a field is outside the format's bounds."""
        if self.version not in FORMAT_VERSIONS:
            raise TamcFormatError(f"format version {self.version} is not one of {', '.join(map(str, FORMAT_VERSIONS))}")
        if not isinstance(self.model_id, (bytes, bytearray)) or len(self.model_id) != 16:
            raise TamcFormatError("model id must be exactly 16 bytes")
        for name, value, limit in (
            ("height", self.height, MAX_SIDE),
            ("width", self.width, MAX_SIDE),
            ("padded height", self.padded_height, MAX_PADDED_SIDE),
            ("padded width", self.padded_width, MAX_PADDED_SIDE),
        ):
            if not 1 <= value <= limit:
                raise TamcFormatError(f"image {name} {value} is outside 1 .. {limit}")
        if self.padded_height < self.height or self.padded_width < self.width:
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
    """A layer as listed in a file's index. ``offset`` is absolute in the file."""

    index: int
    group: int
    parent: int | None
    tasks: int
    offset: int
    length: int
    crc32: int
    coding: int = CODING_LATENT

    @property
    def task_names(self) -> list[str]:
        return _mask_names(self.tasks)

    @property
    def coding_name(self) -> str:
        """How the layer is coded: "latent" or "avif" (CODINGS)."""
        return CODINGS[self.coding]


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
    """The bytes of a ``.tamc`` file holding ``layers`` (in DAG order) under ``header``."""
    header.validate()
    specs = [spec for spec, _ in layers]
    _check_layers(specs)
    # version 1 whenever it can hold the layers, so that such files keep every byte they had
    version = 1 if all(spec.coding == CODING_LATENT for spec in specs) else 2
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
    out = bytearray(head)
    out += struct.pack("<I", zlib.crc32(head))
    for _, data in layers:
        out += data
    return bytes(out)


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
    """Header and index from the first ``header_len`` bytes (already CRC-checked)."""
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
    if pos + 3 > header_len - 4:
        raise TamcFormatError("truncated header: ends before the layer count")
    quality, tasks, n_layers = buf[pos], buf[pos + 1], buf[pos + 2]
    pos += 3
    header = Header(model_id=bytes(model_id), height=sizes[0], width=sizes[1],
                    padded_height=sizes[2], padded_width=sizes[3], quality=quality, tasks=tasks,
                    version=version)
    header.validate()
    if not 1 <= n_layers <= MAX_LAYERS:
        raise TamcFormatError(f"layer count {n_layers} is outside 1 .. {MAX_LAYERS}")

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


class TamcReader:
    """Open a ``.tamc`` file (path or bytes), validate header and index, read layers.

    Opening reads only the header and index. :meth:`read_layer` fetches one layer
    and checks its CRC-32 before returning it. :attr:`bytes_read` counts every byte
    fetched so far, so partial decoding can be measured against :attr:`file_size`.
    Use as a context manager (or call :meth:`close`) when opened from a path.
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
        first = src.read(0, min(src.size, _PREFIX.size), "header prefix")
        if first[:4] != MAGIC[: len(first[:4])] or not first:
            raise TamcFormatError(f"not a .tamc file: starts with {first[:4]!r}, expected {MAGIC!r}")
        if len(first) < _PREFIX.size:
            raise TamcFormatError(f"truncated file: {src.size} bytes, too short for the header")
        magic, version, header_len = _PREFIX.unpack(first)
        if version not in FORMAT_VERSIONS:
            newer = " (written by a newer tamc)" if version > FORMAT_VERSION else ""
            raise TamcFormatError(
                f"unsupported format version {version}{newer}; this reader reads versions "
                f"{', '.join(map(str, FORMAT_VERSIONS))}"
            )
        if not _MIN_HEADER_BYTES <= header_len <= MAX_HEADER_BYTES:
            raise TamcFormatError(f"header length {header_len} is outside {_MIN_HEADER_BYTES} .. {MAX_HEADER_BYTES}")
        if header_len > src.size:
            raise TamcFormatError(f"truncated file: header needs {header_len} bytes, the file has {src.size}")
        rest = src.read(_PREFIX.size, header_len - _PREFIX.size, "header")
        buf = first + rest
        (stored,) = struct.unpack_from("<I", buf, header_len - 4)
        computed = zlib.crc32(buf[: header_len - 4])
        if stored != computed:
            raise TamcFormatError(f"header CRC mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt")
        return _parse(buf, src.size)

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
        """One layer's bytes, after checking its CRC-32."""
        self._check_index(index)
        entry = self.layers[index]
        data = self._src.read(entry.offset, entry.length, f"layer {index}")
        crc = zlib.crc32(data)
        if crc != entry.crc32:
            raise TamcFormatError(
                f"layer {index} CRC mismatch (stored {entry.crc32:08x}, computed {crc:08x}): the layer is corrupt"
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
