"""``tamc info``: output, --json, errors, and a start path free of numpy/torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tamc_codec.cli import cli

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden_v1.tamc"


def test_info_text():
    res = CliRunner().invoke(cli, ["info", str(GOLDEN)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "format version 1" in out and "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf" in out
    assert "40x56" in out and "64x64" in out and "seg, depth, edge, keypoint" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("0 ", "1 ", "2 "))]) == 3


def test_info_json_matches_golden():
    res = CliRunner().invoke(cli, ["info", str(GOLDEN), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    exp = json.loads((DATA / "golden_v1.json").read_text())
    assert d["format_version"] == 1 and d["file_size"] == exp["file_size"]
    assert d["model_id"] == exp["header"]["model_id"]
    assert d["image_size"] == exp["header"]["image_size"] and d["padded_size"] == exp["header"]["padded_size"]
    assert d["quality"] == exp["header"]["quality"] and d["tasks"] == exp["header"]["tasks"]
    assert [(x["index"], x["group"], x["parent"], x["offset"], x["length"], x["tasks"]) for x in d["layers"]] == [
        (i, x["group"], x["parent"], x["offset"], x["length"], x["tasks"]) for i, x in enumerate(exp["layers"])]


def test_info_of_a_version_3_file():
    """Version 3 stores the model id's first 4 bytes and no padded size: info shows the prefix and no
    padded size (JSON null), with the same keys as for the older versions."""
    golden = DATA / "golden_v3.tamc"
    exp = json.loads((DATA / "golden_v3.json").read_text())
    res = CliRunner().invoke(cli, ["info", str(golden)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "format version 3" in out and "model id     c0c1c2c3 (its first 4 bytes)" in out
    assert "image size   40x56 (HxW)\n" in out and "padded" not in out
    assert f"header       {exp['header_size']} bytes" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[3] for row in rows] == ["latent", "latent", "latent", "avif"] and rows[2][-1] == "only)"
    res = CliRunner().invoke(cli, ["info", str(golden), "--json"])
    d = json.loads(res.output)
    v1 = json.loads(CliRunner().invoke(cli, ["info", str(GOLDEN), "--json"]).output)
    assert d.keys() == v1.keys() and d["layers"][0].keys() == v1["layers"][0].keys()
    assert d["format_version"] == 3 and d["model_id"] == "c0c1c2c3" and d["padded_size"] is None
    assert d["header_size"] == exp["header_size"] == 45 and d["file_size"] == exp["file_size"]
    assert [(x["offset"], x["length"], x["crc32"]) for x in d["layers"]] == [
        (x["offset"], x["length"], x["check"]) for x in exp["layers"]]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)


def test_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.tamc"
    bad.write_bytes(GOLDEN.read_bytes()[:50])
    for path, msg in [(bad, "truncated"), (tmp_path / "missing.tamc", "no such file")]:
        res = _run("-m", "tamc_codec", "info", str(path))
        assert res.returncode == 2
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tamc: error:") and msg in lines[0], res.stderr
    v3 = bytearray((DATA / "golden_v3.tamc").read_bytes())
    v3[7] ^= 1
    bad.write_bytes(bytes(v3))
    res = _run("-m", "tamc_codec", "info", str(bad))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "header CRC mismatch" in res.stderr
    flipped = bytearray(GOLDEN.read_bytes())
    flipped[4] = 9
    bad.write_bytes(bytes(flipped))
    res = _run("-m", "tamc_codec", "info", str(bad))
    assert res.returncode == 2 and "version 9" in res.stderr


def test_info_imports_no_numpy_or_torch():
    res = _run("-X", "importtime", "-m", "tamc_codec", "info", str(GOLDEN))
    assert res.returncode == 0
    heavy = [line for line in res.stderr.splitlines() if "numpy" in line or "torch" in line]
    assert not heavy, heavy[:5]
