"""Stage 1 on a tiny model: shapes, learning, resume, latents, and a 2-process DDP run."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tamc_codec.data.folder import synthesize  # noqa: E402
from tamc_codec.nets.multitask import MultiGroupModel, NetConfig, coord_grid  # noqa: E402
from tamc_codec.train.anchor import load_anchor  # noqa: E402
from tamc_codec.train.evaluation import evaluate  # noqa: E402
from tamc_codec.train.stage1 import Stage1Config, train_stage1  # noqa: E402

TINY = NetConfig(latent_channels=8, encoder_channels=(8, 8, 8), decoder_channels=(8, 8, 8), full_res_channels=8).to_dict()
GROUPS = ["seg+depth+normal", "depth+edge", "edge+keypoint+rgb"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage1")
    synthesize(root / "train", 6, 32, 0, workers=1)
    synthesize(root / "val", 3, 32, 1_000_000, workers=1)
    return root


def _cfg(folders, out, steps, crop=32, **kw):
    return Stage1Config(data=str(folders / "train"), val=str(folders / "val"), groups=GROUPS, out=str(out),
                        steps=steps, batch=4, crop=crop, lr=3e-3, warmup=2, eval_every=steps, ckpt_every=5,
                        trivial_samples=6, net=TINY, **kw)


def test_model_shapes():
    m = MultiGroupModel(GROUPS, NetConfig.from_dict(TINY))
    preds = m(torch.rand(2, 3, 64, 48))
    assert preds[("seg+depth+normal", "seg")].shape == (2, 11, 64, 48)
    assert preds[("depth+edge", "depth")].shape == (2, 1, 64, 48)
    assert preds[("edge+keypoint+rgb", "rgb")].shape == (2, 3, 64, 48)
    assert m.encode(torch.rand(1, 3, 64, 48))["depth+edge"].shape == (1, 8, 4, 3)
    # a task in two groups is served by one
    assert m.serving["depth"] in ("seg+depth+normal", "depth+edge")


def _mean_losses_trained_and_fresh(rec: dict, folders) -> tuple[float, float]:
    """Mean validation loss / trivial of a run's model and of a freshly initialised one."""
    from tamc_codec.data.torch_dataset import MultiTaskDataset

    val = MultiTaskDataset(folders / "val", ["seg", "depth", "normal", "edge", "keypoint", "rgb"], train=False)
    fresh = evaluate(MultiGroupModel(GROUPS, NetConfig.from_dict(TINY)), val, rec["trivial_loss"])
    mean = lambda r: float(np.mean([x["normalised"] for ts in r.values() for x in ts.values()]))  # noqa: E731
    return mean(rec["val"]), mean(fresh)


def test_training_lowers_loss_and_writes_records(folders, tmp_path):
    cfg = _cfg(folders, tmp_path / "run", 40)
    rec = train_stage1(cfg, progress=False)
    assert rec["steps"] == 40 and set(rec["serving"]) == {"seg", "depth", "normal", "edge", "keypoint", "rgb"}
    for t, g in rec["serving"].items():
        assert t in g.split("+")
        assert rec["served"][t]["normalised"] == min(rec["val"][h][t]["normalised"] for h in rec["val"] if t in rec["val"][h])
    # the trained model beats a freshly initialised one on validation
    trained, fresh = _mean_losses_trained_and_fresh(rec, folders)
    assert trained < fresh
    on_disk = json.loads((tmp_path / "run" / "stage1.json").read_text())
    assert on_disk["serving"] == rec["serving"] and on_disk["images_per_s"] > 0
    lat = np.load(tmp_path / "run" / "latents.npz")
    assert sorted(lat.files) == sorted(GROUPS)
    assert lat["depth+edge"].shape == (3, 8, 2, 2) and lat["depth+edge"].dtype == np.float32
    anchor = load_anchor(tmp_path / "run" / "anchor.pt")
    assert anchor.serving == rec["serving"]


@pytest.mark.parametrize("norm", ["group", "channel"])
def test_norms_global_context_and_coords_export_like_torch(norm):
    """The optional layers train, keep old state dicts loading, and run the same under ONNX."""
    ort = pytest.importorskip("onnxruntime")
    from tamc_codec.train.export import _onnx_bytes

    cfg = NetConfig.from_dict({**TINY, "norm": norm, "global_context": True, "coords": True})
    m = MultiGroupModel(["depth+rgb"], cfg).eval()
    old = MultiGroupModel(["depth+rgb"], NetConfig.from_dict(TINY))
    assert "norm" not in "".join(old.state_dict())  # the default network is unchanged
    m.load_state_dict(MultiGroupModel(["depth+rgb"], cfg).state_dict())
    enc, dec = m.encoders["depth_rgb"], m.decoders["depth_rgb"]["depth"]
    e = ort.InferenceSession(_onnx_bytes(enc, (torch.rand(1, 3, 64, 64),), ["image"], ["y"]))
    d = ort.InferenceSession(_onnx_bytes(dec, (torch.rand(1, 8, 4, 4),), ["y"], ["out"]))
    for h, w in ((64, 64), (96, 160)):  # graphs keep dynamic sizes
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            y, out = enc(x), dec(enc(x))
        y_onnx = e.run(None, {"image": x.numpy()})[0]
        np.testing.assert_allclose(y_onnx, y.numpy(), atol=2e-3, rtol=1e-2)
        np.testing.assert_allclose(d.run(None, {"y": y.numpy()})[0], out.numpy(), atol=2e-3, rtol=1e-2)
    # the global term really reaches the output: another scene mean, another prediction
    y = enc(torch.rand(1, 3, 64, 64))
    assert not torch.allclose(dec(y)[..., :8, :8], dec(torch.cat([y, y * 3], dim=-1))[..., :8, :8])
    # positions: a crop told where it came from sees what the whole picture saw there
    x = torch.rand(1, 3, 64, 64)
    full = enc.net(torch.cat([x - 0.5, coord_grid(x)], 1))
    crop = enc(x[..., 16:48, 32:64], torch.tensor([[16.0, 32.0, 64.0, 64.0]]))
    assert torch.allclose(coord_grid(x[..., 16:48, 32:64], torch.tensor([[16.0, 32.0, 64.0, 64.0]])),
                          coord_grid(x)[..., 16:48, 32:64])
    assert crop.shape == (1, 8, 2, 2) and not torch.allclose(crop, enc(x[..., 16:48, 32:64]))
    assert full.shape == (1, 8, 4, 4)


def test_channel_norm_is_the_same_on_a_crop_and_on_the_whole_picture():
    """GroupNorm's statistics span the picture, so a crop normalises differently from the
    scene it came from (what made edge and keypoint worse on whole scenes); ChannelNorm's do not."""
    from tamc_codec.nets.multitask import ChannelNorm

    x = torch.randn(2, 16, 24, 32) * torch.linspace(0.1, 3, 32)  # contrast varies across the picture
    x[:, :, :, :8] += 2.0
    crop = (slice(None), slice(None), slice(4, 12), slice(0, 10))
    cn, gn = ChannelNorm(16), torch.nn.GroupNorm(8, 16)
    with torch.no_grad():
        assert torch.allclose(cn(x)[crop], cn(x[crop]), atol=1e-5)
        assert not torch.allclose(gn(x)[crop], gn(x[crop]), atol=1e-2)
        y = cn(x)
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 24, 32), atol=1e-5)
    assert torch.allclose(y.var(dim=1, unbiased=False), torch.ones(2, 24, 32), atol=5e-3)  # eps against low-contrast pixels


def test_resume_continues_where_it_stopped(folders, tmp_path):
    a = train_stage1(_cfg(folders, tmp_path / "full", 10), progress=False)
    assert a["steps"] == 10
    paused = train_stage1(_cfg(folders, tmp_path / "split", 10), progress=False, stop_after=5)
    assert paused == {"paused": True, "steps": 5} and not (tmp_path / "split" / "stage1.json").exists()
    b = train_stage1(_cfg(folders, tmp_path / "split", 10), progress=False)
    assert b["steps"] == 10
    sa = torch.load(tmp_path / "full" / "anchor.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "split" / "anchor.pt", weights_only=False)["model"]
    # same seed, same batches, same steps: the resumed run ends where the straight one does
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5)


def test_loader_processes_do_not_change_the_batches_or_the_run(folders, tmp_path):
    from tamc_codec.data.torch_dataset import MultiTaskDataset, StepBatches, step_batches

    ds = MultiTaskDataset(folders / "train", ["seg", "depth", "rgb"], crop=16, train=True)
    plan = StepBatches([ds], batch=3, seed=7)
    inline = list(step_batches(plan, 2, 6))
    ahead = list(step_batches(plan, 2, 6, workers=2))
    assert len(inline) == len(ahead) == 4
    for x, y in zip(inline, ahead):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    # a step's batch is its own: not the same as its neighbour's, and the same when asked again
    assert not torch.equal(inline[0]["rgb"], inline[1]["rgb"])
    assert torch.equal(plan[2]["rgb"], inline[0]["rgb"])

    a = train_stage1(_cfg(folders, tmp_path / "inline", 6), progress=False)
    b = train_stage1(_cfg(folders, tmp_path / "ahead", 6, workers=2), progress=False)
    assert a["val"] == b["val"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(folders, tmp_path):
    from tamc_codec.errors import TamcInputError

    with pytest.raises(TamcInputError, match="no CUDA device"):
        train_stage1(_cfg(folders, tmp_path / "gpu", 2, device="cuda"), progress=False)


def test_mixed_views_show_whole_scenes(folders, tmp_path):
    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.errors import TamcInputError
    from tamc_codec.train.views import training_views

    crops = MultiTaskDataset(folders / "train", ["depth", "rgb"], crop=16, train=True)
    assert training_views(crops, str(folders / "train"), "crop") == [crops]
    _, scenes = training_views(crops, str(folders / "train"), "mix")
    b = scenes.random_batch(np.random.default_rng(0), 3)
    assert b["image"].shape == (3, 3, 16, 16)
    # each whole-scene sample is a full 32 px scene averaged 2x2 (or its mirror image)
    full = MultiTaskDataset(folders / "train", ["rgb"], train=False)
    pooled = [torch.nn.functional.avg_pool2d(full.sample(i)["image"][None], 2)[0] for i in range(len(full))]
    for img in b["image"]:
        assert any(torch.allclose(img, p, atol=1e-6) or torch.allclose(img, p.flip(-1), atol=1e-6) for p in pooled)
    with pytest.raises(TamcInputError, match="divides"):
        training_views(MultiTaskDataset(folders / "train", ["rgb"], crop=20, train=True), str(folders / "train"), "mix")
    rec = train_stage1(_cfg(folders, tmp_path / "mix", 6, crop=16, views="mix"), progress=False)
    assert rec["steps"] == 6 and rec["config"]["views"] == "mix"


def test_room_views_add_whole_scenes_at_their_own_scale(folders, tmp_path):
    from tamc_codec.data.torch_dataset import MultiTaskDataset, StepBatches
    from tamc_codec.train.views import training_views

    crops = MultiTaskDataset(folders / "train", ["depth", "rgb"], crop=16, train=True)
    sources = training_views(crops, str(folders / "train"), "rooms")
    assert [s.side for s in sources] == [16, 16, 32]
    plan = StepBatches(sources, batch=8, seed=0)
    assert plan.batch_sizes == [8, 8, 2]
    b = plan[2]
    assert b["image"].shape == (2, 3, 32, 32)
    # a whole scene, not a crop: every sample starts at the scene's corner and spans it
    assert torch.all(b["origin"] == torch.tensor([0.0, 0.0, 32.0, 32.0]))
    full = MultiTaskDataset(folders / "train", ["rgb"], train=False)
    scenes = [full.sample(i)["image"] for i in range(len(full))]
    for img in b["image"]:
        assert any(torch.equal(img, s) or torch.equal(img, s.flip(-1)) for s in scenes)
    rec = train_stage1(_cfg(folders, tmp_path / "rooms", 3, crop=16, views="rooms"), progress=False)
    assert rec["steps"] == 3 and rec["config"]["views"] == "rooms"


def test_larger_scenes_join_the_views_at_their_own_scale(folders, tmp_path):
    from tamc_codec.data.folder import synthesize
    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.errors import TamcInputError
    from tamc_codec.train.views import training_views

    synthesize(tmp_path / "large", 2, 64, 500_000, workers=1)
    crops = MultiTaskDataset(folders / "train", ["depth", "rgb"], crop=16, train=True)
    sources = training_views(crops, str(folders / "train"), "mix", str(tmp_path / "large"))
    assert len(sources) == 3 and sources[2].size == 64 and sources[2].crop == 16
    b = sources[2].random_batch(np.random.default_rng(0), 2)
    assert b["image"].shape == (2, 3, 16, 16)
    # the crop is placed in its 64 px scene: the coordinates the networks see say so
    assert torch.all(b["origin"][:, 2:] == 64)
    with pytest.raises(TamcInputError, match="larger than"):
        training_views(crops, str(folders / "train"), "crop", str(folders / "train"))
    rec = train_stage1(_cfg(folders, tmp_path / "large-run", 3, crop=16, views="mix",
                            large_data=str(tmp_path / "large")), progress=False)
    assert rec["steps"] == 3 and rec["config"]["large_data"].endswith("large")


def test_larger_crops_of_larger_scenes_come_in_smaller_batches(folders, tmp_path):
    from tamc_codec.data.folder import synthesize
    from tamc_codec.data.torch_dataset import MultiTaskDataset, StepBatches
    from tamc_codec.errors import TamcInputError
    from tamc_codec.train.views import training_views

    synthesize(tmp_path / "large", 2, 64, 500_000, workers=1)
    crops = MultiTaskDataset(folders / "train", ["depth", "rgb"], crop=16, train=True)
    sources = training_views(crops, str(folders / "train"), "mix", str(tmp_path / "large"), large_crop=32)
    assert [s.side for s in sources] == [16, 16, 32]
    plan = StepBatches(sources, batch=8, seed=0)
    # a step holds as many pixels whichever source it draws from
    assert plan.batch_sizes == [8, 8, 2]
    assert plan[2]["image"].shape == (2, 3, 32, 32) and plan[1]["image"].shape == (8, 3, 16, 16)
    with pytest.raises(TamcInputError, match="does not fit"):
        training_views(crops, str(folders / "train"), "crop", str(tmp_path / "large"), large_crop=128)
    with pytest.raises(TamcInputError, match="give --large-data"):
        training_views(crops, str(folders / "train"), "crop", None, large_crop=32)
    rec = train_stage1(_cfg(folders, tmp_path / "run", 3, crop=16, large_data=str(tmp_path / "large"),
                            large_crop=64), progress=False)
    assert rec["large_data"]["crop"] == 64 and rec["large_data"]["batch"] == 1


def test_init_starts_from_another_runs_anchor(folders, tmp_path):
    from tamc_codec.errors import TamcInputError

    train_stage1(_cfg(folders, tmp_path / "base", 30), progress=False)
    base = torch.load(tmp_path / "base" / "anchor.pt", weights_only=False)["model"]
    # with the learning rate at zero the fine-tune's model is the one it started from
    cfg = _cfg(folders, tmp_path / "tuned", 2, init=str(tmp_path / "base" / "anchor.pt"))
    cfg.lr = 0.0
    rec = train_stage1(cfg, progress=False)
    tuned = torch.load(tmp_path / "tuned" / "anchor.pt", weights_only=False)["model"]
    assert all(torch.equal(base[k], tuned[k]) for k in base)
    fresh, _ = _mean_losses_trained_and_fresh(rec, folders)
    assert fresh < 1.0  # the trained start, not random weights
    with pytest.raises(TamcInputError, match="other groups or networks"):
        train_stage1(Stage1Config(**{**cfg.__dict__, "out": str(tmp_path / "other"), "groups": GROUPS[:2]}),
                     progress=False)
    with pytest.raises(TamcInputError, match="no such file"):
        train_stage1(_cfg(folders, tmp_path / "missing", 2, init=str(tmp_path / "missing.pt")), progress=False)
    with pytest.raises(TamcInputError, match="shared warm-up"):
        train_stage1(_cfg(folders, tmp_path / "tied", 2, init=cfg.init, shared_warmup=2), progress=False)


def _encoder_gap(anchor_path) -> float:
    """Largest weight difference between the first group's encoder and the others'."""
    state = torch.load(anchor_path, weights_only=False)["model"]
    keys = [g.replace("+", "_") for g in GROUPS]
    first = [k for k in state if k.startswith(f"encoders.{keys[0]}.")]
    return max(float((state[k] - state[k.replace(keys[0], other, 1)]).abs().max()) for k in first for other in keys[1:])


def test_shared_warmup_trains_one_encoder_then_lets_them_part(folders, tmp_path):
    # during the warm-up the three encoders stay bit-identical although their groups' tasks differ
    train_stage1(_cfg(folders, tmp_path / "tied", 4, shared_warmup=4), progress=False)
    assert _encoder_gap(tmp_path / "tied" / "anchor.pt") == 0.0
    # after it each goes its own way; without it they never start equal
    train_stage1(_cfg(folders, tmp_path / "parted", 8, shared_warmup=4), progress=False)
    assert _encoder_gap(tmp_path / "parted" / "anchor.pt") > 0.0
    train_stage1(_cfg(folders, tmp_path / "apart", 1), progress=False)
    assert _encoder_gap(tmp_path / "apart" / "anchor.pt") > 0.01


def test_bf16_training_keeps_float32_weights_and_learns(folders, tmp_path):
    from tamc_codec.errors import TamcInputError

    rec = train_stage1(_cfg(folders, tmp_path / "bf16", 40, precision="bf16"), progress=False)
    state = torch.load(tmp_path / "bf16" / "anchor.pt", weights_only=False)["model"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    trained, fresh = _mean_losses_trained_and_fresh(rec, folders)
    assert trained < fresh
    with pytest.raises(TamcInputError, match="precision"):
        train_stage1(_cfg(folders, tmp_path / "bad", 1, precision="fp8"), progress=False)


def _free_port() -> int:
    # a fixed port collides with a run that is still shutting down (TIME_WAIT)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_stays_in_sync(folders, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "tamc_codec", "train", "stage1", "--data", str(folders / "train"), "--val", str(folders / "val"),
           "--groups", "seg+depth,edge+rgb", "--out", str(out), "--steps", "4", "--batch", "2", "--crop", "32",
           "--eval-every", "4", "--ckpt-every", "4", "--latent-channels", "8", "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((out / "stage1.json").read_text())
    assert rec["world_size"] == 2 and rec["ranks_in_sync"] is True


def test_groups_that_serve_nothing_are_not_coded(tmp_path):
    from tamc_codec.errors import TamcInputError
    from tamc_codec.dag.dag import fixed_dag
    from tamc_codec.train.stage2 import load_dag

    serving = {"seg": GROUPS[0], "depth": GROUPS[0], "normal": GROUPS[0], "edge": GROUPS[1],
               "keypoint": GROUPS[1], "rgb": GROUPS[1]}  # edge+keypoint+rgb has no receiver
    m = MultiGroupModel(GROUPS, NetConfig.from_dict(TINY), serving=serving)
    assert m.coded_groups == GROUPS[:2]
    every = tmp_path / "every.json"
    every.write_text(json.dumps(fixed_dag(GROUPS, {g: None for g in GROUPS}, GROUPS, "none")))
    with pytest.raises(TamcInputError, match="serve no task"):
        load_dag(every, m.coded_groups)
    coded = tmp_path / "coded.json"
    coded.write_text(json.dumps(fixed_dag(GROUPS[:2], {GROUPS[0]: None, GROUPS[1]: GROUPS[0]}, GROUPS[:2], "manual")))
    parents, order = load_dag(coded, m.coded_groups)
    assert order == GROUPS[:2] and parents[GROUPS[1]] == GROUPS[0]
