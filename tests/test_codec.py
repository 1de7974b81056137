"""The codec end to end on a tiny exported model: round trips, partial decoding, determinism, errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tamc_codec import runtime
from tamc_codec.bitstream import TamcReader
from tamc_codec.contract import TASKS
from tamc_codec.errors import TamcFormatError, TamcInputError, TamcModelError


@pytest.fixture(scope="module")
def image():
    from tamc_codec.data import synth, textures

    return synth.render(synth.build_scene(7, textures.PHOTO_SPLITS["val"]), 96)["rgb"][:80, :90]


def test_round_trip_every_task_and_quality(tiny_model, image):
    rt = runtime.load_model(str(tiny_model))
    for q in range(1, rt.qualities + 1):
        enc = runtime.encode_image(image, "all", q, str(tiny_model))
        assert enc.bpp > 0
        for t in TASKS:
            d = runtime.decode_task(enc.data, t, str(tiny_model))
            assert d.output.shape[:2] == (80, 90)
            expected = {"seg": np.uint8, "rgb": np.uint8}.get(t, np.float32)
            assert d.output.dtype == expected
            # what the decoder reconstructs is exactly what the encoder assumed
            g = rt.serving[t]
            pred = rt.run(None, t, 0, y=enc.latents[g])[0][0][:, :80, :90]
            np.testing.assert_array_equal(d.output, runtime.raw_output(t, pred, rt))
    sizes = [len(runtime.encode_image(image, "all", q, str(tiny_model)).data) for q in (1, rt.qualities)]
    assert sizes[0] < sizes[1]


def test_partial_decoding_reads_and_needs_only_its_layers(tiny_model, image):
    enc = runtime.encode_image(image, "all", 2, str(tiny_model))
    rt = runtime.load_model(str(tiny_model))
    with TamcReader(enc.data) as r:
        root = r.layers_for_task("seg")
        unneeded = [e for e in r.layers if e.index not in root]
        assert unneeded
    seg = runtime.decode_task(enc.data, "seg", str(tiny_model))
    assert seg.bytes_read < seg.file_size
    corrupted = bytearray(enc.data)
    for e in unneeded:
        for k in range(e.offset, e.offset + e.length):
            corrupted[k] ^= 0x5A
    again = runtime.decode_task(bytes(corrupted), "seg", str(tiny_model))
    np.testing.assert_array_equal(again.output, seg.output)
    other = [t for t in TASKS if rt.serving[t] == rt.groups[unneeded[0].group]][0]
    with pytest.raises(TamcFormatError):
        runtime.decode_task(bytes(corrupted), other, str(tiny_model))


def test_only_needed_groups_are_encoded(tiny_model, image):
    enc = runtime.encode_image(image, ["keypoint"], 3, str(tiny_model))
    assert [l["group"] for l in enc.layers] == ["seg+depth+normal", "edge+keypoint+rgb"]
    assert runtime.decode_task(enc.data, "seg", str(tiny_model)).output.shape == (80, 90)  # the ancestor came along
    with pytest.raises(TamcInputError, match="not in this file.*keypoint"):
        runtime.decode_task(enc.data, "depth", str(tiny_model))


def test_deterministic_across_runs_and_thread_counts(tiny_model, image, tmp_path):
    a = runtime.encode_image(image, "all", 2, str(tiny_model)).data
    assert runtime.encode_image(image, "all", 2, str(tiny_model)).data == a
    np.save(tmp_path / "img.npy", image)
    prog = ("import sys, numpy as np; from tamc_codec import runtime; "
            f"sys.stdout.buffer.write(runtime.encode_image(np.load(r'{tmp_path / 'img.npy'}'), 'all', 2, r'{tiny_model}').data)")
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, TAMC_THREADS=threads, OMP_NUM_THREADS=threads)
        outs.append(subprocess.run([sys.executable, "-c", prog], capture_output=True, env=env, timeout=120).stdout)
    assert outs[0] == outs[1] == a


def test_api_and_errors(tiny_model, image):
    import tamc_codec

    data = tamc_codec.encode(image, tasks="seg,depth", quality=1, model=str(tiny_model))
    depth = tamc_codec.decode(data, task="depth", model=str(tiny_model))
    assert depth.shape == (80, 90) and np.isfinite(depth).all() and depth.min() >= 0
    with pytest.raises(TamcInputError, match="unknown task"):
        runtime.encode_image(image, "seg,sky", 1, str(tiny_model))
    with pytest.raises(TamcInputError, match="quality"):
        runtime.encode_image(image, "seg", 99, str(tiny_model))
    with pytest.raises(TamcInputError, match="empty"):
        runtime.encode_image(np.zeros((0, 5, 3), np.uint8), "seg", 1, str(tiny_model))
    with pytest.raises(TamcFormatError):
        runtime.decode_task(data[:-3], "seg", str(tiny_model))
    other = bytearray(data)
    other[7] ^= 1  # model id byte: the header CRC catches it before any model lookup
    with pytest.raises(TamcFormatError):
        runtime.decode_task(bytes(other), "seg", str(tiny_model))


def test_file_from_another_model_is_named(tiny_model, image, tmp_path, monkeypatch):
    from tamc_codec.bitstream import Header, pack
    from tamc_codec.bitstream.container import TamcReader as R

    data = runtime.encode_image(image, "seg", 1, str(tiny_model)).data
    with R(data) as r:
        hdr, layers = r.header, [(e, r.read_layer(e.index)) for e in r.layers]
    from tamc_codec.bitstream import LayerSpec

    rt = runtime.load_model(str(tiny_model))
    assert hdr.version == 3 and hdr.model_id == bytes.fromhex(rt.id)[:4] and hdr.made_by(rt.id)
    fake = pack(Header(model_id=bytes(16), height=hdr.height, width=hdr.width, quality=hdr.quality, tasks=hdr.tasks),
                [(LayerSpec(e.group, e.parent, e.tasks), b) for e, b in layers])
    # the file stores the id's first 4 bytes: the error names them, and the model's whole id
    with pytest.raises(TamcModelError, match=f"made by model 00000000… .*first 4 bytes.*not by {rt.id}"):
        runtime.decode_task(fake, "seg", str(tiny_model))
    # a version-2 file names the whole id
    old = pack(Header(model_id=bytes(16), height=hdr.height, width=hdr.width, quality=hdr.quality, tasks=hdr.tasks,
                      padded_height=enc_padded(rt, hdr), padded_width=enc_padded(rt, hdr, 1), version=2),
               [(LayerSpec(e.group, e.parent, e.tasks), b) for e, b in layers])
    with pytest.raises(TamcModelError, match=f"made by model {'0' * 32}, not by {rt.id}"):
        runtime.decode_task(old, "seg", str(tiny_model))
    # the file's id prefix is enough to find the model that made it among installed ones
    import shutil

    from tamc_codec.runtime.model import MODEL_PATH_ENV

    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path / "models"))
    assert runtime.load_model(None, model_id=hdr.model_id_hex).id == rt.id
    np.testing.assert_array_equal(runtime.decode_task(data, "seg").output, runtime.decode_task(data, "seg", rt).output)
    with pytest.raises(TamcModelError, match="made by model 00000000, which is not installed"):
        runtime.decode_task(fake, "seg")


def enc_padded(rt, hdr, side: int = 0) -> int:
    return runtime.padded_size(rt, hdr.height, hdr.width)[side]


def test_exported_graphs_match_torch(tiny_model, tmp_path):
    torch = pytest.importorskip("torch")
    from tamc_codec.train.export import round_to_float16
    from tamc_codec.train.stage2 import load_codec_model

    model = load_codec_model(tiny_model.parent / "s2" / "codec.pt")
    round_to_float16(model)
    rt = runtime.load_model(str(tiny_model))
    x = np.random.default_rng(0).random((1, 3, 64, 128), dtype=np.float32)
    for g in rt.groups:
        ref = model.base.encoders[g.replace("+", "_")](torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(rt.run(g, "analysis", 1, image=x)[0], ref, atol=1e-4, rtol=1e-3)
    y = np.random.default_rng(1).standard_normal((1, 8, 4, 8)).astype(np.float32)
    for t, g in rt.serving.items():
        ref = model.base.decode(g, t, torch.from_numpy(y)).detach().numpy()
        np.testing.assert_allclose(rt.run(None, t, 1, y=y)[0], ref, atol=1e-4, rtol=1e-3)


def test_export_over_an_older_model_removes_its_stale_graphs(tiny_model, tmp_path):
    pytest.importorskip("torch")
    import json
    import shutil

    from tamc_codec.train.export import export_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "g9_analysis.onnx").write_bytes(b"old graph")
    (folder / "README.md").write_text("the user's card")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["g9_analysis.onnx"] = "0" * 64
    manifest["files"]["../outside.txt"] = "0" * 64  # a damaged manifest must not reach outside
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "outside.txt").write_text("keep")
    new = export_model(tiny_model.parent / "s2" / "codec.pt", folder, name="tiny")
    assert not (folder / "g9_analysis.onnx").exists()
    assert (folder / "README.md").read_text() == "the user's card" and (tmp_path / "outside.txt").exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([*new["files"], "manifest.json", "README.md",
                                                               "reference.json"])
    assert runtime.load_model(str(folder)).id == runtime.load_model(str(tiny_model)).id  # same weights, same model


def test_lowest_blend_moves_q1_between_the_trained_qualities(tiny_model, tmp_path, image):
    """--lowest-blend: q1's gains sit between the trained q1 and q2 in log space, the manifest
    says so (and so has its own id), files round-trip, and q2..Q are untouched."""
    pytest.importorskip("torch")
    from tamc_codec.errors import TamcInputError
    from tamc_codec.train.export import export_model

    codec_pt = tiny_model.parent / "s2" / "codec.pt"
    m = export_model(codec_pt, tmp_path / "blend", name="tiny", lowest_blend=0.5)
    assert m["qualities"][0]["gain_blend"] == 0.5 and all("gain_blend" not in q for q in m["qualities"][1:])
    old, new = runtime.load_model(str(tiny_model)), runtime.load_model(str(tmp_path / "blend"))
    assert new.id != old.id
    for g in new.groups:
        g1, i1 = old.gains(g, 1)
        g2, i2 = old.gains(g, 2)
        nb, ni = new.gains(g, 1)
        np.testing.assert_allclose(nb, np.sqrt(g1 * g2), rtol=1e-5)
        np.testing.assert_allclose(ni, np.sqrt(i1 * i2), rtol=1e-5)
        for q in range(2, new.qualities + 1):
            np.testing.assert_array_equal(new.gains(g, q)[0], old.gains(g, q)[0])
    enc = runtime.encode_image(image, "all", 1, str(tmp_path / "blend"))
    task = next(iter(new.serving))
    assert runtime.decode_task(enc.data, task, str(tmp_path / "blend")).output.shape[:2] == (80, 90)
    for bad in (-0.1, 1.0):
        with pytest.raises(TamcInputError, match="lowest blend"):
            export_model(codec_pt, tmp_path / "bad", name="tiny", lowest_blend=bad)
    assert not (tmp_path / "bad").exists()


def test_quantised_parent_input_round_trips_and_is_recorded(tmp_path_factory, image):
    """A model whose children see the parent's quantised latent codes exactly the same way on
    both sides, and says so in its manifest (absent = dequantised, as older models)."""
    pytest.importorskip("torch")
    from model_fixture import PARENTS, build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny_quantised"), parent_input="quantised")
    rt = runtime.load_model(str(folder))
    assert rt.parent_input == "quantised" and rt.manifest["parent_input"] == "quantised"
    child = next(g for g, p in PARENTS.items() if p)
    task = next(t for t, g in rt.serving.items() if g == child)
    for q in (1, rt.qualities):
        enc = runtime.encode_image(image, "all", q, str(folder))
        d = runtime.decode_task(enc.data, task, str(folder))
        pred = rt.run(None, task, 0, y=enc.latents[child])[0][0][:, :80, :90]
        np.testing.assert_array_equal(d.output, runtime.raw_output(task, pred, rt))


def test_unknown_parent_input_is_a_model_error(tiny_model, tmp_path):
    import json
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    m = json.loads((folder / "manifest.json").read_text())
    assert "parent_input" not in m  # the default form is not written, so older ids stay valid
    from tamc_codec.runtime.manifest import model_id

    m["parent_input"] = "sideways"
    m["model_id"] = model_id(m)  # a consistent manifest, so the value itself is what is refused
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(TamcModelError, match="parent_input"):
        runtime.load_model(str(folder))


def _with_scene_scale(tiny_model, folder, groups, size, tasks=(), keep_reference=True):
    from model_fixture import with_scene_scale

    return runtime.load_model(str(with_scene_scale(tiny_model, folder, groups, size, tasks, keep_reference)))


@pytest.mark.parametrize("scaled", ["seg+depth+normal", "depth+edge"])
def test_scene_scale_groups_code_a_smaller_picture_bit_exactly(tiny_model, image, tmp_path, scaled):
    """The DAG's root at half scale (its children see its context repeated onto their grid), or
    a child at half scale (it sees its parent's context as block means): either way every task
    decodes to what the encoder assumed, at the picture's size, from a smaller layer."""
    full = runtime.load_model(str(tiny_model))
    rt = _with_scene_scale(tiny_model, tmp_path / "m", [scaled], 45)  # 80 x 90 picture: f = 2
    assert rt.factor(scaled, 80, 90) == 2 and rt.pad_multiple(80, 90) == 2 * full.pad
    enc = runtime.encode_image(image, "all", rt.qualities, rt)
    ref = runtime.encode_image(image, "all", rt.qualities, full)
    assert enc.latents[scaled].shape[-2:] == (128 // 32, 128 // 32)  # padded to 128, then halved, / 16
    others = [g for g in rt.groups if g != scaled]
    assert all(enc.latents[g].shape[-2:] == (128 // 16, 128 // 16) for g in others)
    size = {e["group"]: e["bytes"] for e in enc.layers}
    size_full = {e["group"]: e["bytes"] for e in ref.layers}
    assert size[scaled] < size_full[scaled]
    for task in TASKS:
        d = runtime.decode_task(enc.data, task, rt)
        pred = runtime.task_prediction(rt, task, enc.latents, 80, 90)
        assert pred.shape[-2:] == (80, 90)
        np.testing.assert_array_equal(d.output, runtime.raw_output(task, pred, rt))


def test_tasks_decoded_at_scene_scale_read_the_pooled_latent_and_code_the_same_bits(tiny_model, image, tmp_path):
    """depth is served by a full-size group; decoded at scene scale its decoder reads that group's
    latent as 2 x 2 block means and its output is upsampled by 2. The layers are the bits the
    same model writes without it (padding aside, which both share here)."""
    groups = ["seg+depth+normal"]
    plain = _with_scene_scale(tiny_model, tmp_path / "plain", groups, 45)
    rt = _with_scene_scale(tiny_model, tmp_path / "m", groups, 45, tasks=["depth"])
    g = rt.serving["depth"]
    assert rt.factor(g, 80, 90) == 1 and rt.task_factor("depth", 80, 90) == 2
    assert rt.task_factor("edge", 80, 90) == 1 and rt.pad_multiple(80, 90) == plain.pad_multiple(80, 90)
    enc = runtime.encode_image(image, "all", rt.qualities, rt)
    ref = runtime.encode_image(image, "all", rt.qualities, plain)
    assert [e["bytes"] for e in enc.layers] == [e["bytes"] for e in ref.layers]
    latent = enc.latents[g]
    pooled = latent.reshape(*latent.shape[:2], latent.shape[2] // 2, 2, latent.shape[3] // 2, 2).mean(axis=(3, 5))
    expected = runtime.resample.upsample(rt.run(None, "depth", 0, y=pooled)[0][0], 2)[:, :80, :90]
    np.testing.assert_allclose(runtime.task_prediction(rt, "depth", enc.latents, 80, 90), expected, rtol=1e-6, atol=1e-6)
    d = runtime.decode_task(enc.data, "depth", rt)
    np.testing.assert_array_equal(d.output, runtime.raw_output("depth", expected, rt))
    assert not np.array_equal(d.output, runtime.decode_task(ref.data, "depth", plain).output)
    # edge comes from the same group at full size, as before
    np.testing.assert_array_equal(runtime.decode_task(enc.data, "edge", rt).output,
                                  runtime.decode_task(ref.data, "edge", plain).output)


def test_a_manifest_cannot_decode_a_task_it_does_not_serve_at_scene_scale(tiny_model, tmp_path):
    import json

    from tamc_codec.runtime.manifest import model_id

    _with_scene_scale(tiny_model, tmp_path / "m", [], 45, tasks=["depth"])
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    m["scene_scale"]["tasks"] = ["depth", "segment_semantic"]
    m["model_id"] = model_id(m)
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(m))
    from tamc_codec.runtime.model import RuntimeModel

    with pytest.raises(TamcModelError, match="scene_scale"):
        RuntimeModel(tmp_path / "m")


def test_scene_factor_picks_the_nearest_power_of_two():
    from tamc_codec.runtime.manifest import scene_factor

    assert [scene_factor(256, s, s) for s in (100, 256, 362, 363, 512, 724, 725, 1024)] == [1, 1, 1, 2, 2, 2, 4, 4]
    assert scene_factor(256, 300, 600) == scene_factor(256, 600, 300) == 2  # the longer side decides


def test_parent_context_moves_between_grids_exactly():
    ctx = np.arange(2 * 4 * 6, dtype=np.float32).reshape(1, 2, 4, 6)
    pooled = runtime.resample.on_grid(ctx, (2, 3))
    np.testing.assert_array_equal(pooled, ctx.reshape(1, 2, 2, 2, 3, 2).mean(axis=(3, 5)))
    repeated = runtime.resample.on_grid(pooled, (4, 6))
    assert repeated.shape == ctx.shape and np.array_equal(repeated[..., ::2, ::2], pooled)
    assert runtime.resample.on_grid(ctx, (4, 6)) is ctx


def test_upsampling_matches_bilinear_with_half_pixel_centres():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    pred = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    for f in (2, 4):
        ref = F.interpolate(torch.from_numpy(pred)[None], scale_factor=f, mode="bilinear", align_corners=False)[0]
        np.testing.assert_allclose(runtime.resample.upsample(pred, f), ref.numpy(), atol=1e-5)


def test_export_puts_groups_serving_only_scene_tasks_at_scene_scale(tiny_model):
    pytest.importorskip("torch")
    import json

    from tamc_codec.train.export import scene_scale_groups

    assert scene_scale_groups({"seg": "a", "normal": "a", "depth": "b", "edge": "b", "rgb": "c"}) == ["a"]
    m = json.loads((tiny_model / "manifest.json").read_text())
    # the tiny model's root serves seg and normal only; at the default size 256 every test
    # picture here (80 x 90) is analysed whole, f = 1
    assert m["scene_scale"] == {"size": 256, "groups": ["seg+depth+normal"]}


def test_scene_scale_naming_another_models_group_is_a_model_error(tiny_model, tmp_path):
    with pytest.raises(TamcModelError, match="scene_scale"):
        _with_scene_scale(tiny_model, tmp_path / "m", ["seg+edge"], 256)


def test_export_writes_the_trivial_losses_for_its_own_model_only(tiny_model, tmp_path):
    """reference.json carries stage 2's trivial losses; a folder whose manifest has changed since
    (another model id) must not have its losses divided by them."""
    torch = pytest.importorskip("torch")
    import json

    trivial = torch.load(tiny_model.parent / "s2" / "codec.pt", map_location="cpu", weights_only=False)["trivial"]
    rt = runtime.load_model(str(tiny_model))
    ref = json.loads((tiny_model / "reference.json").read_text())
    assert ref["schema"] == "tamc.reference/1" and ref["model_id"] == rt.id
    assert rt.trivial_loss == pytest.approx({t: float(trivial[t]) for t in rt.serving})
    assert "reference.json" not in rt.manifest["files"]  # outside the model's identity, like the card
    other = _with_scene_scale(tiny_model, tmp_path / "m", ["depth+edge"], 45, keep_reference=False)
    assert (other.folder / "reference.json").exists() and other.id != rt.id
    assert other.trivial_loss == {}
