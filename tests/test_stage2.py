"""Stage 2's training loop: the same batches with any number of loader processes and after a resume."""
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from tamc_codec.data.folder import synthesize  # noqa: E402
from tamc_codec.nets.multitask import NetConfig  # noqa: E402
from tamc_codec.train.stage1 import Stage1Config, train_stage1  # noqa: E402
from tamc_codec.train.stage2 import Stage2Config, train_stage2  # noqa: E402

GROUPS = ["seg+depth", "edge+rgb"]


@pytest.fixture(scope="module")
def anchor_and_dag(tmp_path_factory):
    from tamc_codec.dag.dag import fixed_dag

    root = tmp_path_factory.mktemp("stage2")
    synthesize(root / "train", 4, 32, 0, workers=1)
    synthesize(root / "val", 2, 32, 1_000_000, workers=1)
    net = NetConfig(latent_channels=8, encoder_channels=(8, 8, 8), decoder_channels=(8, 8, 8),
                    full_res_channels=8).to_dict()
    train_stage1(Stage1Config(data=str(root / "train"), val=str(root / "val"), groups=GROUPS, out=str(root / "s1"),
                              steps=2, batch=2, crop=32, warmup=1, eval_every=2, trivial_samples=4, net=net),
                 progress=False)
    state = torch.load(root / "s1" / "anchor.pt", weights_only=False)
    state["describe"]["serving"] = {"seg": "seg+depth", "depth": "seg+depth", "edge": "edge+rgb", "rgb": "edge+rgb"}
    torch.save(state, root / "s1" / "anchor.pt")
    (root / "dag.json").write_text(json.dumps(fixed_dag(GROUPS, {"seg+depth": None, "edge+rgb": "seg+depth"},
                                                        GROUPS, "manual")))
    return root


def _cfg(root, out, **kw):
    return Stage2Config(anchor=str(root / "s1" / "anchor.pt"), dag=str(root / "dag.json"), data=str(root / "train"),
                        val=str(root / "val"), out=str(out), lambdas=[0.1, 1.0], steps_entropy=3, steps_finetune=3,
                        batch=2, crop=32, hyper_channels=8, ckpt_every=100, **kw)


def test_loader_processes_and_a_resume_leave_the_run_unchanged(anchor_and_dag, tmp_path):
    straight = train_stage2(_cfg(anchor_and_dag, tmp_path / "a"), progress=False)
    ahead = train_stage2(_cfg(anchor_and_dag, tmp_path / "b", workers=2), progress=False)
    assert ahead["rd"] == straight["rd"]
    assert train_stage2(_cfg(anchor_and_dag, tmp_path / "c"), progress=False, stop_after=4) == \
        {"paused": True, "steps": 4}
    resumed = train_stage2(_cfg(anchor_and_dag, tmp_path / "c"), progress=False)
    assert resumed["steps"] == 6
    # as in stage 1's resume test: the same batches, noise and optimiser state, equal up to float order
    for r, q in zip(resumed["rd"], straight["rd"]):
        assert r["bpp_total"] == pytest.approx(q["bpp_total"], rel=1e-3)
        assert {t: v["loss"] for t, v in r["tasks"].items()} == \
            pytest.approx({t: v["loss"] for t, v in q["tasks"].items()}, rel=1e-3)
    assert straight["hardware"].endswith("threads")


def test_a_pause_on_the_last_entropy_step_resumes_into_fine_tuning(anchor_and_dag, tmp_path):
    """The checkpoint taken as phase A ends holds phase A's optimiser; the resumed run must load
    it as such and then start phase B, as an unpaused run does."""
    straight = train_stage2(_cfg(anchor_and_dag, tmp_path / "a"), progress=False)
    assert train_stage2(_cfg(anchor_and_dag, tmp_path / "b"), progress=False, stop_after=3)["steps"] == 3
    resumed = train_stage2(_cfg(anchor_and_dag, tmp_path / "b"), progress=False)
    assert resumed["steps"] == 6
    for r, q in zip(resumed["rd"], straight["rd"]):
        assert r["bpp_total"] == pytest.approx(q["bpp_total"], rel=1e-3)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(anchor_and_dag, tmp_path):
    from tamc_codec.errors import TamcInputError

    with pytest.raises(TamcInputError, match="no CUDA device"):
        train_stage2(_cfg(anchor_and_dag, tmp_path / "gpu", device="cuda"), progress=False)


def test_larger_scenes_change_the_batches_stage2_sees(anchor_and_dag, tmp_path):
    # every other step draws 32 px crops of the 64 px scenes instead of the whole 32 px ones: another run
    synthesize(tmp_path / "large", 2, 64, 500_000, workers=1)
    plain = train_stage2(_cfg(anchor_and_dag, tmp_path / "plain"), progress=False)
    large = train_stage2(_cfg(anchor_and_dag, tmp_path / "large-run", large_data=str(tmp_path / "large")),
                         progress=False)
    assert large["config"]["large_data"].endswith("large") and large["steps"] == plain["steps"] == 6
    assert large["rd"] != plain["rd"]
    # whole 64 px scenes instead of their 32 px crops (one per batch): another run again
    whole = train_stage2(_cfg(anchor_and_dag, tmp_path / "whole-run", large_data=str(tmp_path / "large"),
                              large_crop=64), progress=False)
    assert whole["config"]["large_crop"] == 64 and whole["rd"] != large["rd"]


def test_augment_changes_only_what_the_scene_task_groups_see(anchor_and_dag, tmp_path):
    import numpy as np

    from tamc_codec.train.photometric import photometric_batch, photometric_change
    from tamc_codec.train.anchor import load_anchor
    from tamc_codec.train.stage2 import augmented_groups

    # the batch version is the codec-side change (8-bit pictures) applied to training tensors
    img = np.random.default_rng(0).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    one = photometric_change(img, np.random.default_rng(5))
    batch = photometric_batch(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, np.random.default_rng(5))
    assert np.abs(batch[0].permute(1, 2, 0).numpy() * 255 - one).max() <= 1.0001
    assert (one != img).any()
    # seg+depth serves seg and depth only; edge+rgb's labels are made of the pixels
    assert augmented_groups(load_anchor(anchor_and_dag / "s1" / "anchor.pt"), pixels=False) == ["seg+depth"]
    plain = train_stage2(_cfg(anchor_and_dag, tmp_path / "plain"), progress=False)
    augmented = train_stage2(_cfg(anchor_and_dag, tmp_path / "aug", augment=True), progress=False)
    assert augmented["config"]["augment"] and augmented["rd"] != plain["rd"]


def test_pixel_labels_of_a_stored_scene_are_its_stored_labels(anchor_and_dag):
    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.train.photometric import pixel_labels

    ds = MultiTaskDataset(anchor_and_dag / "train", ["edge", "keypoint", "rgb"], train=False)
    for i in range(2):
        s = ds.sample(i)
        made = pixel_labels(s["image"][None], ["edge", "keypoint", "rgb"])
        for t in ("edge", "keypoint", "rgb"):
            torch.testing.assert_close(made[t][0], s[t], rtol=0, atol=0, msg=f"{t}, scene {i}")
        # a mirrored scene's stored labels are mirrored; edge's filter is symmetric, so they are its own.
        # The keypoint filter (box-filtered Hessian) is not: there the mirrored picture gets its own label
        s = ds.sample(i, flip=True)
        made = pixel_labels(s["image"][None], ["edge", "rgb"])
        for t in ("edge", "rgb"):
            torch.testing.assert_close(made[t][0], s[t], rtol=0, atol=0, msg=f"{t}, scene {i}, mirrored")
    with pytest.raises(ValueError):
        pixel_labels(s["image"][None], ["seg"])


def test_augment_pixels_shows_every_group_the_change_with_labels_made_again(anchor_and_dag, tmp_path):
    from tamc_codec.errors import TamcInputError

    with pytest.raises(TamcInputError):
        train_stage2(_cfg(anchor_and_dag, tmp_path / "bad", augment_pixels=True), progress=False)
    from tamc_codec.train.anchor import load_anchor
    from tamc_codec.train.stage2 import augmented_groups

    # edge+rgb serves edge and rgb, both labelled again from the changed picture
    assert augmented_groups(load_anchor(anchor_and_dag / "s1" / "anchor.pt"), pixels=True) == GROUPS
    scene_only = train_stage2(_cfg(anchor_and_dag, tmp_path / "aug", augment=True), progress=False)
    every = train_stage2(_cfg(anchor_and_dag, tmp_path / "all", augment=True, augment_pixels=True), progress=False)
    assert every["config"]["augment_pixels"] and every["rd"] != scene_only["rd"]
