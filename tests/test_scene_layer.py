"""A group of its own started from an exported model, trained alone and merged beside the model's
layers (docs/TRAINING.md, "A scene layer of its own"), and the DAG's decode-set rule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tamc_codec.dag.dag import build_dag
from tamc_codec.errors import TamcInputError, TamcModelError

SERVING6 = {"seg": "seg+depth+normal", "depth": "seg+depth+normal", "normal": "seg+depth+normal",
            "edge": "edge+keypoint+rgb", "keypoint": "edge+keypoint+rgb", "rgb": "edge+keypoint+rgb"}


def _planted(parent_channels: int, child_own: int, seed: int = 0, n: int = 40):
    """A small 'scene' latent and a larger 'picture' latent whose first channels repeat it."""
    rng = np.random.default_rng(seed)
    small = rng.normal(0, 3, (n, parent_channels, 4, 4)).astype(np.float32)
    copy = np.repeat(np.repeat(small, 2, 2), 2, 3)
    big = np.concatenate([copy, rng.normal(0, 6, (n, child_own, 8, 8))], 1).astype(np.float32)
    return {"seg+depth+normal": small, "edge+keypoint+rgb": big}


def test_decode_set_rule_keeps_a_cheap_parent_that_pays_its_receivers():
    dag = build_dag(_planted(8, 24), serving=SERVING6)
    d = dag["decisions"]["edge+keypoint+rgb"]
    assert dag["parents"]["edge+keypoint+rgb"] == "seg+depth+normal"
    assert d["bits_with_parent_chain"] < d["bits_alone"]
    assert d["receivers"] == ["edge", "keypoint", "rgb"]
    assert dag["settings"]["decode_sets"]["serving"] == SERVING6


def test_decode_set_rule_drops_an_edge_whose_parent_chain_costs_the_receivers_more():
    # the picture latent is the lower-entropy one here only per element; per picture it is
    # four times larger, and the scene latent, which it explains, is cheap on its own
    rng = np.random.default_rng(1)
    n = 40
    big = rng.normal(0, 1.5, (n, 16, 8, 8)).astype(np.float32)
    small = (big[:, :8].reshape(n, 8, 4, 2, 4, 2).mean((3, 5)) * 4 + rng.normal(0, 2, (n, 8, 4, 4))).astype(np.float32)
    lat = {"seg+depth+normal": small, "edge+keypoint+rgb": big}
    plain = build_dag(lat)
    ruled = build_dag(lat, serving=SERVING6)
    assert plain["entropy"]["edge+keypoint+rgb"] < plain["entropy"]["seg+depth+normal"]
    assert plain["parents"]["seg+depth+normal"] == "edge+keypoint+rgb"   # the file's total alone
    assert ruled["parents"]["seg+depth+normal"] is None                  # its receivers would pay
    assert "receivers of seg, depth, normal" in ruled["decisions"]["seg+depth+normal"]["reason"]


def test_decode_set_rule_needs_the_coding_estimator_and_known_groups():
    lat = _planted(4, 4)
    with pytest.raises(TamcInputError, match="coding estimator"):
        build_dag(lat, "kde", serving=SERVING6)
    with pytest.raises(TamcInputError, match="without latents"):
        build_dag(lat, serving={**SERVING6, "seg": "seg+normal"})


@pytest.fixture(scope="module")
def added_model(tiny_model, tmp_path_factory):
    """A `keypoint+rgb` group started from the tiny model's `edge+keypoint+rgb`, a few stage-2
    steps alone, exported."""
    from tamc_codec.dag.dag import fixed_dag
    from tamc_codec.train.export import export_model
    from tamc_codec.train.rebuild import group_network
    from tamc_codec.train.stage2 import Stage2Config, train_stage2
    import torch

    root = tmp_path_factory.mktemp("added")
    data = Path(tiny_model).parent
    net = group_network(tiny_model, "keypoint+rgb", "edge+keypoint+rgb")
    trivial = json.loads((Path(tiny_model) / "reference.json").read_text())["trivial_loss"]
    torch.save({"model": net.state_dict(), "describe": net.describe(), "trivial": trivial}, root / "anchor.pt")
    (root / "dag.json").write_text(json.dumps(fixed_dag(["keypoint+rgb"], {"keypoint+rgb": None},
                                                        ["keypoint+rgb"], "manual")))
    train_stage2(Stage2Config(anchor=str(root / "anchor.pt"), dag=str(root / "dag.json"), data=str(data / "train"),
                              val=str(data / "val"), out=str(root / "s2"), lambdas=[0.1, 0.5, 2.0], steps_entropy=2,
                              steps_finetune=1, batch=2, crop=64, hyper_channels=8, ckpt_every=6), progress=False)
    export_model(root / "s2" / "codec.pt", root / "model", name="added")
    return root / "model"


def test_group_network_copies_the_source_encoder_and_serving_decoders(tiny_model):
    import torch

    from tamc_codec.train.rebuild import group_network, rebuild_network

    net = group_network(tiny_model, "keypoint+rgb", "edge+keypoint+rgb")
    full = rebuild_network(tiny_model)
    assert net.groups == ["keypoint+rgb"] and net.serving == {"keypoint": "keypoint+rgb", "rgb": "keypoint+rgb"}
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = net.encode(x)["keypoint+rgb"]
        assert torch.equal(y, full.encode(x, ["edge+keypoint+rgb"])["edge+keypoint+rgb"])
        assert torch.equal(net.decode("keypoint+rgb", "rgb", y), full.decode("edge+keypoint+rgb", "rgb", y))
    with pytest.raises(TamcModelError, match="no coded group"):
        group_network(tiny_model, "keypoint+rgb", "seg+edge")


def test_merged_model_keeps_the_base_layers_bit_for_bit(tiny_model, added_model, tmp_path):
    from tamc_codec.runtime import decode_task, encode_image, load_model
    from tamc_codec.bitstream import TamcReader
    from tamc_codec.train.merge import merge_models

    m = merge_models(tiny_model, added_model, tmp_path / "merged", name="merged")
    # the added group comes first, as a root; the base group left serving nothing is dropped
    assert m["groups"] == ["keypoint+rgb", "seg+depth+normal", "depth+edge"]
    assert m["dag"]["parents"] == {"keypoint+rgb": None, "seg+depth+normal": None, "depth+edge": "seg+depth+normal"}
    assert m["serving"]["rgb"] == m["serving"]["keypoint"] == "keypoint+rgb"
    base, merged = load_model(str(tiny_model)), load_model(str(tmp_path / "merged"))
    image = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    for q in (1, 3):
        old = encode_image(image, "depth,edge", q, base)
        new = encode_image(image, "depth,edge", q, merged)
        assert [layer["bytes"] for layer in old.layers] == [layer["bytes"] for layer in new.layers]
        with TamcReader(old.data) as a, TamcReader(new.data) as b:
            assert [a.read_layer(i) for i in range(len(a.layers))] == [b.read_layer(i) for i in range(len(b.layers))]
    enc = encode_image(image, "all", 2, merged)
    with TamcReader(enc.data) as r:
        assert r.layers_for_task("rgb") == [0]          # the picture reads its own layer only
        assert 0 not in r.layers_for_task("depth")
    out = decode_task(enc.data, "rgb", merged)
    assert out.output.shape == (64, 96, 3)


def test_merge_refuses_what_cannot_share_a_file(tiny_model, added_model, tmp_path):
    from tamc_codec.train.merge import merge_models

    with pytest.raises(TamcInputError, match="another folder"):
        merge_models(tiny_model, added_model, added_model, name="x")
    with pytest.raises(TamcInputError, match="share a group"):
        merge_models(tiny_model, tiny_model, tmp_path / "twice", name="x")
    with pytest.raises(TamcInputError, match="DAG roots"):
        merge_models(added_model, tiny_model, tmp_path / "children", name="x")
    assert not (tmp_path / "twice").exists() and not (tmp_path / "children").exists()


def test_start_group_command_writes_an_anchor_stage2_reads(tiny_model, tmp_path):
    from click.testing import CliRunner

    from tamc_codec.cli.train_cmds import train
    from tamc_codec.train.anchor import anchor_trivial, load_anchor

    data = Path(tiny_model).parent
    res = CliRunner().invoke(train, ["start-group", "-m", str(tiny_model), "--group", "rgb+keypoint",
                                     "--from", "edge+keypoint+rgb", "--val", str(data / "val"), "--out",
                                     str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    net = load_anchor(tmp_path / "run" / "anchor.pt")
    assert net.groups == ["keypoint+rgb"]
    assert set(anchor_trivial(tmp_path / "run" / "anchor.pt")) >= {"keypoint", "rgb"}
    with np.load(tmp_path / "run" / "latents.npz") as z:
        assert z["keypoint+rgb"].shape[0] == 2
    bad = CliRunner().invoke(train, ["start-group", "-m", str(tiny_model), "--group", "keypoint+rgb",
                                     "--from", "nope+rgb", "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0


def test_quality_positions_pick_trained_gains_or_blend_neighbours_in_log_space():
    pytest.importorskip("torch")
    from tamc_codec.train.export import resample_gains

    gains = np.array([[1.0, 2.0], [4.0, 8.0], [16.0, 32.0]], dtype=np.float32)
    tables = {"gain0": gains.copy(), "inv_gain0": 1 / gains, "z0/medians": np.zeros(2, np.float32)}
    resample_gains(tables, [1, 2.5, 3])
    np.testing.assert_allclose(tables["gain0"], [[1, 2], [8, 16], [16, 32]], rtol=1e-6)
    np.testing.assert_allclose(tables["inv_gain0"], 1 / tables["gain0"], rtol=1e-6)
    assert tables["z0/medians"].shape == (2,)


def test_export_refuses_quality_positions_outside_the_trained_ones(tiny_model):
    from tamc_codec.train.export import export_model

    codec_pt = Path(tiny_model).parent / "s2" / "codec.pt"
    for bad in ([1, 1], [0.5, 2], [1, 3.5], [3]):
        with pytest.raises(TamcInputError, match="quality positions"):
            export_model(codec_pt, Path(tiny_model).parent / "never", name="x", positions=bad)
    assert not (Path(tiny_model).parent / "never").exists()
