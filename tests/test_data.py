import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tamc_codec.contract import TASKS
from tamc_codec.data import synth, textures
from tamc_codec.data.arrays import denormalise, normalise
from tamc_codec.data.folder import ImageFolder, SceneFolder, open_data, read_image, synthesize
from tamc_codec.errors import TamcInputError


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "train"
    synthesize(out, 4, 64, 10, workers=2)
    return out


def test_layout_and_meta(scenes):
    meta = json.loads((scenes / "meta.json").read_text())
    assert meta["count"] == 4 and meta["split"] == "train" and meta["first_seed"] == 10
    assert meta["generator"]["version"] == synth.GENERATOR_VERSION
    assert set(meta["intrinsics"]) == {"fx", "fy", "cx", "cy"}
    for t in TASKS:
        assert sorted(p.name for p in (scenes / t).iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert Image.open(scenes / "depth" / "000000.png").mode == "I;16"
    assert Image.open(scenes / "edge" / "000000.png").mode == "I;16"
    assert Image.open(scenes / "normal" / "000000.png").mode == "RGB"


def test_same_seed_same_bytes_whatever_the_worker_count(scenes, tmp_path):
    synthesize(tmp_path / "one", 4, 64, 10, workers=1)
    assert _digest(tmp_path / "one") == _digest(scenes)
    synthesize(tmp_path / "shifted", 2, 64, 12, workers=1)
    # scene i depends only on its seed: seeds 12, 13 are scenes 2, 3 of the first run
    a, b = _digest(tmp_path / "shifted"), _digest(scenes)
    assert a["rgb/000000.png"] == b["rgb/000002.png"] and a["depth/000001.png"] == b["depth/000003.png"]


def test_texture_split_is_disjoint_and_enforced(monkeypatch):
    splits = textures.PHOTO_SPLITS
    assert not set(splits["train"]) & set(splits["test"])
    assert not set(splits["train"]) & set(splits["val"])
    assert not set(splits["val"]) & set(splits["test"])
    used = []
    real = textures.photo
    monkeypatch.setattr(textures, "photo", lambda name: used.append(name) or real(name))
    for seed in range(2_000_000, 2_000_006):
        synth.build_scene(seed, splits["test"])
    assert used and set(used) <= set(splits["test"])


def test_standard_material_set_renders_what_it_always_rendered():
    # the val and test folders behind every recorded number are standard scenes: a change to the
    # generator's standard path would silently move them (pixels, not PNG bytes, are pinned)
    s = synth.generate(10, 64, textures.PHOTO_SPLITS["train"])
    assert hashlib.sha256(np.ascontiguousarray(s["rgb"]).tobytes()).hexdigest() == \
        "aad5b3418bf58af4970b8c30b6ec1e377fd14cddf5e8fdd5b3ac2d2a88d7dd14"


def test_wide_material_set_is_deterministic_train_only_and_recorded(tmp_path, monkeypatch):
    used = []
    real = textures.photo
    monkeypatch.setattr(textures, "photo", lambda name: used.append(name) or real(name))
    rng = np.random.default_rng(3)
    looks = set()
    for _ in range(60):
        tile, scale = textures.make_material(rng, textures.PHOTO_SPLITS["train"], "wide")
        assert tile.shape == (textures.TEXTURE_SIZE, textures.TEXTURE_SIZE, 3) and tile.dtype == np.float32
        assert 0.0 <= tile.min() and tile.max() <= 1.0 and scale > 0
        looks.add(round(float(tile.std()), 3))
    assert len(looks) > 40  # varied surfaces, not one tile repeated
    assert used and set(used) <= set(textures.PHOTO_SPLITS["train"])

    meta = synthesize(tmp_path / "wide", 2, 64, 10, workers=1, materials="wide")
    assert meta["materials"] == "wide" and meta["split"] == "train"
    again = synthesize(tmp_path / "again", 2, 64, 10, workers=2, materials="wide")
    assert again["materials"] == "wide" and _digest(tmp_path / "again") == _digest(tmp_path / "wide")
    standard = synth.generate(10, 64, textures.PHOTO_SPLITS["train"])["rgb"]
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "wide" / "rgb" / "000000.png")), standard)
    for split_seed in (1_000_000, 2_000_000):
        with pytest.raises(TamcInputError, match="train split only"):
            synthesize(tmp_path / f"refused{split_seed}", 1, 64, split_seed, materials="wide")
        assert not (tmp_path / f"refused{split_seed}").exists()
    with pytest.raises(TamcInputError, match="--materials must be one of"):
        synthesize(tmp_path / "unknown", 1, 64, 10, materials="shiny")


def test_scenes_have_objects_and_varied_labels(scenes):
    d = SceneFolder.open(scenes)
    classes = set()
    for i in range(len(d)):
        s = d[i]
        classes |= set(np.unique(s["seg"]).tolist())
        assert s["valid"].mean() > 0.99
        assert 0.3 < s["depth"][s["valid"]].min() and s["depth"].max() < 20
        np.testing.assert_allclose(np.linalg.norm(s["normal"], axis=-1), 1.0, atol=1e-5)
        assert s["image"].std() > 5  # not a blank render
    assert 1 in classes and len(classes - {0, 1}) >= 2


def test_loader_reports_half_filled_folders(scenes, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(scenes, broken)
    (broken / "normal" / "000002.png").unlink()
    with pytest.raises(TamcInputError, match="normal"):
        SceneFolder.open(broken)
    SceneFolder.open(broken, tasks=["seg", "depth"])  # tasks that are complete still load
    (broken / "meta.json").unlink()
    with pytest.raises(TamcInputError, match="meta.json"):
        open_data(broken)
    with pytest.raises(TamcInputError, match="no such"):
        SceneFolder.open(tmp_path / "nowhere")


def test_plain_image_folder(tmp_path):
    img = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img).convert("L").save(tmp_path / "b.jpg")
    d = open_data(tmp_path)
    assert isinstance(d, ImageFolder) and len(d) == 2
    s = d[1]
    assert s["image"].shape == (40, 50, 3) and s["edge"].shape == (40, 50) and s["keypoint"].shape == (40, 50)
    with pytest.raises(TamcInputError, match="no labels for seg"):
        ImageFolder.open(tmp_path, tasks=["seg"])


def test_read_image_policy(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: composited on black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert read_image(tmp_path / "alpha.png").max() == 0
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png").min() == 255
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(TamcInputError, match="not a readable image"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(TamcInputError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_synthesize_refuses_bad_arguments(tmp_path, scenes):
    with pytest.raises(TamcInputError, match="not empty"):
        synthesize(scenes, 1, 64, 0)
    with pytest.raises(TamcInputError, match="one split"):
        synthesize(tmp_path / "x", 10, 64, 999_995)
    with pytest.raises(TamcInputError, match="multiple of 16"):
        synthesize(tmp_path / "y", 1, 70, 0)


def test_normalise_round_trip(scenes):
    d = SceneFolder.open(scenes)
    stored = d.stored(0)
    raw = d[0]
    for t in ("depth", "edge", "keypoint"):
        target = normalise(t, stored[t])
        assert target.shape == (1,) + stored[t].shape
        back = denormalise(t, np.nan_to_num(target))
        np.testing.assert_allclose(back, np.where(raw.get("valid", True), raw[t], 0) if t == "depth" else raw[t],
                                   atol=1e-5)
    n = normalise("normal", stored["normal"])
    np.testing.assert_allclose(np.moveaxis(n, 0, -1), raw["normal"], atol=1e-6)
    assert normalise("seg", stored["seg"]).dtype == np.int64


def test_torch_dataset_shapes_flips_and_downsampling(scenes):
    torch = pytest.importorskip("torch")
    from tamc_codec.data.torch_dataset import MultiTaskDataset

    ds = MultiTaskDataset(scenes, crop=48, train=True)
    s = ds[0]
    assert s["image"].shape == (3, 48, 48) and s["seg"].shape == (48, 48) and s["seg"].dtype == torch.int64
    assert s["depth"].shape == (1, 48, 48) and s["normal"].shape == (3, 48, 48)
    ev = MultiTaskDataset(scenes, train=False, downsample=4)
    e = ev[1]
    assert e["image"].shape == (3, 16, 16) and e["seg"].shape == (16, 16) and e["edge"].shape == (1, 16, 16)
    assert torch.isfinite(e["depth"]).all()
    # evaluation samples are deterministic
    assert torch.equal(ev[1]["image"], e["image"])



def _build_after(barrier, root: str, results) -> None:
    from tamc_codec.data.arrays import build_cache

    barrier.wait()  # start together, as torchrun's ranks do
    try:
        results.put(str(build_cache(SceneFolder.open(root, TASKS))))
    except Exception as e:  # noqa: BLE001 - the test reports what went wrong in the child
        results.put(f"error: {e}")


def test_two_processes_can_build_one_cache_at_once(tmp_path):
    """The ranks of a torchrun job open the same fresh folder together; neither may fail."""
    import multiprocessing as mp

    from tamc_codec.data.arrays import load_cache

    synthesize(tmp_path / "d", 12, 64, 0, workers=1)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_build_after, args=(barrier, str(tmp_path / "d"), results)) for _ in range(2)]
    for pr in procs:
        pr.start()
    caches = [results.get(timeout=120) for _ in procs]
    for pr in procs:
        pr.join(timeout=60)
    assert len(set(caches)) == 1 and not caches[0].startswith("error"), caches
    arrays = load_cache(caches[0], TASKS)
    assert arrays["rgb"].shape == (12, 64, 64, 3)
    assert not list(Path(caches[0]).glob("*.tmp"))
    assert json.loads((Path(caches[0]) / "cache.json").read_text())["count"] == 12
