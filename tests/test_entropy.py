"""Entropy coding: bit-exact round trips, escapes, tables, sizes, robustness."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tamc_codec.entropy import (
    ESCAPE_LENGTH_PMF,
    FactorizedCoder,
    GaussianConditionalCoder,
    TableCoder,
    default_scale_table,
    index_checksum,
    quantize_pmf,
    quantize_symbols,
    scale_indexes,
)
from tamc_codec.errors import TamcFormatError, TamcModelError

I32 = np.iinfo(np.int32)


@pytest.fixture(scope="module")
def gauss() -> GaussianConditionalCoder:
    return GaussianConditionalCoder.build()


def _latents(rng, n):
    """Random latents with random means and scales, extremes included."""
    scales = np.exp(rng.uniform(np.log(1e-4), np.log(1e4), n)).astype(np.float32)
    scales[:4] = [0.0, np.inf, np.nan, 1e30]
    means = rng.normal(0, 50, n).astype(np.float32)
    y = means + rng.standard_normal(n).astype(np.float32) * np.nan_to_num(scales, nan=1, posinf=1e4).clip(0, 1e4)
    y[4:10] = [1e9, -1e9, 2.1e9, -2.1e9, 0.5, -0.5]   # far outside every table: escapes
    return y, means, scales


def test_gaussian_round_trip_random_latents(gauss):
    rng = np.random.default_rng(0)
    y, means, scales = _latents(rng, 200_000)
    sym = quantize_symbols(y, means)
    idx = gauss.indexes(scales)
    assert idx.dtype == np.uint8 and idx.min() == 0 and idx.max() == 63
    data = gauss.encode(sym, idx)
    out = gauss.decode(data, idx)
    np.testing.assert_array_equal(out, sym)
    # dequantised latents are symbol + mean
    assert np.abs((out + means.astype(np.float64)) - y)[10:].max() <= 0.5 + 1e-3


def test_extreme_int32_values_round_trip(gauss):
    rng = np.random.default_rng(1)
    sym = rng.integers(I32.min, I32.max, 5000, endpoint=True, dtype=np.int64).astype(np.int32)
    sym[:6] = [I32.min, I32.max, I32.min + 1, I32.max - 1, 0, -1]
    idx = rng.integers(0, 64, sym.size).astype(np.uint8)
    idx[:2] = [0, 63]
    np.testing.assert_array_equal(gauss.decode(gauss.encode(sym, idx), idx), sym)
    sym2 = sym.reshape(50, 100)
    idx2 = idx.reshape(50, 100)
    assert gauss.decode(gauss.encode(sym2, idx2), idx2).shape == (50, 100)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sym=hnp.arrays(np.int32, st.integers(0, 300), elements=st.one_of(
        st.integers(-20, 20), st.integers(I32.min, I32.max))),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_property(sym, seed):
    coder = _small_gauss()
    idx = np.random.default_rng(seed).integers(0, coder.tables.n_tables, sym.size).astype(np.uint8)
    data = coder.encode(sym, idx)
    assert len(data) % 4 == 0
    np.testing.assert_array_equal(coder.decode(data, idx), sym)


_SMALL = {}


def _small_gauss() -> GaussianConditionalCoder:
    if "g" not in _SMALL:
        _SMALL["g"] = GaussianConditionalCoder.build(default_scale_table(0.11, 20.0, 16), tail_mass=1e-4)
    return _SMALL["g"]


def test_empty_and_single(gauss):
    for n in (0, 1, 2, 3, 5, 17):
        sym = np.arange(n, dtype=np.int32) - 2
        idx = np.full(n, 5, np.uint8)
        np.testing.assert_array_equal(gauss.decode(gauss.encode(sym, idx), idx), sym)


def test_size_close_to_information_content(gauss):
    rng = np.random.default_rng(2)
    n = 1_000_000
    scales = np.exp(rng.uniform(np.log(0.05), np.log(30), n))
    idx = gauss.indexes(scales)
    sym = np.rint(rng.standard_normal(n) * scales).astype(np.int32)
    sym[:50] = rng.integers(-10**6, 10**6, 50)   # some escapes
    data = gauss.encode(sym, idx)
    info = gauss.information_content(sym, idx)
    assert len(data) * 8 <= 1.005 * info


def test_escape_information_content():
    coder = _small_gauss()
    idx = np.zeros(3, np.uint8)
    base = coder.information_content(np.zeros(3, np.int32), idx)
    far = coder.information_content(np.array([0, 0, I32.max], np.int32), idx)
    assert 30 < far - base < 80   # escape symbol + length + ~31 mantissa bits


def test_scale_indexes_match_compressai_definition():
    table = default_scale_table()
    np.testing.assert_allclose(table[[0, -1]], [0.11, 256.0])
    scales = np.concatenate([table, table * (1 + 1e-7), table * (1 - 1e-7), [0, -1, 1e9, np.nan]]).astype(np.float32)
    # CompressAI: start at the last index and subtract one per table[:-1] entry >= scale.
    ref = np.full(scales.shape, len(table) - 1)
    for s in table[:-1]:
        ref -= (scales.astype(np.float64) <= s).astype(int)
    ref[-1] = len(table) - 1  # NaN compares false everywhere in CompressAI as well
    np.testing.assert_array_equal(scale_indexes(scales, table), ref)


def test_index_checksum():
    a = np.arange(100, dtype=np.uint8) % 64
    assert index_checksum(a) == index_checksum(a.astype(np.int64))
    assert 0 <= index_checksum(a) <= 0xFFFF
    b = a.copy()
    b[50] += 1
    assert index_checksum(a) != index_checksum(b)
    assert index_checksum(a[:50], a[50:]) == index_checksum(a)


def test_wrong_indexes_fail_loudly_or_checksum_differs(gauss):
    rng = np.random.default_rng(3)
    n = 5000
    scales = np.exp(rng.uniform(np.log(0.2), np.log(20), n))
    idx = gauss.indexes(scales)
    sym = np.rint(rng.standard_normal(n) * scales).astype(np.int32)
    data = gauss.encode(sym, idx)
    drift = idx.copy()
    drift[::97] = np.minimum(drift[::97] + 1, 63)  # a decoder whose scales moved a bin
    assert index_checksum(drift) != index_checksum(idx)
    try:
        out = gauss.decode(data, drift)
    except TamcFormatError:
        return
    assert not np.array_equal(out, sym)


def test_truncated_or_garbage_streams(gauss):
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 64, 3000).astype(np.uint8)
    sym = np.rint(rng.standard_normal(3000) * gauss.scale_table[idx]).astype(np.int32)
    data = gauss.encode(sym, idx)
    with pytest.raises(TamcFormatError, match="32-bit words"):
        gauss.decode(data[:-1], idx)
    with pytest.raises(TamcFormatError, match="left after"):
        gauss.decode(data + b"\1\2\3\4" * 8, idx)
    for seed in range(20):
        junk = np.random.default_rng(seed).integers(0, 256, len(data), dtype=np.uint8).tobytes()
        try:
            out = gauss.decode(junk, idx)
        except TamcFormatError:
            continue
        assert out.dtype == np.int32 and out.shape == idx.shape


def test_quantize_symbols():
    np.testing.assert_array_equal(quantize_symbols([0.5, 1.5, -0.5, 2.49], [0, 0, 0, 0]), [0, 2, 0, 2])
    with pytest.raises(ValueError):
        quantize_symbols([np.nan], 0)
    with pytest.raises(ValueError):
        quantize_symbols([3e9], 0)


def test_tables_are_integers_and_serialise(gauss, tmp_path):
    t = gauss.tables
    assert t.pmfs.dtype == np.int32 and (t.pmfs.sum(axis=1) == 1 << t.precision).all()
    path = tmp_path / "tables.npz"
    np.savez(path, **gauss.to_arrays("latent/"))
    back = GaussianConditionalCoder.from_arrays(np.load(path), "latent/")
    np.testing.assert_array_equal(back.tables.pmfs, t.pmfs)
    np.testing.assert_array_equal(back.scale_table, gauss.scale_table)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 64, 1000).astype(np.uint8)
    sym = rng.integers(-100, 100, 1000).astype(np.int32)
    assert back.encode(sym, idx) == gauss.encode(sym, idx)
    with pytest.raises(TamcModelError, match="missing"):
        GaussianConditionalCoder.from_arrays({"latent/scale_table": gauss.scale_table}, "latent/")


@pytest.mark.parametrize("break_it, msg", [
    (lambda d: d.update(pmfs=d["pmfs"] * 2), "sum to"),
    (lambda d: d.update(lengths=d["lengths"] + 10**6), "used entries"),
    (lambda d: d.update(precision=np.array(30)), "precision"),
    (lambda d: d.update(offsets=d["offsets"][:-1]), "expected"),
])
def test_table_validation(gauss, break_it, msg):
    d = gauss.tables.to_arrays()
    break_it(d)
    with pytest.raises(TamcModelError, match=msg):
        TableCoder.from_arrays(d)


def test_factorized_round_trip_and_escapes():
    rng = np.random.default_rng(6)
    pmfs = [quantize_pmf(np.append(np.exp(-np.abs(np.arange(-5, 6)) / (c + 1)), 1e-3), 16) for c in range(8)]
    coder = FactorizedCoder(TableCoder(np.array(pmfs), np.full(8, 12), np.full(8, -5)))
    z = rng.integers(-8, 9, (2, 8, 5, 7)).astype(np.int32)
    z[0, 3, 0, 0] = I32.min
    z[1, 7, 4, 6] = I32.max
    data = coder.encode(z, channel_axis=1)
    np.testing.assert_array_equal(coder.decode(data, z.shape, channel_axis=1), z)
    chw = z[0]
    np.testing.assert_array_equal(coder.decode(coder.encode(chw), chw.shape), chw)
    with pytest.raises(ValueError, match="channel axis"):
        coder.encode(z, channel_axis=0)
    back = FactorizedCoder.from_arrays(coder.to_arrays("h/"), "h/")
    assert back.encode(chw) == coder.encode(chw)


def test_factorized_from_quantized_cdf():
    pmf = np.array([[1000, 30000, 30000, 4536, 0], [16384, 16384, 16384, 16383, 1]])
    lengths = np.array([4, 5])
    cdf = np.zeros((2, 7), np.int64)
    for c in range(2):
        cdf[c, 1 : lengths[c] + 1] = np.cumsum(pmf[c, : lengths[c]])
    coder = FactorizedCoder.from_quantized_cdf(cdf, lengths + 1, np.array([-1, -2]))
    z = np.array([[[-1, 0, 1, 5]], [[-2, -1, 0, 1]]], np.int32)
    np.testing.assert_array_equal(coder.decode(coder.encode(z), z.shape), z)
    bad = cdf.copy()
    bad[0, 1] = 5
    bad[0, lengths[0]] = 1
    with pytest.raises(TamcModelError):
        FactorizedCoder.from_quantized_cdf(bad, lengths + 1, np.array([-1, -2]))


def test_escape_length_table_is_fixed():
    # Part of format v1: changing it needs a new format version.
    assert ESCAPE_LENGTH_PMF.sum() == 1 << 16 and ESCAPE_LENGTH_PMF.size == 40
    assert list(ESCAPE_LENGTH_PMF[:3]) == [32768 - 23, 16384, 8192]


def test_no_torch_import():
    import subprocess
    import sys
    code = "import sys, tamc_codec.entropy; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
