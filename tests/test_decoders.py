"""Stage 3: decoders rebuilt from an exported model, fitted on its decoded latents, exported again."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tamc_codec.runtime import decode_task, encode_image, task_prediction  # noqa: E402
from tamc_codec.bitstream import TamcReader  # noqa: E402
from tamc_codec.runtime.model import RuntimeModel  # noqa: E402
from tamc_codec.train.decoders import DecoderStageConfig, rebuild_decoder, train_decoders  # noqa: E402
from tamc_codec.train.export import replace_decoders  # noqa: E402


def test_rebuilt_decoders_compute_what_their_graphs_compute(tiny_model):
    rt = RuntimeModel(tiny_model)
    y = np.random.default_rng(1).standard_normal((1, rt.manifest["latent_channels"], 5, 7)).astype(np.float32)
    for task in rt.serving:
        dec = rebuild_decoder(rt, task)
        with torch.no_grad():
            mine = dec(torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(mine, rt.run(None, task, y=y)[0], atol=1e-4)


@pytest.fixture(scope="module")
def fitted(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage3")
    train = str(tiny_model.parent / "train")
    # validating on the training scenes: the test asks whether fitting works, not whether it generalises
    cfg = DecoderStageConfig(model=str(tiny_model), data=[train], val=[train], out=str(out / "run"),
                             tasks=["seg", "depth"], steps=40, batch_pixels=2 * 64 * 64, lr=3e-3, eval_every=20,
                             context=True)
    record, decoders = train_decoders(cfg, progress=False, log=lambda m: None)
    manifest = replace_decoders(tiny_model, out / "model", decoders, record={"steps": cfg.steps},
                                context=record["context"])
    return cfg, record, out / "model", manifest


def test_decoders_fit_the_latents_the_codec_decodes(fitted):
    _, record, _, _ = fitted
    for t in ("seg", "depth"):
        assert record["after"][t] < 0.95 * record["before"][t], (t, record["before"], record["after"])
    assert set(record["after"]) == {"seg", "depth"}
    assert [h["step"] for h in record["history"]] == ["source", 0, 20, 40]
    # depth's group codes after seg+depth+normal, so its decoder may read that latent for free
    assert record["context"] == {"seg": [], "depth": ["seg+depth+normal"]}


def test_scenes_coded_by_several_workers_give_the_same_latents(tiny_model):
    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.train.decoders import codec_latents

    rt = RuntimeModel(tiny_model)
    ds = MultiTaskDataset(tiny_model.parent / "train", train=False)
    rng = np.random.default_rng(4)
    qualities, flips = rng.integers(1, rt.qualities + 1, len(ds)), rng.random(len(ds)) < 0.5
    one = codec_latents(rt, ds, rt.order, qualities, flips, workers=1)
    two = codec_latents(rt, ds, rt.order, qualities, flips, workers=2)
    assert set(one) == set(rt.order) and len(one[rt.order[0]]) == len(ds) > 2
    for g in rt.order:
        np.testing.assert_array_equal(one[g], two[g])
    # a photometric change per scene, the same whoever codes it
    aug = codec_latents(rt, ds, rt.order, qualities, flips, workers=2, augment=True)
    for g in rt.order:
        np.testing.assert_array_equal(aug[g], codec_latents(rt, ds, [g], qualities, flips, workers=1, augment=True)[g])
        assert not np.array_equal(aug[g], one[g])
    # what the codec itself decodes from scene 1, mirrored or not
    img = np.asarray(ds.arrays["rgb"][1])
    enc = encode_image(np.ascontiguousarray(img[:, ::-1] if flips[1] else img), "all", int(qualities[1]), rt)
    np.testing.assert_array_equal(one[rt.order[-1]][1], enc.latents[rt.order[-1]][0].astype(np.float16))


def test_a_decoder_reads_its_ancestors_latents(fitted):
    """The exported depth decoder takes its ancestor's latent as a second input: changing that
    latent changes depth, decode_task feeds it, and the graph rebuilds in torch with it."""
    _, _, new_model, manifest = fitted
    rt = RuntimeModel(new_model)
    assert manifest["decoders"]["depth"]["inputs"] == ["y", "context"]
    assert rt.decoder_context("depth") == ["seg+depth+normal"] and rt.decoder_context("seg") == []
    assert rebuild_decoder(rt, "depth").cfg.context_channels == rt.manifest["latent_channels"]
    img = (np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8)
    enc = encode_image(img, "depth", 3, rt)
    assert set(enc.latents) == {"seg+depth+normal", "depth+edge"}
    pred = task_prediction(rt, "depth", enc.latents, 64, 64)
    np.testing.assert_array_equal(decode_task(enc.data, "depth", rt).output,
                                  decode_task(enc.data, "depth", rt).output)
    blanked = {**enc.latents, "seg+depth+normal": np.zeros_like(enc.latents["seg+depth+normal"])}
    assert not np.allclose(task_prediction(rt, "depth", blanked, 64, 64), pred)
    # the bench's anchor (the model's networks on unquantised latents) feeds the context too
    from tamc_codec.bench.evaluate import ModelAnchor

    unquantised = ModelAnchor(rt, ["depth"]).predict(img)["depth"]
    assert unquantised.shape == pred.shape and np.abs(unquantised - pred).mean() < np.abs(pred).mean()


def test_a_decoder_context_must_be_ancestors(fitted, tmp_path):
    import shutil

    from tamc_codec.errors import TamcModelError
    from tamc_codec.runtime.manifest import model_id

    _, _, new_model, manifest = fitted
    shutil.copytree(new_model, tmp_path / "m")
    bad = json.loads(json.dumps(manifest))
    bad["decoders"]["seg"]["context"] = ["depth+edge"]  # a child of seg's group, decoded after it
    bad["decoders"]["seg"]["inputs"] = ["y", "context"]
    bad["model_id"] = model_id({k: v for k, v in bad.items() if k != "model_id"})
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(TamcModelError, match="ancestors"):
        RuntimeModel(tmp_path / "m")


def test_new_decoders_change_predictions_but_not_one_coded_bit(fitted, tiny_model):
    _, _, new_model, manifest = fitted
    old = json.loads((tiny_model / "manifest.json").read_text())
    changed = {f for f in old["files"] if old["files"][f] != manifest["files"][f]}
    assert changed == {old["decoders"]["seg"]["file"], old["decoders"]["depth"]["file"]}
    assert manifest["model_id"] != old["model_id"]
    ref = json.loads((new_model / "reference.json").read_text())
    assert ref["model_id"] == manifest["model_id"]
    assert ref["trivial_loss"] == json.loads((tiny_model / "reference.json").read_text())["trivial_loss"]
    img = (np.random.default_rng(2).random((48, 80, 3)) * 255).astype(np.uint8)
    a = encode_image(img, "all", 2, RuntimeModel(tiny_model))
    b = encode_image(img, "all", 2, RuntimeModel(new_model))
    ra, rb = TamcReader(a.data), TamcReader(b.data)
    assert len(ra.layers) == len(rb.layers) == 3
    assert [ra.read_layer(i) for i in range(3)] == [rb.read_layer(i) for i in range(3)]
    depth_old = decode_task(a.data, "depth", RuntimeModel(tiny_model)).output
    depth_new = decode_task(b.data, "depth", RuntimeModel(new_model)).output
    assert depth_new.shape == depth_old.shape == (48, 80)
    assert not np.array_equal(depth_new, depth_old)
    edge_old = decode_task(a.data, "edge", RuntimeModel(tiny_model)).output
    np.testing.assert_array_equal(decode_task(b.data, "edge", RuntimeModel(new_model)).output, edge_old)
    # the source's files decode with the new model exactly as the new model's own do
    assert manifest["same_coding_as"] == [old["model_id"]]
    np.testing.assert_array_equal(decode_task(a.data, "depth", RuntimeModel(new_model)).output, depth_new)


def test_a_file_of_the_source_model_finds_its_successor(fitted, tmp_path, monkeypatch):
    """Only the new model installed: a file the source model wrote still decodes, with it."""
    import shutil

    from tamc_codec.runtime.model import MODEL_PATH_ENV, find_model

    _, _, new_model, manifest = fitted
    shutil.copytree(new_model, tmp_path / "models" / "successor")
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path / "models"))
    found = find_model(None, manifest["same_coding_as"][0])
    assert found.name == "successor"
    with pytest.raises(Exception, match="not installed"):
        find_model(None, "f" * 32)


def test_a_finished_run_resumes_to_the_same_record(fitted):
    cfg, record, _, _ = fitted
    again, _ = train_decoders(cfg, progress=False, log=lambda m: None)
    assert again["after"] == record["after"] and again["history"] == record["history"]


def test_augmenting_refuses_tasks_labelled_by_the_pixels(tiny_model, tmp_path):
    from tamc_codec.errors import TamcInputError

    train = str(tiny_model.parent / "train")
    cfg = DecoderStageConfig(model=str(tiny_model), data=[train], val=[train], out=str(tmp_path / "run"),
                             tasks=["seg", "edge"], steps=1, augment=True)
    with pytest.raises(TamcInputError, match="edge"):
        train_decoders(cfg, progress=False, log=lambda m: None)
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_older_than_a_setting_resumes_with_its_default():
    from tamc_codec.train.decoders import _same_settings

    cfg = DecoderStageConfig(model="m", data=["d"], val=["v"], out="o")
    older = {k: v for k, v in cfg.__dict__.items() if k != "context"}
    assert _same_settings(older, cfg)
    assert not _same_settings(older, DecoderStageConfig(**{**cfg.__dict__, "context": True}))
    assert not _same_settings({**older, "steps": 10}, cfg) and not _same_settings(None, cfg)


def test_the_source_model_is_never_overwritten(tiny_model):
    import subprocess
    import sys

    before = {p.name: p.read_bytes() for p in tiny_model.iterdir()}
    res = subprocess.run([sys.executable, "-m", "tamc_codec", "train", "decoders", "-m", str(tiny_model),
                          "--data", str(tiny_model.parent / "train"), "--val", str(tiny_model.parent / "val"),
                          "-o", str(tiny_model.parent / "s3"), "--export", str(tiny_model)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "another folder" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert {p.name: p.read_bytes() for p in tiny_model.iterdir()} == before
    with pytest.raises(Exception, match="another folder"):
        replace_decoders(tiny_model, tiny_model, {})



def test_scene_decoding_is_fitted_and_exported_at_the_scale_the_codec_decodes(tiny_model, tmp_path):
    """With the training scenes' scale at 32 px, a 64² scene is decoded at half size: depth, served
    by a full-size group, reads that group's latent pooled 2 x 2. What the stage measured is what
    the exported model's codec then gives, and the source's own scales give "before"."""
    from model_fixture import with_scene_scale

    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.tasks.losses import task_loss

    source = with_scene_scale(tiny_model, tmp_path / "src", ["seg+depth+normal"], 32)
    train, val = str(tiny_model.parent / "train"), str(tiny_model.parent / "val")
    cfg = DecoderStageConfig(model=str(source), data=[train], val=[val], out=str(tmp_path / "run"),
                             tasks=["depth", "edge"], steps=4, batch_pixels=2 * 64 * 64, eval_every=2,
                             val_qualities=[2])
    record, decoders = train_decoders(cfg, progress=False, log=lambda m: None)
    assert record["scene_tasks"] == ["depth"]  # edge is decoded on the pixels
    assert record["history"][0]["val"] != record["history"][1]["val"]  # "before": the source's scale
    manifest = replace_decoders(source, tmp_path / "m", decoders, scene_tasks=record["scene_tasks"],
                                context=record["context"])
    assert manifest["scene_scale"] == {"size": 32, "groups": ["seg+depth+normal"], "tasks": ["depth"]}
    rt = RuntimeModel(tmp_path / "m")
    assert rt.task_factor("depth", 64, 64) == 2 and rt.factor(rt.serving["depth"], 64, 64) == 1
    ds = MultiTaskDataset(val, train=False)
    losses = []
    for i in range(len(ds)):
        s = ds.sample(i)
        img = np.asarray(ds.arrays["rgb"][i])
        enc = encode_image(img, "all", 2, rt)
        assert decode_task(enc.data, "depth", rt).output.shape == (64, 64)
        p = torch.from_numpy(np.ascontiguousarray(task_prediction(rt, "depth", enc.latents, 64, 64)))[None]
        losses.append(float(task_loss("depth", p, s["depth"][None])) / rt.trivial_loss["depth"])
    assert np.mean(losses) == pytest.approx(record["after"]["depth"], rel=0.02)

    untouched = DecoderStageConfig(**{**cfg.__dict__, "out": str(tmp_path / "run2"), "scene_decoding": False,
                                      "context": False})
    record = train_decoders(untouched, progress=False, log=lambda m: None)[0]
    assert record["scene_tasks"] == [] and record["context"] == {"depth": [], "edge": []}

def test_the_exported_model_takes_the_name_given(tiny_model, tmp_path):
    """A recipe's stage 3 names the model it exports (`name = "default"` in recipes/default.toml): the
    name is part of the manifest and so of the id."""
    import json
    import subprocess
    import sys

    out = tmp_path / "folder"
    res = subprocess.run([sys.executable, "-m", "tamc_codec", "train", "decoders", "-m", str(tiny_model),
                          "--data", str(tiny_model.parent / "train"), "--val", str(tiny_model.parent / "val"),
                          "-o", str(tmp_path / "s3"), "--steps", "1", "--tasks", "depth", "--workers", "1",
                          "-q", "--export", str(out), "--name", "default"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "default"
    from tamc_codec.runtime.manifest import model_id
    assert manifest["model_id"] == model_id(manifest)


def test_validation_qualities_are_checked_before_any_scene_is_coded(tiny_model, tmp_path):
    import subprocess
    import sys

    base = [sys.executable, "-m", "tamc_codec", "train", "decoders", "-m", str(tiny_model),
            "--data", str(tiny_model.parent / "train"), "--val", str(tiny_model.parent / "val"),
            "-o", str(tmp_path / "run"), "--steps", "1"]
    for bad, says in (("1,99", "qualities 1 to"), ("two", "separated by commas"), ("0", "qualities 1, 2")):
        res = subprocess.run(base + ["--val-qualities", bad], capture_output=True, text=True, timeout=120)
        assert res.returncode != 0 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
        assert not list((tmp_path / "run").glob("*.npz"))


def test_the_record_names_the_validation_qualities_chosen(fitted, tiny_model, tmp_path):
    cfg, record, _, _ = fitted
    top = RuntimeModel(tiny_model).qualities
    assert record["val_qualities"] == sorted({min(3, top), top})  # the default
    low = DecoderStageConfig(**{**cfg.__dict__, "out": str(tmp_path / "low"), "val_qualities": [1], "steps": 1})
    rec, _ = train_decoders(low, progress=False, log=lambda m: None)
    assert rec["val_qualities"] == [1] and all(name.endswith(" q1") for name in rec["history"][0]["by_source"])
