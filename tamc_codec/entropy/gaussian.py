"""Gaussian conditional coder over a discrete scale table (latents ``y``).

The encoder codes ``symbol = round(y - mean)`` with the table of the bin that the
predicted scale falls in; the decoder reconstructs ``symbol + mean``. Only the bin
index selects the distribution. The mean never enters the entropy model, so a
decoder whose mean differs in the last bits from the encoder's still decodes the
same symbols (its reconstruction moves by that same tiny amount); and the scale
only matters through its bin (see ``scale_table``). Tables are integers computed
once by :meth:`GaussianConditionalCoder.build` and shipped in the model folder.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Mapping

import numpy as np

from ..errors import TamcModelError
from .scale_table import default_scale_table, scale_indexes
from .tables import MAX_PRECISION, TableCoder

__all__ = ["GaussianConditionalCoder", "quantize_symbols", "quantize_pmf"]

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_symbols(y: np.ndarray, means: np.ndarray | float = 0.0) -> np.ndarray:
    """``round(y - means)`` as int32 (ties to even, as torch.round).

    Raises ValueError for non-finite values or values outside int32.
    """
    r = np.rint(np.asarray(y, dtype=np.float64) - np.asarray(means, dtype=np.float64))
    if r.size and not np.isfinite(r).all():
        raise ValueError("latents or means contain NaN or infinity")
    if r.size and (r.min() < _INT32_MIN or r.max() > _INT32_MAX):
        raise ValueError("latent values are outside the int32 range")
    return r.astype(np.int32)


def quantize_pmf(pmf: np.ndarray, precision: int) -> np.ndarray:
    """Integer PMF summing to ``2**precision``, every entry >= 1 (encoder-side, once).

    Rounds each probability, then gives the rounding surplus or deficit to the
    largest entries, which changes their cost least.
    """
    total = 1 << precision
    if pmf.size > total:
        raise ValueError(f"{pmf.size} entries cannot all be >= 1 at precision {precision}")
    q = np.maximum(1, np.rint(pmf / pmf.sum() * total)).astype(np.int64)
    diff = total - int(q.sum())
    order = np.argsort(-q, kind="stable")
    i = 0
    while diff:
        j = order[i % q.size]
        step = diff if diff > 0 else -min(-diff, int(q[j]) - 1)
        q[j] += step
        diff -= step
        i += 1
    return q


def _gaussian_bin_pmf(sigma: float, half: int, tail_mass_out: list) -> np.ndarray:
    # Upper-tail form Q(x) = erfc(x/sqrt2)/2 keeps precision far from the centre.
    k = np.abs(np.arange(-half, half + 1, dtype=np.float64))
    upper = np.frompyfunc(lambda x: 0.5 * math.erfc(x / math.sqrt(2.0)), 1, 1)
    q_lo = upper((k - 0.5) / sigma).astype(np.float64)
    q_hi = upper((k + 0.5) / sigma).astype(np.float64)
    centre = k == 0
    p = np.where(centre, 1.0 - 2.0 * q_hi, q_lo - q_hi)
    tail_mass_out.append(2.0 * 0.5 * math.erfc((half + 0.5) / sigma / math.sqrt(2.0)))
    return p


class GaussianConditionalCoder:
    """Codes integer symbols ``round(y - mean)`` given a scale-table bin per symbol.

    ``scale_table`` (float64, ascending) defines the bins; ``tables`` holds one
    integer PMF per bin over ``-half .. half`` plus an escape entry.
    """

    def __init__(self, scale_table: np.ndarray, tables: TableCoder):
        scale_table = np.asarray(scale_table, dtype=np.float64)
        if scale_table.ndim != 1 or scale_table.size != tables.n_tables or not (np.diff(scale_table) > 0).all():
            raise TamcModelError("Gaussian coder: scale table must be ascending with one entry per table")
        self.scale_table = scale_table
        self.tables = tables

    @classmethod
    def build(cls, scale_table: np.ndarray | None = None, tail_mass: float = 1e-9, precision: int = 16) -> "GaussianConditionalCoder":
        """Compute the integer tables from a scale table (done once, at export).

        Each bin's support is ``|k| <= ceil(scale * z)`` with ``z`` the standard
        normal's ``1 - tail_mass/2`` quantile; the mass beyond goes to the escape.
        """
        if scale_table is None:
            scale_table = default_scale_table()
        scale_table = np.asarray(scale_table, dtype=np.float64)
        if not 0 < tail_mass < 0.5:
            raise ValueError("tail_mass must lie in (0, 0.5)")
        if not 1 <= precision <= MAX_PRECISION:
            raise ValueError(f"precision must lie in 1 .. {MAX_PRECISION}")
        z = -NormalDist().inv_cdf(tail_mass / 2)
        halves = [int(math.ceil(s * z)) for s in scale_table]
        width = 2 * max(halves) + 2
        pmfs = np.zeros((scale_table.size, width), np.int64)
        for b, (s, half) in enumerate(zip(scale_table, halves)):
            tail: list = []
            p = _gaussian_bin_pmf(float(s), half, tail)
            pmf = np.append(p, tail[0])
            pmfs[b, : pmf.size] = quantize_pmf(pmf, precision)
        lengths = np.array([2 * h + 2 for h in halves], np.int32)
        offsets = np.array([-h for h in halves], np.int32)
        return cls(scale_table, TableCoder(pmfs, lengths, offsets, precision))

    # -- helpers the codec uses

    def indexes(self, scales: np.ndarray) -> np.ndarray:
        """Bin (uint8) of each predicted scale."""
        return scale_indexes(scales, self.scale_table)

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """One sub-stream coding int32 ``symbols`` with the bins ``indexes``."""
        return self.tables.encode(symbols, indexes)

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """int32 symbols in the shape of ``indexes``; raises TamcFormatError on bad data."""
        return self.tables.decode(data, indexes)

    def information_content(self, symbols: np.ndarray, indexes: np.ndarray) -> float:
        return self.tables.information_content(symbols, indexes)

    # -- serialisation

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        d = self.tables.to_arrays(prefix)
        d[f"{prefix}scale_table"] = self.scale_table.copy()
        return d

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> "GaussianConditionalCoder":
        if f"{prefix}scale_table" not in arrays:
            raise TamcModelError(f"Gaussian coder: missing array {prefix + 'scale_table'!r}")
        return cls(arrays[f"{prefix}scale_table"], TableCoder.from_arrays(arrays, prefix))
