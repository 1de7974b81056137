"""The layered ``.tamc`` container (byte layout: docs/FORMAT.md).

Stdlib only, so that ``tamc info`` starts fast. Entry points:

- :class:`Header`, :class:`LayerSpec`, :func:`pack`, :func:`write_tamc` to write;
- :class:`TamcReader` to validate a file and read the layers a task needs;
- :func:`pack_substreams` / :func:`unpack_substreams` for the framing inside a layer.
"""
from __future__ import annotations

from .container import (
    CODING_AVIF,
    CODING_LATENT,
    CODINGS,
    FORMAT_VERSION,
    FORMAT_VERSIONS,
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_LAYERS,
    MAX_PADDED_SIDE,
    MAX_SIDE,
    MODEL_ID_BYTES,
    MODEL_ID_PREFIX_BYTES,
    Header,
    LayerEntry,
    LayerSpec,
    TamcReader,
    model_id_matches,
    pack,
    read_header,
    write_tamc,
)
from .substreams import MAX_SUBSTREAMS, LayerPayload, pack_substreams, unpack_substreams, verify_index_checksum
from .varint import decode_varint, encode_varint

__all__ = [
    "CODING_AVIF", "CODING_LATENT", "CODINGS", "FORMAT_VERSION", "FORMAT_VERSIONS", "MAGIC", "MAX_HEADER_BYTES", "MAX_LAYERS", "MAX_PADDED_SIDE", "MAX_SIDE",
    "MAX_SUBSTREAMS", "MODEL_ID_BYTES", "MODEL_ID_PREFIX_BYTES", "Header", "LayerEntry", "LayerSpec", "LayerPayload",
    "TamcReader", "model_id_matches", "pack", "read_header", "write_tamc", "pack_substreams", "unpack_substreams",
    "verify_index_checksum", "decode_varint", "encode_varint",
]
