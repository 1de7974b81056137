"""Entropy coding of integer symbols with a bank of quantised categorical tables.

This is the engine under both latent coders: each symbol comes with an index that
picks one table (a scale-table bin for the Gaussian conditional, a channel for the
factorised hyper-prior), and the symbols are range coded with constriction.

Tables are integer PMFs that sum to ``2**precision``, every entry at least 1. Row
``t`` has ``lengths[t]`` used entries: entry ``v < lengths[t] - 1`` codes the value
``offsets[t] + v``, and the last used entry is the *escape*. A value outside the
row's range codes the escape, then its distance from the range with the fixed
escape code below, so every int32 round-trips. The coder only ever turns the stored
integers into models; floats computed at decode time could differ between machines,
integers cannot.

Sub-stream layout (all in one range coder, in this order):
 1. the symbols grouped by table index, ascending; within a table, in the flat
    (C-order) order of the input. The decoder knows the indexes, so it can rebuild
    the grouping before decoding anything. Grouping lets one constriction call code
    all symbols that share a table: no Python loop per symbol.
 2. for each escaped symbol (in the order of 1): ``k - 1`` with the fixed
    :data:`ESCAPE_LENGTH_PMF`, where ``u = d + 1`` has ``k`` bits and ``d`` is the
    zig-zagged distance beyond the range (Elias-gamma style);
 3. the ``k - 1`` bits of ``u`` below its leading one, split into 8-bit chunks from
    the least significant end (the last chunk narrower), each chunk coded with a
    uniform table of its width, grouped by width (1..8) ascending, and within a
    width in escape-then-chunk order.
"""
from __future__ import annotations

from typing import Mapping

import constriction
import numpy as np

from ..errors import TamcFormatError, TamcModelError

__all__ = ["TableCoder", "ESCAPE_LENGTH_PMF", "MAX_PRECISION"]

MAX_PRECISION = 24           # constriction's categorical models are 24-bit fixed point
_MAX_ESCAPE_BITS = 40        # u = d + 1 < 2**34 for any int32 symbol; headroom for decoding garbage
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _escape_length_pmf() -> np.ndarray:
    # P(k) ~ 2**-k: an escape just past the range costs ~1 bit, int32 extremes ~50.
    pmf = np.array([max(1, 1 << max(0, 16 - k)) if k <= 16 else 1 for k in range(1, _MAX_ESCAPE_BITS + 1)], np.int64)
    pmf[0] -= pmf.sum() - (1 << 16)
    return pmf


#: Fixed table for the bit length ``k`` (index ``k - 1``) of an escaped value; part of format v1.
ESCAPE_LENGTH_PMF = _escape_length_pmf()


def _categorical(pmf: np.ndarray) -> "constriction.stream.model.Categorical":
    # perfect=False: faster, and encoder and decoder must agree on it; float64 holds
    # the integer table exactly, so constriction's own quantisation sees the same
    # numbers everywhere.
    return constriction.stream.model.Categorical(pmf.astype(np.float64), perfect=False)


_ESCAPE_LENGTH_MODEL = _categorical(ESCAPE_LENGTH_PMF)
_UNIFORM_MODELS = {w: _categorical(np.ones(1 << w, np.int64)) for w in range(1, 9)}
_ESC_LEN_LOG2 = np.log2(ESCAPE_LENGTH_PMF / ESCAPE_LENGTH_PMF.sum())


def _as_index_array(indexes: np.ndarray, n_tables: int) -> np.ndarray:
    idx = np.asarray(indexes)
    if idx.dtype.kind not in "iu":
        raise ValueError(f"indexes must be integers, not {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= n_tables):
        raise ValueError(f"indexes must lie in 0 .. {n_tables - 1}")
    # numpy's stable sort is a radix sort for 8- and 16-bit integers: much faster.
    return idx.reshape(-1).astype(np.uint8 if n_tables <= 256 else np.uint16 if n_tables <= 65536 else np.int64)


class TableCoder:
    """Range coding of int32 symbols, each with a table chosen by its index."""

    def __init__(self, pmfs: np.ndarray, lengths: np.ndarray, offsets: np.ndarray, precision: int = 16):
        pmfs = np.asarray(pmfs)
        lengths = np.asarray(lengths)
        offsets = np.asarray(offsets)
        if pmfs.ndim != 2 or lengths.shape != (pmfs.shape[0],) or offsets.shape != (pmfs.shape[0],):
            raise TamcModelError(f"entropy tables: expected pmfs [T, L], lengths [T], offsets [T]; got "
                                 f"{pmfs.shape}, {lengths.shape}, {offsets.shape}")
        if pmfs.shape[0] < 1 or pmfs.dtype.kind not in "iu" or lengths.dtype.kind not in "iu" or offsets.dtype.kind not in "iu":
            raise TamcModelError("entropy tables: need at least one table, integer arrays")
        if not 1 <= int(precision) <= MAX_PRECISION:
            raise TamcModelError(f"entropy tables: precision {precision} is outside 1 .. {MAX_PRECISION}")
        if lengths.min() < 2 or lengths.max() > pmfs.shape[1]:
            raise TamcModelError("entropy tables: every row needs 2 .. L used entries (values and the escape)")
        if offsets.min() < _INT32_MIN or offsets.max() + lengths.max() > _INT32_MAX:
            raise TamcModelError("entropy tables: offsets put values outside int32")
        used = np.arange(pmfs.shape[1])[None, :] < lengths[:, None]
        p64 = pmfs.astype(np.int64)
        if (p64[used] < 1).any() or (p64[~used] != 0).any():
            raise TamcModelError("entropy tables: used entries must be >= 1 and padding 0")
        if (p64.sum(axis=1) != 1 << int(precision)).any():
            raise TamcModelError(f"entropy tables: every row must sum to 2**{precision}")
        self.pmfs = p64.astype(np.int32)
        self.lengths = lengths.astype(np.int32)
        self.offsets = offsets.astype(np.int64)
        self.precision = int(precision)
        self._models: list | None = None
        self._log2: np.ndarray | None = None

    @property
    def n_tables(self) -> int:
        return int(self.pmfs.shape[0])

    # -- serialisation

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The integer tables, for ``np.savez``; :meth:`from_arrays` inverts it."""
        return {
            f"{prefix}pmfs": self.pmfs.copy(),
            f"{prefix}lengths": self.lengths.copy(),
            f"{prefix}offsets": self.offsets.astype(np.int32),
            f"{prefix}precision": np.array(self.precision, np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> "TableCoder":
        try:
            return cls(arrays[f"{prefix}pmfs"], arrays[f"{prefix}lengths"], arrays[f"{prefix}offsets"],
                       int(arrays[f"{prefix}precision"]))
        except KeyError as exc:
            raise TamcModelError(f"entropy tables: missing array {exc.args[0]!r}") from None

    # -- coding

    def _get_models(self) -> list:
        if self._models is None:
            self._models = [_categorical(self.pmfs[t, : self.lengths[t]]) for t in range(self.n_tables)]
        return self._models

    def _group(self, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = _as_index_array(indexes, self.n_tables)
        counts = np.bincount(idx, minlength=self.n_tables)
        return np.argsort(idx, kind="stable"), counts

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """Code ``symbols`` (int32 values, any shape) with the tables ``indexes`` picks.

        Returns one independently decodable sub-stream (little-endian 32-bit words).
        """
        sym = np.asarray(symbols)
        idx_shape = np.shape(indexes)
        if sym.shape != idx_shape:
            raise ValueError(f"symbols {sym.shape} and indexes {idx_shape} differ in shape")
        if sym.dtype.kind not in "iu":
            raise ValueError(f"symbols must be integers, not {sym.dtype}")
        if sym.size and (sym.min() < _INT32_MIN or sym.max() > _INT32_MAX):
            raise ValueError("symbols must fit int32")
        order, counts = self._group(indexes)
        sym_sorted = sym.reshape(-1).astype(np.int32, copy=False)[order]
        encoder = constriction.stream.queue.RangeEncoder()
        models = self._get_models()
        esc_pos, esc_table = [], []
        start = 0
        for t in np.flatnonzero(counts):
            stop = start + int(counts[t])
            # int32 arithmetic wraps for values far outside the table, but viewed
            # as uint32 the difference is < n_reg exactly when the value is inside
            # [offset, offset + n_reg), so one comparison finds every escape.
            v = sym_sorted[start:stop] - np.int32(self.offsets[t])
            n_reg = int(self.lengths[t]) - 1
            esc = v.view(np.uint32) >= n_reg
            if esc.any():
                pos = np.flatnonzero(esc)
                v[pos] = n_reg
                esc_pos.append(pos + start)
                esc_table.append(np.full(pos.size, t))
            encoder.encode(v, models[t])
            start = stop
        if esc_pos:
            pos = np.concatenate(esc_pos)
            tab = np.concatenate(esc_table)
            lo = self.offsets[tab]
            _encode_escapes(encoder, sym_sorted[pos].astype(np.int64), lo, lo + self.lengths[tab] - 2)
        return encoder.get_compressed().astype("<u4", copy=False).tobytes()

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`encode`: int32 symbols in the shape of ``indexes``.

        Raises :class:`TamcFormatError` if the data cannot have come from
        :meth:`encode` with these indexes (wrong length, unread data left over,
        decoded values outside int32).
        """
        shape = np.shape(indexes)
        if len(data) % 4:
            raise TamcFormatError(f"entropy-coded sub-stream of {len(data)} bytes is not a whole number of 32-bit words")
        order, counts = self._group(indexes)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        models = self._get_models()
        values = np.empty(order.size, np.int32)
        esc_pos, esc_table = [], []
        try:
            start = 0
            for t in np.flatnonzero(counts):
                stop = start + int(counts[t])
                v = decoder.decode(models[t], stop - start)
                esc = v == self.lengths[t] - 1
                if esc.any():
                    pos = np.flatnonzero(esc)
                    esc_pos.append(pos + start)
                    esc_table.append(np.full(pos.size, t))
                # Escape slots get a wrong value here; they are overwritten below.
                np.add(v, np.int32(self.offsets[t]), out=values[start:stop])
                start = stop
            if esc_pos:
                pos = np.concatenate(esc_pos)
                tab = np.concatenate(esc_table)
                lo = self.offsets[tab]
                big = _decode_escapes(decoder, pos.size, lo, lo + self.lengths[tab] - 2)
                if big.min() < _INT32_MIN or big.max() > _INT32_MAX:
                    raise TamcFormatError("entropy-coded sub-stream decodes to values outside int32: it is corrupt")
                values[pos] = big
        except (ValueError, RuntimeError, AssertionError, OverflowError) as exc:
            raise TamcFormatError(f"entropy-coded sub-stream is corrupt ({exc})") from None
        if not decoder.maybe_exhausted():
            raise TamcFormatError(
                "entropy-coded sub-stream has data left after its last symbol: "
                "the stream is corrupt or was decoded with different indexes"
            )
        out = np.empty(values.size, np.int32)
        out[order] = values
        return out.reshape(shape)

    def information_content(self, symbols: np.ndarray, indexes: np.ndarray) -> float:
        """Bits that ideal coding under these tables needs: sum of -log2 p, escapes included."""
        if self._log2 is None:
            with np.errstate(divide="ignore"):
                self._log2 = np.log2(self.pmfs.astype(np.float64)) - self.precision
        idx = _as_index_array(indexes, self.n_tables).astype(np.intp)
        sym = np.asarray(symbols).reshape(-1).astype(np.int64)
        n_reg = self.lengths[idx].astype(np.int64) - 1
        v = sym - self.offsets[idx]
        esc = (v < 0) | (v >= n_reg)
        v = np.where(esc, n_reg, v)
        bits = -float(self._log2[idx, v].sum())
        if esc.any():
            lo = self.offsets[idx[esc]]
            d = _escape_distance(sym[esc], lo, lo + n_reg[esc] - 1)
            k = _bit_length(d + 1)
            bits += float((k - 1).sum()) - float(_ESC_LEN_LOG2[k - 1].sum())
        return bits


# --------------------------------------------------------------------------- escapes


def _escape_distance(s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    # Zig-zag: below the range -> odd, above -> even, so one unsigned number says both.
    return np.where(s < lo, 2 * (lo - 1 - s) + 1, 2 * (s - hi - 1))


def _bit_length(u: np.ndarray) -> np.ndarray:
    # frexp is exact for integers below 2**53 (unlike log2, which rounds near powers of 2).
    return np.frexp(u.astype(np.float64))[1].astype(np.int64)


def _chunk_layout(k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For mantissas of ``k - 1`` bits: owner escape, chunk number and width of each chunk."""
    nbits = k - 1
    nchunks = (nbits + 7) // 8
    owner = np.repeat(np.arange(k.size), nchunks)
    first = np.cumsum(nchunks) - nchunks
    j = np.arange(owner.size) - first[owner]
    width = np.minimum(8, nbits[owner] - 8 * j)
    return owner, j, width


def _encode_escapes(encoder, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    u = _escape_distance(s, lo, hi) + 1
    k = _bit_length(u)
    encoder.encode((k - 1).astype(np.int32), _ESCAPE_LENGTH_MODEL)
    mant = u - (np.int64(1) << (k - 1))
    owner, j, width = _chunk_layout(k)
    chunks = ((mant[owner] >> (8 * j)) & ((np.int64(1) << width) - 1)).astype(np.int32)
    order = np.argsort(width.astype(np.uint8), kind="stable")
    w_sorted = width[order]
    c_sorted = chunks[order]
    for w in range(1, 9):
        sel = c_sorted[w_sorted == w]
        if sel.size:
            encoder.encode(sel, _UNIFORM_MODELS[w])


def _decode_escapes(decoder, n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    k = decoder.decode(_ESCAPE_LENGTH_MODEL, n).astype(np.int64) + 1
    owner, j, width = _chunk_layout(k)
    order = np.argsort(width.astype(np.uint8), kind="stable")
    w_sorted = width[order]
    c_sorted = np.empty(order.size, np.int64)
    for w in range(1, 9):
        sel = w_sorted == w
        count = int(sel.sum())
        if count:
            c_sorted[sel] = decoder.decode(_UNIFORM_MODELS[w], count)
    chunks = np.empty(order.size, np.int64)
    chunks[order] = c_sorted
    mant = np.zeros(n, np.int64)
    np.add.at(mant, owner, chunks << (8 * j))
    d = (np.int64(1) << (k - 1)) + mant - 1
    return np.where(d & 1, lo - 1 - (d - 1) // 2, hi + 1 + d // 2)
