"""`tamc group` end to end on a tiny generated folder, and its one-line errors."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")

from tamc_codec.cli import main  # noqa: E402
from tamc_codec.data.folder import synthesize  # noqa: E402
from tamc_codec.grouping.grouping_io import load_grouping  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("group") / "d"
    synthesize(root, 8, 64, 0, workers=1)
    return root


def run(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def ok(capsys, *argv):
    try:
        main(list(argv))
    except SystemExit as exc:  # click may exit 0 explicitly
        assert exc.code in (0, None), capsys.readouterr()
    return capsys.readouterr()


def test_group_lookahead_writes_grouping_and_plot(folder, tmp_path, capsys):
    out, plot = tmp_path / "g.json", tmp_path / "a.png"
    res = ok(capsys, "group", "--data", str(folder), "--steps", "4", "--every", "2", "--batch-size", "4",
             "--budget", "2.5", "--threads", "1", "--out", str(out), "--plot", str(plot), "-q", "-v")
    d = load_grouping(out)
    assert d["method"] == "lookahead" and d["tasks"] == ["seg", "depth", "normal", "edge", "keypoint", "rgb"]
    assert 1 <= len(d["groups"]) <= 2 and d["budget"] == 2.5
    assert d["settings"]["steps"] == 4 and d["settings"]["lookaheads"] == 2
    assert d["data"]["count"] == 8 and d["runtime_s"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Ĉ(u -> v)" in res.out and f"wrote {out}" in res.out


def test_group_json_and_aliases(folder, tmp_path, capsys):
    out = tmp_path / "g.json"
    res = ok(capsys, "group", "--data", str(folder), "--tasks", "depth_zbuffer,normal,edge_texture",
             "--steps", "2", "--every", "1", "--batch-size", "4", "--budget", "1", "--threads", "1",
             "--out", str(out), "--json")
    d = json.loads(res.out)
    assert d == load_grouping(out)
    assert d["tasks"] == ["depth", "normal", "edge"] and d["groups"] == ["depth+normal+edge"]


def test_group_dmtg(folder, tmp_path, capsys):
    ref = tmp_path / "ref.json"
    ok(capsys, "group", "--data", str(folder), "--tasks", "seg,depth,rgb", "--steps", "2", "--every", "1",
       "--batch-size", "4", "--budget", "2", "--threads", "1", "--out", str(ref), "-q")
    for extra in ([], ["--affinity-from", str(ref)]):
        out = tmp_path / "dmtg.json"
        ok(capsys, "group", "--data", str(folder), "--tasks", "seg,depth,rgb", "--method", "dmtg",
           "--steps", "3", "--batch-size", "4", "--budget", "2", "--threads", "1", "--out", str(out), "-q", *extra)
        d = load_grouping(out)
        assert d["method"] == "dmtg" and len(d["assignment_probs"]) == 3
        assert sorted(t for g in d["groups"] for t in g.split("+")) == sorted(d["tasks"])  # a partition
        assert (d["affinity"] is None) == (not extra)


@pytest.mark.parametrize("argv, message", [
    (["--budget", "0.5"], "smaller than one group"),
    (["--tasks", "seg,fog"], "unknown task 'fog'"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--affinity-from", "x.json"], "only applies to --method dmtg"),
])
def test_group_bad_arguments(folder, tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "group", "--data", str(folder), "--out", str(tmp_path / "g.json"), *argv)
    assert code == 2 and out == ""
    assert err.startswith("tamc: error:") and message in err and err.count("\n") == 1
    assert not (tmp_path / "g.json").exists()


def test_group_data_without_labels(folder, tmp_path, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial, ignore=shutil.ignore_patterns("cache"))
    shutil.rmtree(partial / "keypoint")
    code, _, err = run(capsys, "group", "--data", str(partial), "--steps", "1", "--out", str(tmp_path / "g.json"))
    assert code == 2 and err.startswith("tamc: error:") and "'keypoint' has no labels" in err
    # the other tasks still work without it
    ok(capsys, "group", "--data", str(partial), "--tasks", "seg,depth", "--steps", "1", "--batch-size", "4",
       "--budget", "1", "--threads", "1", "--out", str(tmp_path / "g.json"), "-q")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(folder / "rgb" / "000000.png", photos / "a.png")
    code, _, err = run(capsys, "group", "--data", str(photos), "--tasks", "seg", "--out", str(tmp_path / "h.json"))
    assert code == 2 and err.startswith("tamc: error:") and "meta.json" in err
    code, _, err = run(capsys, "group", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "h.json"))
    assert code == 2 and "no such data folder" in err


def test_group_help_reads_like_a_manual(capsys):
    res = ok(capsys, "group", "--help")
    for word in ("--budget", "--every", "branch and bound", "gumbel", "examples", "heat map"):
        assert word in res.out.lower()


def test_scene_memory_flips_consistently(folder):
    import torch

    from tamc_codec.data.torch_dataset import MultiTaskDataset
    from tamc_codec.grouping.affinity import SceneMemory

    ds = MultiTaskDataset(folder, ["seg", "depth", "normal", "rgb"], train=False, downsample=2)
    mem = SceneMemory(ds, seed=0)
    seen = set()
    for _ in range(12):
        s, r = mem[3], ds[3]
        flipped = not torch.allclose(s["image"], r["image"], atol=2e-3)
        seen.add(flipped)
        ref = {k: (v.flip(-1) if flipped else v) for k, v in r.items()}
        if flipped:
            ref["normal"][0] = -ref["normal"][0]
        assert s.keys() == ref.keys() and s["seg"].dtype == torch.int64
        for k in ref:
            assert torch.allclose(torch.nan_to_num(s[k].float(), 9.0), torch.nan_to_num(ref[k].float(), 9.0), atol=2e-3), k
    assert seen == {True, False} and len(mem.store) == 1
