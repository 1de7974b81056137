"""Factorised (per-channel) coder for hyper-latents ``z``.

Each channel has its own learned distribution, exported as a quantised integer
table (CompressAI's ``EntropyBottleneck.update()`` tables are the reference, see
:meth:`FactorizedCoder.from_quantized_cdf`). Symbols are integers (the caller
subtracts the per-channel medians and rounds, as CompressAI does); values outside a
channel's table go through the escape path, so every int32 round-trips.
numpy + constriction only: converting a torch module is the exporter's job.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import TamcModelError
from .tables import TableCoder

__all__ = ["FactorizedCoder"]


class FactorizedCoder:
    """Per-channel categorical coding; the channel axis picks the table."""

    def __init__(self, tables: TableCoder):
        self.tables = tables

    @property
    def channels(self) -> int:
        return self.tables.n_tables

    @classmethod
    def from_quantized_cdf(cls, cdf: np.ndarray, cdf_lengths: np.ndarray, offsets: np.ndarray,
                           precision: int = 16) -> "FactorizedCoder":
        """From CompressAI-style buffers: ``_quantized_cdf`` [C, L+2], ``_cdf_length`` [C], ``_offset`` [C].

        Row ``c`` is a CDF of ``cdf_lengths[c]`` entries from 0 to ``2**precision``
        whose last step is the overflow (escape) mass; ``offsets[c]`` is the value of
        its first entry.
        """
        cdf = np.asarray(cdf, dtype=np.int64).reshape(len(cdf_lengths), -1)
        cdf_lengths = np.asarray(cdf_lengths, dtype=np.int64).reshape(-1)
        offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
        if cdf_lengths.min() < 3 or cdf_lengths.max() > cdf.shape[1]:
            raise TamcModelError("factorised tables: CDF lengths must lie in 3 .. row width")
        n = cdf_lengths - 1  # pmf entries, escape included
        pmfs = np.zeros((cdf.shape[0], int(n.max())), np.int64)
        for c in range(cdf.shape[0]):
            row = cdf[c, : cdf_lengths[c]]
            if row[0] != 0 or row[-1] != 1 << precision:
                raise TamcModelError(f"factorised tables: CDF of channel {c} must run from 0 to 2**{precision}")
            pmfs[c, : n[c]] = np.diff(row)
        return cls(TableCoder(pmfs, n.astype(np.int32), offsets.astype(np.int32), precision))

    def _indexes(self, shape: tuple[int, ...], channel_axis: int) -> np.ndarray:
        if not shape:
            raise ValueError("symbols need a channel axis")
        axis = channel_axis % len(shape)
        if shape[axis] != self.channels:
            raise ValueError(f"channel axis {channel_axis} has {shape[axis]} entries, the coder {self.channels}")
        view = [1] * len(shape)
        view[axis] = self.channels
        dtype = np.uint8 if self.channels <= 256 else np.uint16
        return np.broadcast_to(np.arange(self.channels, dtype=dtype).reshape(view), shape)

    def encode(self, symbols: np.ndarray, channel_axis: int = -3) -> bytes:
        """One sub-stream for int32 ``symbols`` (e.g. [C, h, w] or [N, C, h, w])."""
        symbols = np.asarray(symbols)
        return self.tables.encode(symbols, self._indexes(symbols.shape, channel_axis))

    def decode(self, data: bytes, shape: tuple[int, ...], channel_axis: int = -3) -> np.ndarray:
        """int32 symbols of ``shape``; raises TamcFormatError on bad data."""
        return self.tables.decode(data, self._indexes(tuple(shape), channel_axis))

    def information_content(self, symbols: np.ndarray, channel_axis: int = -3) -> float:
        symbols = np.asarray(symbols)
        return self.tables.information_content(symbols, self._indexes(symbols.shape, channel_axis))

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return self.tables.to_arrays(prefix)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> "FactorizedCoder":
        return cls(TableCoder.from_arrays(arrays, prefix))
