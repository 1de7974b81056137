"""The discrete scale table of the Gaussian conditional, and the index checksum.

Why a discrete table: the decoder recomputes each latent's predicted scale with
its own network run, and float results differ in the last bits between machines,
thread counts and libraries. An entropy model parameterised by the float scale
itself would then differ between encoder and decoder, and a range decoder given a
different model silently decodes garbage (constriction's QuantizedGaussian fails on
a one-ULP change). Instead the scale only selects one of a few log-spaced bins, and
each bin's table is fixed integers, so encoder and decoder agree unless a scale
falls within a rounding error of a bin edge, which is rare and which
:func:`index_checksum` detects.
"""
from __future__ import annotations

import zlib

import numpy as np

__all__ = ["SCALE_MIN", "SCALE_MAX", "SCALE_LEVELS", "default_scale_table", "scale_indexes", "index_checksum"]

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64


def default_scale_table(smin: float = SCALE_MIN, smax: float = SCALE_MAX, levels: int = SCALE_LEVELS) -> np.ndarray:
    """Log-spaced scales from ``smin`` to ``smax`` (CompressAI's get_scale_table), float64."""
    if not (0 < smin < smax and 2 <= levels <= 256):
        raise ValueError("need 0 < smin < smax and 2 <= levels <= 256")
    return np.exp(np.linspace(np.log(smin), np.log(smax), levels))


def scale_indexes(scales: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Bin of each predicted scale: the first table entry >= the scale (uint8).

    Scales below the table's first entry use bin 0, above its last entry (and NaN)
    the last bin, as CompressAI's ``build_indexes`` does.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.size > 256:
        raise ValueError("scale tables have at most 256 entries")
    s = np.asarray(scales)
    idx = np.searchsorted(table[:-1], s.astype(np.float64, copy=False).reshape(-1), side="left")
    return idx.astype(np.uint8).reshape(s.shape)


def index_checksum(*indexes: np.ndarray) -> int:
    """16-bit checksum of the scale indices, in the order given (low half of CRC-32).

    The encoder stores it in the layer; the decoder recomputes it from the indices
    it derived and compares (``LayerPayload.verify``). Indices are hashed as
    little-endian uint16 so the value does not depend on the array dtype.
    """
    crc = 0
    for arr in indexes:
        a = np.ascontiguousarray(np.asarray(arr).reshape(-1), dtype="<u2")
        crc = zlib.crc32(memoryview(a).cast("B"), crc)
    return crc & 0xFFFF
