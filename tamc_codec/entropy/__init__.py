"""Entropy coding with constriction (numpy + constriction only; never torch).

- :class:`GaussianConditionalCoder`: latents, ``round(y - mean)`` coded with the
  table of the predicted scale's bin (:func:`scale_indexes`).
- :class:`FactorizedCoder`: hyper-latents, one learned table per channel.
- :class:`TableCoder`: the engine under both (integer tables, escape path).
- :func:`index_checksum`: the 16-bit scale-index checksum stored in each layer.
"""
from __future__ import annotations

from .factorized import FactorizedCoder
from .gaussian import GaussianConditionalCoder, quantize_pmf, quantize_symbols
from .scale_table import default_scale_table, index_checksum, scale_indexes
from .tables import ESCAPE_LENGTH_PMF, TableCoder

__all__ = [
    "FactorizedCoder", "GaussianConditionalCoder", "TableCoder", "ESCAPE_LENGTH_PMF",
    "default_scale_table", "index_checksum", "scale_indexes", "quantize_pmf", "quantize_symbols",
]
