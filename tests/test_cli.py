"""The command line: manual-like help, fast start without torch, one-line errors."""
import subprocess
import sys

import pytest


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "tamc_codec", *args], capture_output=True, text=True, timeout=120, **kw)


def test_help_lists_commands_and_imports_no_torch():
    code = ("import sys\nfrom tamc_codec.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'compressai', 'numpy', 'onnxruntime') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert "data" in r.stdout and "Commands" in r.stdout


@pytest.mark.parametrize("cmd", [["data", "synth"], ["data", "check"], ["train", "stage1"]])
def test_subcommand_help_reads_like_a_manual(cmd):
    r = run(*cmd, "--help")
    assert r.returncode == 0
    assert "Usage:" in r.stdout and len(r.stdout.splitlines()) > 5


def test_errors_are_one_line_with_exit_status_2(tmp_path):
    r = run("data", "check", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("tamc: error:")
    assert "Traceback" not in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    r = run("data", "synth", "--count", "1", "--size", "32", "--out", str(tmp_path / "full"), "-q")
    assert r.returncode == 2 and "not empty" in r.stderr
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    r = run("data", "synth", "--count", "1", "--size", "33", "--out", str(tmp_path / "new"), "-q")
    assert r.returncode == 2 and "multiple of 16" in r.stderr
    r = run("data", "synth", "--count", "1", "--split", "val", "--materials", "wide", "--out", str(tmp_path / "w"), "-q")
    assert r.returncode == 2 and "train split only" in r.stderr and r.stderr.strip().count("\n") == 0
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--lambdas", "0.5,0.1", "increasing"), ("--lambdas", "a,b", "numbers separated by commas"),
    ("--gain-range", "8,0.25", "LOW < HIGH"), ("--gain-range", "0.25", "LOW < HIGH"), ("--gain-range", "x,8", "numbers separated by commas"),
])
def test_train_stage2_rejects_bad_rate_settings(tmp_path, option, value, message):
    r = run("train", "stage2", "--anchor", "a.pt", "--dag", "d.json", "--data", "d", "--val", "v",
            "--out", str(tmp_path / "run"), option, value)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_data_synth_smoke(tmp_path):
    r = run("data", "synth", "--count", "2", "--size", "32", "--seed", "0", "--out", str(tmp_path / "s"), "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "meta.json").exists()
    r = run("data", "check", str(tmp_path / "s"), "--json")
    assert r.returncode == 0 and '"count": 2' in r.stdout


def test_train_stage1_rejects_bad_groups(tmp_path):
    r = run("train", "stage1", "--data", str(tmp_path), "--val", str(tmp_path), "--groups", "seg+sky",
            "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "unknown task 'sky'" in r.stderr and "Traceback" not in r.stderr
