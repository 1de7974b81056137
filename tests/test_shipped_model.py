"""The shipped model (models/default) on the shipped sample: it loads, and every task round-trips
through a real file exactly as the encoder assumed, at the lowest and the highest quality."""
from pathlib import Path

import numpy as np
import pytest

from tamc_codec import codec
from tamc_codec.contract import TASKS

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default"
SAMPLE = ROOT / "samples" / "room.png"


@pytest.fixture(scope="module")
def image():
    from PIL import Image

    # not a multiple of the padding, so the padded picture differs from the real one
    return np.asarray(Image.open(SAMPLE).convert("RGB"))[:200, :264]


def test_shipped_model_round_trips_every_task(image):
    rt = codec.load_model(str(MODEL))
    sizes = []
    for q in (1, rt.qualities):
        enc = codec.encode_image(image, "all", q, str(MODEL))
        sizes.append(len(enc.data))
        for t in TASKS:
            d = codec.decode_task(enc.data, t, str(MODEL))
            assert d.output.shape[:2] == image.shape[:2]
            pred = rt.run(None, t, 0, y=enc.latents[rt.serving[t]])[0][0][:, :200, :264]
            np.testing.assert_array_equal(d.output, codec._raw_output(t, pred, rt))
    assert sizes[0] < sizes[1]


def test_shipped_model_carries_its_own_trivial_losses():
    """`tamc bench` normalises by reference.json; a re-export that forgot to refresh it would
    silently lose the normalisation (its model id would no longer match)."""
    rt = codec.load_model(str(MODEL))
    assert set(rt.trivial_loss) == set(rt.serving)
    assert all(v > 0 for v in rt.trivial_loss.values())
