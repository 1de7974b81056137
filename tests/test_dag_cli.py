"""`tamc dag`: round trip through the command line, and one-line errors with exit status 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tamc_codec.cli import main
from tamc_codec.dag.dag import load_dag_json


def planted(n=16, c=8, h=8, w=8, seed=0):
    rng = np.random.default_rng(seed)
    a = 3.0 * rng.standard_normal((n, c, h, w))
    return {"seg": a.astype(np.float32),
            "depth": (a + rng.standard_normal(a.shape)).astype(np.float32),
            "normal": (6.0 * rng.standard_normal(a.shape)).astype(np.float32)}


def run(argv):
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code or 0
    return 0


@pytest.fixture
def latents(tmp_path):
    path = tmp_path / "latents.npz"
    np.savez(path, **planted())
    return path


def test_kde_round_trip_with_plot_and_json(latents, tmp_path, capsys):
    out, png = tmp_path / "dag.json", tmp_path / "dag.png"
    rc = run(["dag", "--latents", str(latents), "--out", str(out), "--plot", str(png),
              "--estimator", "kde", "--samples", "800", "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    stored = load_dag_json(out)
    assert printed == stored
    assert stored["estimator"] == "kde"
    assert stored["edges"] == [["seg", "depth"]]
    assert stored["data"]["path"] == str(latents)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_coding_summary(latents, tmp_path, capsys):
    out = tmp_path / "dag.json"
    rc = run(["dag", "--latents", str(latents), "--out", str(out), "--steps", "5", "-v"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "parent seg" in captured.out and "order: seg -> depth -> normal" in captured.out
    assert "tamc dag: H(seg)" in captured.err
    dag = load_dag_json(out)
    assert dag["estimator"] == "coding" and dag["settings"]["steps"] == 5


@pytest.mark.parametrize("make, match", [
    (lambda p: None, "not found"),
    (lambda p: p.write_bytes(b"junk"), "not a readable .npz"),
    (lambda p: np.savez(p, foo=np.zeros((2, 1, 2, 2))), "not a group id"),
    (lambda p: np.savez(p, seg=np.zeros((2, 2))), r"\[N, C, h, w\]"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make, match):
    import re
    path = tmp_path / "latents.npz"
    make(path)
    rc = run(["dag", "--latents", str(path), "--out", str(tmp_path / "dag.json")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("tamc: error:") and err.count("\n") == 1
    assert re.search(match, err)
    assert not (tmp_path / "dag.json").exists()


def test_help_reads_like_a_manual(capsys):
    assert run(["dag", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--latents", "--estimator", "coding", "kde", "topological", "Examples"):
        assert word in text
