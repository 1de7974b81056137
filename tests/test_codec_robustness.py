"""Hostile and odd inputs on the encode side (issue 29), with the shipped model: the padded-size
limit, allocation failures, signals, multi-frame images, raw output formats, standard streams."""
from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tamc_codec
from tamc_codec import atomic, runtime
from tamc_codec.bitstream import Header, LayerSpec, TamcReader, pack
from tamc_codec.errors import TamcInputError

from tamc_helpers import assert_one_line_error, png_header_only, tamc

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "default")


@pytest.fixture(scope="module")
def small_png(tmp_path_factory) -> Path:
    rgb = np.asarray(Image.open(ROOT / "samples" / "room.png").convert("RGB"))[100:164, 200:272]
    path = tmp_path_factory.mktemp("small") / "small.png"
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture(scope="module")
def small_tamc(small_png, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("coded") / "small.tamc"
    path.write_bytes(runtime.encode_image(small_png, "all", 1, MODEL).data)
    return path


# --------------------------------------------------------------------------- 1. padded size


def test_thin_image_is_refused_by_its_padded_size_before_any_pixel(tmp_path, capsys):
    rt = runtime.load_model(MODEL)
    # 1 x 9000 fits any pixel count, but the pad multiple at that long side is 4096 (the scene layer
    # analyses it at 1/64 of its sides, 128 px across)
    assert runtime.check_image_size(rt, 1, 4000) == (2048, 4096)
    with pytest.raises(TamcInputError, match="padded to 4096x12288 = 50,331,648 pixels"):
        runtime.check_image_size(rt, 1, 9000)
    # a header without pixel data: refused on the limit, so no pixel was ever decoded
    (tmp_path / "thin.png").write_bytes(png_header_only(9000, 1))
    t = time.perf_counter()
    code, _, err = tamc(capsys, "encode", tmp_path / "thin.png", "--model", MODEL)
    assert_one_line_error(code, err, "thin.png", "1x9000 (HxW) is padded to 4096x12288", "--allow-large")
    with pytest.raises(TamcInputError, match="thin.png: 1x9000 .* allow_large=True"):
        tamc_codec.encode(str(tmp_path / "thin.png"), model=MODEL)
    # arrays and PIL images go through the same check
    with pytest.raises(TamcInputError, match="4096x12288"):
        tamc_codec.encode(np.zeros((1, 9000, 3), np.uint8), model=MODEL)
    with pytest.raises(TamcInputError, match="4096x12288"):
        tamc_codec.encode(Image.new("RGB", (9000, 1)), model=MODEL)
    assert time.perf_counter() - t < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thin.png"]


def test_crafted_padded_size_is_refused_before_allocation(small_tamc, tmp_path, capsys):
    with TamcReader(small_tamc) as r:
        h = r.header
        layers = [(LayerSpec(e.group, e.parent, e.tasks, e.coding), r.read_layer(e.index)) for e in r.layers]
    full_id = bytes.fromhex(runtime.load_model(MODEL).id)
    # versions 1 and 2 declare the padded size; version 3 claims the largest image instead, which the
    # model pads to more still
    crafted = pack(Header(model_id=full_id, height=h.height, width=h.width, padded_height=65536,
                          padded_width=65536, quality=h.quality, tasks=h.tasks, version=2), layers)
    huge = pack(Header(model_id=h.model_id, height=65535, width=65535, quality=h.quality, tasks=h.tasks), layers)
    t = time.perf_counter()
    with pytest.raises(TamcInputError, match="65536x65536 = 4,294,967,296 pixels"):
        tamc_codec.decode(crafted, "rgb", model=MODEL)
    with pytest.raises(TamcInputError, match="65535x65535 \\(HxW\\) is padded to .* allow_large=True"):
        tamc_codec.decode(huge, "rgb", model=MODEL)
    (tmp_path / "crafted.tamc").write_bytes(crafted)
    code, _, err = tamc(capsys, "decode", tmp_path / "crafted.tamc", "-t", "rgb", "--model", MODEL)
    assert_one_line_error(code, err, "padded to 65536x65536", "GB of memory")
    (tmp_path / "huge.tamc").write_bytes(huge)
    code, _, err = tamc(capsys, "decode", tmp_path / "huge.tamc", "-t", "rgb", "--model", MODEL)
    assert_one_line_error(code, err, "huge.tamc: 65535x65535 (HxW) is padded to", "GB of memory")
    assert time.perf_counter() - t < 5


# --------------------------------------------------------------------------- 2. allocation failures


def _allocation_failure():
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    # what onnxruntime 1.2x raises when its arena cannot grow (seen under `ulimit -v`)
    return Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv node. "
                "Status Message: bfc_arena.cc:360 Failed to allocate memory for requested buffer of size 536870912")


def test_onnxruntime_allocation_failure_is_one_out_of_memory_line(small_png, small_tamc, tmp_path, capsys,
                                                                     monkeypatch):
    import onnxruntime as ort

    def fail(self, *args, **kwargs):
        raise _allocation_failure()

    monkeypatch.setattr(ort.InferenceSession, "run", fail)
    with pytest.raises(MemoryError):  # depth: a learned layer, run by onnxruntime (rgb's is AVIF)
        runtime.encode_image(small_png, "depth", 1, MODEL)
    code, _, err = tamc(capsys, "encode", small_png, "-o", tmp_path / "x.tamc", "--model", MODEL)
    assert_one_line_error(code, err, "out of memory")
    code, _, err = tamc(capsys, "decode", small_tamc, "-t", "depth", "-o", tmp_path / "x.png", "--model", MODEL)
    assert_one_line_error(code, err, "out of memory")
    assert list(tmp_path.iterdir()) == []
    # any other onnxruntime failure stays what it was: not reported as memory
    monkeypatch.setattr(ort.InferenceSession, "run", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        runtime.encode_image(small_png, "depth", 1, MODEL)


# --------------------------------------------------------------------------- 3. signals


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.mark.parametrize("step", ["mkstemp", "body", "replace"])
def test_signal_at_each_file_step_leaves_no_temporary(tmp_path, monkeypatch, step):
    """SIGTERM delivered inside each step of an atomic write: the temporary file goes, and the
    destination is either untouched or complete."""
    import tempfile

    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    real_mkstemp, real_replace = tempfile.mkstemp, os.replace

    def mkstemp(*a, **k):
        out = real_mkstemp(*a, **k)
        signal.raise_signal(signal.SIGTERM)  # arrives before atomic_path knows the name
        return out

    def replace(a, b):
        real_replace(a, b)
        signal.raise_signal(signal.SIGTERM)  # arrives after the rename, before the bookkeeping

    if step == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    if step == "replace":
        monkeypatch.setattr(os, "replace", replace)
    with atomic.signals_handled(), pytest.raises(atomic.Terminated):
        atomic.atomic_write_bytes(dest, b"new")
        if step == "body":
            with atomic.atomic_path(dest) as tmp:
                tmp.write_bytes(b"half")
                signal.raise_signal(signal.SIGTERM)
    assert _temporaries(tmp_path) == []
    assert dest.read_bytes() == (b"new" if step in ("replace", "body") else b"old")
    assert signal.getsignal(signal.SIGTERM) is not atomic._on_signal  # handlers put back


@pytest.mark.slow
def test_sigterm_at_random_times_leaves_no_orphan(small_png, tmp_path):
    """`tamc encode` killed by SIGTERM at seeded random moments, many times: never a temporary
    file, and the output is either absent or complete."""
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "tamc_codec", "encode", str(small_png), "-o", str(out / "x.tamc"),
           "--tasks", "rgb", "--quality", "1", "--model", MODEL]
    env = dict(os.environ, OMP_NUM_THREADS="1", TAMC_THREADS="1")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=120)
    whole = time.perf_counter() - t
    reference = (out / "x.tamc").read_bytes()
    rng = random.Random(29)
    outcomes = {"absent": 0, "complete": 0}
    for _ in range(32):
        (out / "x.tamc").unlink(missing_ok=True)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # most draws late in the run, where the temporary file exists
        time.sleep(rng.uniform(0.3, 1.05) * whole)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
        assert b"Traceback" not in err, err.decode()
        assert p.returncode in (0, 143, -signal.SIGTERM), (p.returncode, err.decode())
        assert _temporaries(out) == []
        if (out / "x.tamc").exists():
            assert (out / "x.tamc").read_bytes() == reference
            outcomes["complete"] += 1
        else:
            outcomes["absent"] += 1
    assert outcomes["absent"] and outcomes["complete"], outcomes  # the draws straddled the write


# --------------------------------------------------------------------------- 4. several frames


def test_animation_and_multipage_tiff_code_the_first_frame_with_a_notice(tmp_path, capsys):
    from tamc_codec.runtime.images import read_image

    a = np.zeros((40, 48, 3), np.uint8)
    b = np.full((40, 48, 3), 200, np.uint8)
    Image.fromarray(a).save(tmp_path / "anim.gif", save_all=True, append_images=[Image.fromarray(b)], duration=50)
    Image.fromarray(a).save(tmp_path / "pages.tif", save_all=True, append_images=[Image.fromarray(b)])
    Image.fromarray(a).save(tmp_path / "still.gif")
    for name in ("anim.gif", "pages.tif"):
        notes: list[str] = []
        assert read_image(tmp_path / name, notices=notes).max() == 0, name  # the first frame
        assert len(notes) == 1 and "only the first is coded" in notes[0], notes
    notes = []
    read_image(tmp_path / "still.gif", notices=notes)
    assert notes == []
    code, _, err = tamc(capsys, "encode", tmp_path / "anim.gif", "--tasks", "rgb", "--model", MODEL)
    assert code == 0 and err.startswith("tamc: notice:") and "several frames" in err


# --------------------------------------------------------------------------- 5. raw formats


def test_raw_output_follows_its_extension(small_tamc, tmp_path, capsys):
    from tamc_codec.tasks import labels

    m = ["--model", MODEL]
    code, _, err = tamc(capsys, "decode", small_tamc, "-t", "depth", "--raw", tmp_path / "d.npy", *m)
    assert code == 0, err
    z = np.load(tmp_path / "d.npy")
    code, _, err = tamc(capsys, "decode", small_tamc, "-t", "depth", "--raw", tmp_path / "d.png", *m)
    assert code == 0, err
    with Image.open(tmp_path / "d.png") as im:
        assert im.format == "PNG" and im.mode == "I;16"
        stored = np.asarray(im)
    np.testing.assert_array_equal(stored, np.rint(z * 512.0).astype(np.uint16))  # CONTRACT.md: 512·z
    z_back, valid = labels.depth_from_png(stored)
    assert valid.all() and np.abs(z_back - z).max() <= 0.5 / 512 + 1e-6
    code, _, err = tamc(capsys, "decode", small_tamc, "-t", "seg", "--raw", tmp_path / "s.png", *m)
    assert code == 0, err
    assert Image.open(tmp_path / "s.png").mode == "L"
    for bad in ("d.jpg", "d.npz", "d"):
        code, _, err = tamc(capsys, "decode", small_tamc, "-t", "depth", "--raw", tmp_path / bad, *m)
        assert_one_line_error(code, err, "unknown raw format", ".npy", ".png")
        assert not (tmp_path / bad).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "d.png", "s.png"]


# --------------------------------------------------------------------------- 6. standard streams


def _cli(*args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tamc_codec", *map(str, args)], input=stdin, capture_output=True,
                          timeout=120)


def test_stdin_and_stdout_round_trip(small_png, small_tamc, tmp_path):
    m = ["--model", MODEL]
    r = _cli("encode", "-", "--quality", "1", *m, stdin=small_png.read_bytes())
    assert r.returncode == 0, r.stderr
    assert r.stdout == small_tamc.read_bytes()  # the same bytes as from the file
    assert b"total" in r.stderr  # the report moves to stderr when the data takes stdout
    r = _cli("encode", small_png, "-o", "-", "--quality", "1", "--json", *m)
    assert r.returncode == 0 and r.stdout == small_tamc.read_bytes() and b'"output": "-"' in r.stderr
    r = _cli("decode", "-", "-t", "seg", "--raw", "-", *m, stdin=small_tamc.read_bytes())
    assert r.returncode == 0, r.stderr
    expected = runtime.decode_task(small_tamc, "seg", MODEL).output
    np.testing.assert_array_equal(np.load(io.BytesIO(r.stdout)), expected)
    r = _cli("decode", "-", "-t", "rgb", *m, stdin=small_tamc.read_bytes())  # FILE - : picture to stdout
    assert r.returncode == 0 and Image.open(io.BytesIO(r.stdout)).format == "PNG"
    # errors stay one line, and nothing lands in a folder for a nameless input
    for args, stdin, needle in [
        (["encode", "-", "-o", tmp_path, *m], small_png.read_bytes(), "standard input has no name"),
        (["encode", "-", small_png, "-o", tmp_path, *m], b"", "one image"),
        (["encode", "-", *m], b"not an image", "-: not a readable image"),
        (["decode", "-", "-t", "seg", *m], b"not a tamc file", "not a .tamc file"),
        (["decode", small_tamc, "-t", "seg", "-o", "-", "--raw", "-", *m], b"", "cannot both go"),
    ]:
        r = _cli(*args, stdin=stdin)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1 and needle in err and "Traceback" not in err, (args, err)
    assert list(tmp_path.iterdir()) == []


def test_stdin_above_its_limit_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("tamc_codec.cli.codec_cmds.MAX_STDIN_BYTES", 10)

    class Stdin:
        buffer = io.BytesIO(b"x" * 100)

    Stdin.buffer.isatty = lambda: False
    monkeypatch.setattr(sys, "stdin", Stdin)
    code, _, err = tamc(capsys, "decode", "-", "-t", "seg", "--model", MODEL)
    assert_one_line_error(code, err, "standard input holds more than")
