"""Entropy coding and container benchmark: size overhead and speed.

    python benchmarks/bench_entropy.py [--symbols 2000000] [--repeat 3]

Prints, and writes to benchmarks/results/entropy.json:
- coded payload / information content under the tables actually used
  (sum of -log2 p of the coded symbols, escapes included); target <= 1.005;
- container overhead (file size minus the entropy-coded sub-stream bytes: header,
  index, CRCs, per-layer framing) against 48 + 24 * layers bytes;
- encode and decode throughput in million symbols per second (best of --repeat
  runs, one thread), target >= 10.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import constriction
import numpy as np

from tamc_codec.bitstream import Header, LayerSpec, TamcReader, pack, pack_substreams, unpack_substreams
from tamc_codec.entropy import FactorizedCoder, GaussianConditionalCoder, TableCoder, index_checksum, quantize_pmf, quantize_symbols

RESULTS = Path(__file__).resolve().parent / "results" / "entropy.json"


def _best(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def synthetic_latents(rng, n):
    """Latents shaped like a trained hyperprior model's: most scales small, some large."""
    scales = np.exp(rng.normal(np.log(0.6), 1.2, n)).clip(0.02, 300).astype(np.float32)
    means = rng.normal(0, 2, n).astype(np.float32)
    y = means + rng.standard_normal(n).astype(np.float32) * scales
    y[::10_000] += np.float32(5_000)  # rare outliers, so the escape path is part of the measurement
    return y, means, scales


def hyper_coder(channels=192):
    pmfs = []
    for c in range(channels):
        b = 0.5 + 4.0 * c / channels
        p = np.exp(-np.abs(np.arange(-40, 41)) / b)
        pmfs.append(quantize_pmf(np.append(p, 1e-6), 16))
    return FactorizedCoder(TableCoder(np.array(pmfs), np.full(channels, 82), np.full(channels, -40)))


def bench_gaussian(n, repeat):
    rng = np.random.default_rng(0)
    gauss = GaussianConditionalCoder.build()
    y, means, scales = synthetic_latents(rng, n)
    sym = quantize_symbols(y, means)
    t_idx, idx = _best(lambda: gauss.indexes(scales), repeat)
    gauss.encode(sym[:100], idx[:100])  # build the models outside the timing
    t_enc, data = _best(lambda: gauss.encode(sym, idx), repeat)
    t_dec, out = _best(lambda: gauss.decode(data, idx), repeat)
    assert np.array_equal(out, sym)
    info = gauss.information_content(sym, idx)
    escapes = int(((sym < gauss.tables.offsets[idx]) | (sym > -gauss.tables.offsets[idx])).sum())
    return {
        "symbols": n,
        "escapes": escapes,
        "bytes": len(data),
        "information_content_bytes": info / 8,
        "size_ratio": len(data) * 8 / info,
        "bits_per_symbol": len(data) * 8 / n,
        "encode_msym_s": n / t_enc / 1e6,
        "decode_msym_s": n / t_dec / 1e6,
        "scale_index_msym_s": n / t_idx / 1e6,
    }


def bench_factorized(n, repeat):
    rng = np.random.default_rng(1)
    coder = hyper_coder()
    c = coder.channels
    hw = max(1, n // c)
    b = (0.5 + 4.0 * np.arange(c) / c)[:, None]
    z = np.rint(rng.laplace(0, b, (c, hw))).astype(np.int32)[:, :, None]
    coder.encode(z[:, :1], channel_axis=0)
    t_enc, data = _best(lambda: coder.encode(z, channel_axis=0), repeat)
    t_dec, out = _best(lambda: coder.decode(data, z.shape, channel_axis=0), repeat)
    assert np.array_equal(out, z)
    info = coder.information_content(z, channel_axis=0)
    return {
        "symbols": int(z.size),
        "bytes": len(data),
        "information_content_bytes": info / 8,
        "size_ratio": len(data) * 8 / info,
        "encode_msym_s": z.size / t_enc / 1e6,
        "decode_msym_s": z.size / t_dec / 1e6,
    }


def bench_container(layers_list=(1, 3, 6), side=512):
    """Files laid out like the codec's: per layer a hyper stream and two checkerboard halves."""
    rng = np.random.default_rng(2)
    gauss = GaussianConditionalCoder.build()
    hyper = hyper_coder(128)
    out = []
    for n_layers in layers_list:
        layers, coded = [], 0
        for i in range(n_layers):
            y, means, scales = synthetic_latents(rng, 192 * (side // 16) ** 2)
            sym = quantize_symbols(y, means).reshape(192, side // 16, side // 16)
            idx = gauss.indexes(scales).reshape(sym.shape)
            z = np.rint(rng.laplace(0, 1.0, (128, side // 64, side // 64))).astype(np.int32)
            halves = [(sym[:, ::2], idx[:, ::2]), (sym[:, 1::2], idx[:, 1::2])]
            streams = [hyper.encode(z, channel_axis=0)] + [gauss.encode(s, ix) for s, ix in halves]
            coded += sum(len(s) for s in streams)
            payload = pack_substreams(streams, index_checksum(*(ix for _, ix in halves)))
            layers.append((LayerSpec(group=i, parent=None if i == 0 else (i - 1) // 2, tasks=1 << i), payload))
        header = Header(model_id=bytes(16), height=side, width=side, padded_height=side, padded_width=side,
                        quality=4, tasks=(1 << n_layers) - 1)
        data = pack(header, layers)
        reader = TamcReader(data)
        read = reader.layers_for_task(n_layers - 1)
        for i in read:
            unpack_substreams(reader.read_layer(i))
        overhead = len(data) - coded
        out.append({
            "layers": n_layers,
            "file_bytes": len(data),
            "coded_bytes": coded,
            "overhead_bytes": overhead,
            "overhead_limit": 48 + 24 * n_layers,
            "header_and_index_bytes": reader.header_size,
            "bpp_whole_file": len(data) * 8 / side**2,
            "bytes_read_for_last_task": reader.bytes_read,
        })
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    res = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "numpy": np.__version__, "constriction": getattr(constriction, "__version__", "0.5.0")},
        "gaussian": bench_gaussian(args.symbols, args.repeat),
        "factorized": bench_factorized(args.symbols // 4, args.repeat),
        "container": bench_container(),
    }
    g, f = res["gaussian"], res["factorized"]
    print(f"Gaussian conditional, {g['symbols']:,} symbols ({g['escapes']} escapes), {g['bits_per_symbol']:.3f} bit/symbol")
    print(f"  size: {g['bytes']:,} B vs information content {g['information_content_bytes']:,.0f} B "
          f"-> ratio {g['size_ratio']:.5f} (target <= 1.005)")
    print(f"  speed: encode {g['encode_msym_s']:.1f} Msym/s, decode {g['decode_msym_s']:.1f} Msym/s (target >= 10); "
          f"scale indexes {g['scale_index_msym_s']:.0f} Msym/s")
    print(f"Factorised (hyper), {f['symbols']:,} symbols: ratio {f['size_ratio']:.5f}, "
          f"encode {f['encode_msym_s']:.1f} Msym/s, decode {f['decode_msym_s']:.1f} Msym/s")
    print("Container (512x512, per layer: hyper + 2 checkerboard halves)")
    for c in res["container"]:
        ok = "ok" if c["overhead_bytes"] <= c["overhead_limit"] else "OVER"
        print(f"  {c['layers']} layers: file {c['file_bytes']:,} B, overhead {c['overhead_bytes']} B "
              f"(limit {c['overhead_limit']}, {ok}), header+index {c['header_and_index_bytes']} B, "
              f"{c['bpp_whole_file']:.3f} bpp whole file; one task reads {c['bytes_read_for_last_task']:,} B")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
