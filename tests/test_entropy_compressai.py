"""Factorised tables taken from a CompressAI EntropyBottleneck (the reference).

The only test module that imports compressai (about 9 s here), so it is kept to
one module and skipped where compressai is not installed.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
entropy_models = pytest.importorskip("compressai.entropy_models")

from tamc_codec.entropy import FactorizedCoder  # noqa: E402


def test_tables_from_entropy_bottleneck_round_trip_and_size():
    torch.manual_seed(0)
    channels = 16
    eb = entropy_models.EntropyBottleneck(channels)
    with torch.no_grad():  # make the channels' densities differ, as after training
        for p in eb.parameters():
            p.add_(0.3 * torch.randn_like(p))
    eb.update(force=True)
    x = torch.randn(2, channels, 24, 24) * torch.linspace(0.5, 6, channels).view(1, channels, 1, 1)
    x[0, 0, 0, 0] = 500.0  # far outside the tables: escape path on both sides

    coder = FactorizedCoder.from_quantized_cdf(
        eb._quantized_cdf.numpy(), eb._cdf_length.numpy(), eb._offset.numpy(), precision=16)
    medians = eb._get_medians().detach().view(1, channels, 1, 1)
    symbols = torch.round(x - medians).int().numpy()

    data = coder.encode(symbols, channel_axis=1)
    np.testing.assert_array_equal(coder.decode(data, symbols.shape, channel_axis=1), symbols)

    ours = len(data)
    theirs = sum(len(s) for s in eb.compress(x))
    assert abs(ours - theirs) <= 0.03 * theirs + 16, (ours, theirs)
    assert ours * 8 <= 1.005 * coder.information_content(symbols, channel_axis=1) + 64

    # CompressAI decodes its own stream to the same symbols we coded.
    back = eb.decompress(eb.compress(x), x.shape[-2:])
    np.testing.assert_array_equal(torch.round(back - medians).int().numpy(), symbols)
