"""The shipped model (models/default) on the shipped sample: it loads, and every task round-trips
through a real file exactly as the encoder assumed, at the lowest and the highest quality."""
from pathlib import Path

import numpy as np
import pytest

from tamc_codec import runtime
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
    rt = runtime.load_model(str(MODEL))
    sizes = []
    for q in (1, rt.qualities):
        enc = runtime.encode_image(image, "all", q, str(MODEL))
        sizes.append(len(enc.data))
        for t in TASKS:
            d = runtime.decode_task(enc.data, t, str(MODEL))
            assert d.output.shape[:2] == image.shape[:2]
            pred = runtime.task_prediction(rt, t, enc.latents, 200, 264)
            if rt.is_picture(rt.serving[t]):
                # a picture layer's task is a filter of the decoded picture (issue 30); the normalised
                # prediction the bench scores goes back to it up to float rounding
                from tamc_codec.runtime.picture import picture_output

                np.testing.assert_array_equal(d.output, picture_output(t, enc.latents[rt.serving[t]]))
                np.testing.assert_allclose(runtime.raw_output(t, pred, rt), d.output, rtol=1e-5, atol=1e-7)
            else:
                np.testing.assert_array_equal(d.output, runtime.raw_output(t, pred, rt))
    assert sizes[0] < sizes[1]


def test_shipped_model_carries_its_own_trivial_losses():
    """`tamc bench` normalises by reference.json; a re-export that forgot to refresh it would
    silently lose the normalisation (its model id would no longer match)."""
    rt = runtime.load_model(str(MODEL))
    assert set(rt.trivial_loss) == set(rt.serving)
    assert all(v > 0 for v in rt.trivial_loss.values())


def test_shipped_model_decodes_scene_tasks_of_a_large_picture_at_scene_scale():
    """The 512² sample: seg's group analyses it at its scene scale (128², a quarter of its sides:
    CONTRACT.md, scene scale), and the file decodes to what the encoder predicted."""
    from PIL import Image

    image = np.asarray(Image.open(SAMPLE).convert("RGB"))
    rt = runtime.load_model(str(MODEL))
    h, w = image.shape[:2]
    assert rt.scene_size == 128
    assert rt.factor(rt.serving["seg"], h, w) == 4 and rt.task_factor("seg", h, w) == 4
    enc = runtime.encode_image(image, "seg", rt.qualities, rt)
    pred = runtime.task_prediction(rt, "seg", enc.latents, h, w)
    np.testing.assert_array_equal(runtime.decode_task(enc.data, "seg", rt).output, runtime.raw_output("seg", pred, rt))


def test_shipped_model_codes_the_picture_by_avif_and_each_picture_task_reads_its_layer_alone():
    """Issue 30: edge and keypoint come from one AVIF picture layer, rgb from another (each at its
    tasks' best scale), both DAG roots; a picture task reads its layer and the header only, and a
    scene task never reads either."""
    from PIL import Image

    from tamc_codec.bitstream import CODING_AVIF, TamcReader
    from tamc_codec.tasks.metrics import psnr

    rt = runtime.load_model(str(MODEL))
    assert set(rt.pictures) == {"edge+keypoint", "rgb"}
    assert {rt.serving["edge"], rt.serving["keypoint"]} == {"edge+keypoint"} and rt.serving["rgb"] == "rgb"
    assert all(rt.parents[g] is None for g in rt.pictures)
    image = np.asarray(Image.open(SAMPLE).convert("RGB"))
    enc = runtime.encode_image(image, "all", rt.qualities, rt)
    with TamcReader(enc.data) as r:
        assert r.header.version == 3 and r.header.made_by(rt.id)
        pictures = {rt.groups[e.group]: e for e in r.layers if e.coding == CODING_AVIF}
        assert set(pictures) == set(rt.pictures)
        for t in ("edge", "keypoint", "rgb"):
            assert r.layers_for_task(t) == [pictures[rt.serving[t]].index]
        assert all(e.index not in r.layers_for_task(t) for e in pictures.values() for t in ("seg", "depth", "normal"))
    for t in ("edge", "keypoint", "rgb"):
        d = runtime.decode_task(enc.data, t, rt)
        assert d.bytes_read == r.header_size + pictures[rt.serving[t]].length
    rgb = runtime.decode_task(enc.data, "rgb", rt).output
    assert psnr(rgb.astype(float), image.astype(float)) > 35  # the default quality: a picture a person accepts


def test_shipped_model_decodes_a_scene_task_from_its_own_layer():
    """Issue 28: a scene task's receiver reads the scene layer alone, never a layer that exists for
    edge, keypoint or rgb, and that layer is a small part of a file carrying every task."""
    from PIL import Image

    from tamc_codec.bitstream import TamcReader

    rt = runtime.load_model(str(MODEL))
    # the scene layer codes no hyper-latent (docs/MODEL.md, fixed hyper-latents): two sub-streams
    assert rt.manifest["fixed_hyper"] == [rt.serving["seg"]]
    image = np.asarray(Image.open(SAMPLE).convert("RGB"))
    enc = runtime.encode_image(image, "all", rt.qualities, rt)
    assert [len(layer["substreams"]) for layer in enc.layers if layer["group"] == rt.serving["seg"]] == [2]
    picture_groups = {rt.serving[t] for t in ("edge", "keypoint", "rgb")}
    with TamcReader(enc.data) as r:
        for t in ("seg", "depth", "normal"):
            read = r.layers_for_task(t)
            assert not {rt.groups[r.layers[i].group] for i in read} & picture_groups
            assert r.header_size + sum(r.layers[i].length for i in read) < 0.1 * len(enc.data)
