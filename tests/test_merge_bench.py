"""benchmarks/merge_bench.py: classical curves of several bench runs beside one run's tamc curve."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SMALL = RESULTS / "bench_picture_small_scales"
FULL = RESULTS / "bench_picture"


def _merge(tmp_path: Path, *classical: Path, tamc: Path = SMALL) -> subprocess.CompletedProcess:
    args = [a for c in classical for a in ("--classical", str(c))]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "merge_bench.py"), *args, "--tamc", str(tamc),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)


def test_merging_gives_the_committed_all_scales_summary(tmp_path):
    res = _merge(tmp_path, FULL, SMALL)
    assert res.returncode == 0, res.stderr
    got = json.loads((tmp_path / "out" / "results.json").read_text())
    want = json.loads((RESULTS / "bench_picture_all_scales" / "results.json").read_text())
    assert got["summary"] == want["summary"]
    # every variant of both runs, once, and the tamc curve of the --tamc run
    names = set(got["curves"])
    assert {"avif", "avif@1/4+filter", "webp@1/8", "jpeg@1/16+filter", "tamc"} <= names
    assert got["curves"]["tamc"] == json.loads((SMALL / "results.json").read_text())["curves"]["tamc"]
    assert len(got["provenance"]["combined"]["classical_from"]) == 2


def test_runs_on_other_inputs_are_refused_in_one_line(tmp_path):
    doc = json.loads((FULL / "results.json").read_text())
    doc["anchor"]["tasks"]["edge"]["loss"] *= 1.01
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text(json.dumps(doc))
    res = _merge(tmp_path, other, SMALL)
    assert res.returncode != 0 and "anchor_line differs" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
