"""``tamc encode`` / ``tamc decode`` on a tiny model: round trips, partial decoding, bad input, image policy."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tamc_codec import runtime
from tamc_codec.errors import TamcInputError
from tamc_codec.bitstream import Header, LayerSpec, TamcReader, pack
from tamc_codec.contract import TASKS

from tamc_helpers import assert_one_line_error, png_header_only, tamc


@pytest.fixture(scope="module")
def image_png(tmp_path_factory) -> Path:
    from tamc_codec.data import synth, textures

    rgb = synth.render(synth.build_scene(7, textures.PHOTO_SPLITS["val"]), 96)["rgb"][:80, :90]
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture(scope="module")
def coded(tiny_exported, image_png, tmp_path_factory) -> Path:
    """photo.tamc with every task, quality 2."""
    dest = tmp_path_factory.mktemp("coded") / "photo.tamc"
    data = runtime.encode_image(image_png, "all", 2, str(tiny_exported)).data
    dest.write_bytes(data)
    return dest


def test_encode_report_names_and_json(tiny_exported, image_png, tmp_path, capsys):
    src = tmp_path / "photo.png"
    src.write_bytes(image_png.read_bytes())
    code, out, err = tamc(capsys, "encode", src, "--model", tiny_exported)
    assert code == 0, err
    dest = tmp_path / "photo.tamc"
    size = dest.stat().st_size
    assert f"total {size} bytes" in out and "bpp" in out and "seg+depth+normal" in out
    rt = runtime.load_model(str(tiny_exported))
    assert dest.read_bytes() == runtime.encode_image(image_png, "all", rt.qualities, rt).data  # default q = highest
    code, out, err = tamc(capsys, "encode", src, "-o", tmp_path / "seg.tamc", "--tasks", "segment_semantic",
                          "--quality", "1", "--model", tiny_exported, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["tasks"] == ["seg"] and r["quality"] == 1 and r["image_size"] == [80, 90]
    assert [l["group"] for l in r["layers"]] == ["seg+depth+normal"]  # serving group only: it is a root
    size = (tmp_path / "seg.tamc").stat().st_size
    assert r["total_bytes"] == size == r["header_bytes"] + sum(l["bytes"] for l in r["layers"])
    assert r["bpp"] == pytest.approx(8 * size / (80 * 90))
    # keypoint needs its serving group and that group's DAG parent, nothing else
    code, out, _ = tamc(capsys, "encode", src, "-o", tmp_path, "--tasks", "keypoint", "--model", tiny_exported, "--json")
    assert [l["group"] for l in json.loads(out)["layers"]] == ["seg+depth+normal", "edge+keypoint+rgb"]
    assert json.loads(out)["output"] == str(tmp_path / "photo.tamc")


def test_round_trip_every_task(tiny_exported, coded, tmp_path, capsys):
    for t in TASKS:
        pic, raw = tmp_path / f"{t}.png", tmp_path / f"{t}.npy"
        code, out, err = tamc(capsys, "decode", coded, "--task", t, "-o", pic, "--raw", raw, "--model", tiny_exported)
        assert code == 0, err
        arr = np.load(raw)
        np.testing.assert_array_equal(arr, runtime.decode_task(coded.read_bytes(), t, str(tiny_exported)).output)
        assert arr.shape[:2] == (80, 90)
        shown = np.asarray(Image.open(pic))
        assert shown.shape == ((80, 90) if t in ("edge", "keypoint") else (80, 90, 3)), t
        if t == "rgb":
            np.testing.assert_array_equal(shown, arr)
    # default name beside the file; --raw alone writes only the array
    code, _, err = tamc(capsys, "decode", coded, "-t", "depth_zbuffer", "--model", tiny_exported)
    assert code == 0, err and (coded.parent / "photo.depth.png").exists()
    code, _, err = tamc(capsys, "decode", coded, "-t", "edge", "--raw", tmp_path / "only.npy", "--model", tiny_exported)
    assert code == 0 and not (coded.parent / "photo.edge.png").exists()


def test_partial_decoding_reported_and_independent_of_other_layers(tiny_exported, coded, tmp_path, capsys):
    code, out, err = tamc(capsys, "decode", coded, "--task", "seg", "--raw", tmp_path / "a.npy",
                          "--model", tiny_exported, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["bytes_read"] < r["file_size"] == coded.stat().st_size
    assert r["groups_read"] == ["seg+depth+normal"] and r["layers_in_file"] == 3
    code, out, _ = tamc(capsys, "decode", coded, "--task", "seg", "--raw", tmp_path / "a.npy", "--model", tiny_exported, "-v")
    assert f"of {coded.stat().st_size} bytes" in out and "read layers 0 of 3" in out
    # garble every byte of the layers seg does not need: seg's output must not change
    data = bytearray(coded.read_bytes())
    with TamcReader(bytes(data)) as reader:
        need = reader.layers_for_task("seg")
        for e in reader.layers:
            if e.index not in need:
                start = reader.header_size + e.offset
                data[start:start + e.length] = bytes(b ^ 0xA5 for b in data[start:start + e.length])
    bad = tmp_path / "bad.tamc"
    bad.write_bytes(bytes(data))
    code, _, err = tamc(capsys, "decode", bad, "--task", "seg", "--raw", tmp_path / "b.npy", "--model", tiny_exported)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    code, _, err = tamc(capsys, "decode", bad, "--task", "rgb", "--model", tiny_exported)
    assert_one_line_error(code, err, "CRC")
    assert not (tmp_path / "bad.rgb.png").exists()


def test_several_inputs_continue_past_a_failure(tiny_exported, image_png, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    a, b, junk = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "junk.png"
    a.write_bytes(image_png.read_bytes())
    b.write_bytes(image_png.read_bytes())
    junk.write_bytes(b"no image here")
    code, out, err = tamc(capsys, "encode", a, junk, b, "-o", out_dir, "--tasks", "rgb", "--model", tiny_exported, "--json")
    assert code == 2
    reports = json.loads(out)
    assert [("error" in r) for r in reports] == [False, True, False]
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.tamc", "b.tamc"]
    lines = err.strip().splitlines()
    assert lines[0].startswith("tamc: error:") and "junk.png" in lines[0] and "1 of 3 inputs failed" in lines[-1]
    # several inputs need a folder; two inputs must not write the same output
    code, _, err = tamc(capsys, "encode", a, b, "-o", tmp_path / "x.tamc", "--model", tiny_exported)
    assert_one_line_error(code, err, "existing folder")
    (tmp_path / "a.jpg").write_bytes(b"")
    code, _, err = tamc(capsys, "encode", a, tmp_path / "a.jpg", "--model", tiny_exported)
    assert_one_line_error(code, err, "both be written")


def _other_model_file(coded: Path) -> bytes:
    with TamcReader(coded) as r:
        h = r.header
        layers = [(LayerSpec(e.group, e.parent, e.tasks), r.read_layer(e.index)) for e in r.layers]
    return pack(Header(model_id=bytes.fromhex("ab" * 16), height=h.height, width=h.width, quality=h.quality,
                       tasks=h.tasks), layers)


def test_bad_inputs_are_one_line_errors_and_leave_no_output(tiny_exported, image_png, coded, tmp_path, capsys):
    m = ["--model", tiny_exported]
    d = tmp_path
    (d / "junk.png").write_bytes(b"this is not an image")
    full = image_png.read_bytes()
    (d / "trunc.png").write_bytes(full[: len(full) // 2])
    (d / "zero.png").write_bytes(png_header_only(0, 0))
    (d / "huge.png").write_bytes(png_header_only(70000, 70000))
    (d / "big.png").write_bytes(png_header_only(5000, 5000))
    (d / "corrupt.tamc").write_bytes(coded.read_bytes()[:-5] + b"\0\0\0\0\0")
    (d / "header.tamc").write_bytes(coded.read_bytes()[:30])
    (d / "other.tamc").write_bytes(_other_model_file(coded))
    (d / "src.png").write_bytes(full)
    seg_only = d / "seg_only.tamc"
    seg_only.write_bytes(runtime.encode_image(image_png, "seg", 1, str(tiny_exported)).data)
    cases = [
        (["encode", d / "missing.png", *m], d / "missing.tamc", "no such file"),
        (["encode", d / "junk.png", *m], d / "junk.tamc", "not a readable image"),
        (["encode", d / "trunc.png", *m], d / "trunc.tamc", "truncated"),
        (["encode", d / "zero.png", *m], d / "zero.tamc", "zero.png"),
        (["encode", d / "huge.png", *m], d / "huge.tamc", "70000x70000"),
        (["encode", d / "huge.png", "--allow-large", *m], d / "huge.tamc", "cannot be coded"),
        (["encode", d / "big.png", *m], d / "big.tamc", "--allow-large"),
        (["encode", d / "src.png", "--tasks", "seg,sky", *m], d / "src.tamc", "unknown task 'sky'"),
        (["encode", d / "src.png", "--quality", "9", *m], d / "src.tamc", "quality must be 1..3"),
        (["encode", d / "src.png", "--model", d / "nowhere"], d / "src.tamc", "no model"),
        (["encode", d / "src.png", "-o", d / "no" / "x.tamc", *m], d / "no" / "x.tamc", "does not exist"),
        (["encode", d / "src.png", "-o", d / "src.png", *m], None, "overwrite the input"),
        (["decode", d / "missing.tamc", "-t", "seg", *m], d / "missing.seg.png", "no such file"),
        (["decode", d / "junk.png", "-t", "seg", *m], d / "junk.seg.png", "not a .tamc file"),
        (["decode", d / "header.tamc", "-t", "seg", *m], d / "header.seg.png", "truncated"),
        (["decode", d / "corrupt.tamc", "-t", "rgb", *m], d / "corrupt.rgb.png", "CRC"),
        (["decode", seg_only, "-t", "sky", *m], d / "seg_only.sky.png", "unknown task 'sky'"),
        (["decode", seg_only, "-t", "depth", *m], d / "seg_only.depth.png", "(it has: seg, normal)"),
        # a version-3 file stores the first 4 bytes of its model's id
        (["decode", d / "other.tamc", "-t", "seg"], d / "other.seg.png", "made by model abababab, which is not installed"),
        (["decode", d / "other.tamc", "-t", "seg", *m], d / "other.seg.png", "made by model abababab…"),
        (["decode", seg_only, "-t", "seg", "--model", "nosuchmodel"], d / "seg_only.seg.png", "nosuchmodel"),
        (["decode", seg_only, "-t", "seg", "-o", d / "no" / "x.png", *m], d / "no" / "x.png", "does not exist"),
        (["decode", seg_only, "-t", "seg", "--raw", d / "no" / "x.npy", *m], d / "no" / "x.npy", "does not exist"),
        (["decode", seg_only, "-t", "seg", "-o", d / "x.npz", *m], d / "x.npz", "unknown picture format"),
        (["decode", seg_only, "-t", "seg", "-o", seg_only, *m], None, "overwrite the input"),
    ]
    before = sorted(p.name for p in d.iterdir())
    for args, output, needle in cases:
        code, out, err = tamc(capsys, *args)
        assert_one_line_error(code, err, needle)
        assert output is None or not output.exists(), args
    assert sorted(p.name for p in d.iterdir()) == before  # no output, no temporary file left behind
    # a failed run leaves an existing output as it was
    keep = d / "corrupt.rgb.png"
    keep.write_bytes(b"keep me")
    code, _, err = tamc(capsys, "decode", d / "corrupt.tamc", "-t", "rgb", *m)
    assert code == 2 and keep.read_bytes() == b"keep me"
    keep = d / "trunc.tamc"
    keep.write_bytes(b"keep me")
    code, _, err = tamc(capsys, "encode", d / "trunc.png", *m)
    assert code == 2 and keep.read_bytes() == b"keep me"


def test_size_limit_and_allow_large(tiny_exported, image_png, tmp_path, capsys, monkeypatch):
    from tamc_codec import limits

    rt = runtime.load_model(str(tiny_exported))
    ph, pw = runtime.check_image_size(rt, 80, 90)
    m = rt.pad_multiple(80, 90)
    assert (ph, pw) == (-(-80 // m) * m, -(-90 // m) * m) and ph * pw > 80 * 90
    # the limit is on the padded size: the original 80x90 = 7,200 pixels fit, the padded ones do not
    monkeypatch.setattr(limits, "MAX_PIXELS", ph * pw - 1)
    code, _, err = tamc(capsys, "encode", image_png, "-o", tmp_path / "a.tamc", "--model", tiny_exported)
    assert_one_line_error(code, err, "--allow-large", f"padded to {ph}x{pw} = {ph * pw:,} pixels", "GB of memory")
    code, _, err = tamc(capsys, "encode", image_png, "-o", tmp_path / "a.tamc", "--allow-large", "--model", tiny_exported)
    assert code == 0, err
    # a (crafted or corrupt) header claiming an enormous image is refused before any allocation
    with TamcReader(tmp_path / "a.tamc") as r:
        h = r.header
        layers = [(LayerSpec(e.group, e.parent, e.tasks), r.read_layer(e.index)) for e in r.layers]
    # version 3: the padding is the model's, computed from the size the header claims
    big = pack(Header(model_id=h.model_id, height=60000, width=60000, quality=h.quality, tasks=h.tasks), layers)
    (tmp_path / "big.tamc").write_bytes(big)
    bp = runtime.padded_size(rt, 60000, 60000)
    code, _, err = tamc(capsys, "decode", tmp_path / "big.tamc", "-t", "seg", "--model", tiny_exported)
    assert_one_line_error(code, err, "big.tamc", "--allow-large", f"padded to {bp[0]}x{bp[1]}")
    with pytest.raises(TamcInputError, match="allow_large=True"):
        runtime.decode(big, "seg", str(tiny_exported))
    # versions 1 and 2: the padded size the header declares, refused before the model is even loaded
    old = pack(Header(model_id=bytes.fromhex(rt.id), height=60000, width=60000, padded_height=60032,
                      padded_width=60032, quality=h.quality, tasks=h.tasks, version=2), layers)
    (tmp_path / "old.tamc").write_bytes(old)
    code, _, err = tamc(capsys, "decode", tmp_path / "old.tamc", "-t", "seg", "--model", tmp_path / "nowhere")
    assert_one_line_error(code, err, "old.tamc", "--allow-large", "padded to 60032x60032")
    with pytest.raises(TamcInputError, match="empty"):
        runtime.encode_image(np.zeros((1, 0, 3), np.uint8), "seg", 1, str(tiny_exported))


def _linear_rgb_profile() -> bytes:
    """lcms's sRGB profile with its tone curves made linear (and renamed): a non-sRGB RGB space."""
    from PIL import ImageCms

    b = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", b[128:132])[0]
    tags = {bytes(b[132 + 12 * i:136 + 12 * i]): struct.unpack(">II", b[136 + 12 * i:144 + 12 * i]) for i in range(count)}
    off, _ = tags[b"rTRC"]
    assert b[off:off + 4] == b"para" and struct.unpack(">H", b[off + 8:off + 10])[0] == 3
    b[off + 12:off + 32] = struct.pack(">5i", 65536, 65536, 0, 65536, 0)  # Y = X
    off, _ = tags[b"desc"]
    i = b.index("sRGB".encode("utf-16-be"), off)
    b[i:i + 2] = "L".encode("utf-16-be")
    return bytes(b)


def test_image_policy(tmp_path, capsys):
    from tamc_codec.runtime.images import read_image

    grey = np.full((6, 8, 3), 128, np.uint8)
    Image.fromarray(grey).save(tmp_path / "linear.png", icc_profile=_linear_rgb_profile())
    notes: list[str] = []
    assert read_image(tmp_path / "linear.png", notices=notes)[0, 0, 0] > 170 and not notes  # linear 0.5 -> sRGB ~188
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(grey).save(tmp_path / "srgb.png", icc_profile=srgb)
    np.testing.assert_array_equal(read_image(tmp_path / "srgb.png", notices=notes), grey)
    Image.fromarray(grey).save(tmp_path / "badicc.png", icc_profile=b"garbage" * 20)
    np.testing.assert_array_equal(read_image(tmp_path / "badicc.png", notices=notes), grey)
    assert len(notes) == 1 and "ICC profile not applied" in notes[0]
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    rgba[:3, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    notes.clear()
    assert read_image(tmp_path / "opaque.png", notices=notes)[..., 1].min() == 200 and not notes
    a = read_image(tmp_path / "alpha.png", notices=notes)
    assert a[:3].max() == 0 and a[3:, :, 1].min() == 200 and "transparency dropped" in notes[0]
    # EXIF orientation 6: the stored image is rotated 90 degrees clockwise for display
    tall = np.zeros((6, 8, 3), np.uint8)
    tall[0, :, 0] = 255  # stored top row
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(tall).save(tmp_path / "rot.png", exif=exif)
    r = read_image(tmp_path / "rot.png")
    assert r.shape == (8, 6, 3) and r[:, -1, 0].min() == 255 and r[:, :-1].max() == 0  # top row -> right column
    Image.fromarray(np.full((5, 4), 7, np.uint8), "L").convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (5, 4, 3)
    # huge header: refused from the header, before any pixel is decoded
    (tmp_path / "huge.png").write_bytes(png_header_only(70000, 70000))
    with pytest.raises(TamcInputError, match="PIL's limit"):
        read_image(tmp_path / "huge.png")
    with pytest.raises(TamcInputError, match="more than the limit"):
        read_image(tmp_path / "huge.png", max_pixels=1000)


def test_alpha_notice_reaches_the_user(tiny_exported, tmp_path, capsys):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 100
    Image.fromarray(rgba).save(tmp_path / "a.png")
    code, out, err = tamc(capsys, "encode", tmp_path / "a.png", "--tasks", "rgb", "--model", tiny_exported)
    assert code == 0 and err.startswith("tamc: notice:") and "transparency dropped" in err


def _run(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tamc_codec", *map(str, args)], capture_output=True,
                          timeout=120, env=env)


def test_end_to_end_deterministic_across_thread_counts(tiny_exported, image_png, tmp_path):
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, TAMC_THREADS=threads, OMP_NUM_THREADS=threads)
        dest = tmp_path / f"t{threads}.tamc"
        r = _run("encode", image_png, "-o", dest, "--model", tiny_exported, env=env)
        assert r.returncode == 0, r.stderr
        r = _run("decode", dest, "--task", "normal", "--raw", tmp_path / f"t{threads}.npy", "--model", tiny_exported,
                 env=env)
        assert r.returncode == 0, r.stderr
        outs.append((dest.read_bytes(), np.load(tmp_path / f"t{threads}.npy")))
    assert outs[0][0] == outs[1][0]
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    r = _run("decode", tmp_path / "t1.tamc", "--task", "cloud", "--model", tiny_exported)
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and b"Traceback" not in r.stderr


def test_model_found_by_id_on_the_search_path(tiny_exported, coded, tmp_path):
    env = dict(os.environ, TAMC_MODEL_PATH=str(tiny_exported.parent))
    r = _run("decode", coded, "--task", "keypoint", "-o", tmp_path / "k.png", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model_dir"] == str(tiny_exported)


def test_help_reads_like_a_manual_and_stays_light():
    code = ("import sys\nfrom tamc_codec.cli import main\n"
            "for cmd in ('encode', 'decode'):\n"
            "    try:\n        main([cmd, '--help'])\n    except SystemExit:\n        pass\n"
            "print('HEAVY', [m for m in ('numpy', 'onnxruntime', 'PIL', 'torch') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    for needle in ("--allow-large", "16,777,216", "TAMC_MODEL_PATH", "EXIF", "ICC", "--raw", "bytes read", "photo.depth.png"):
        assert needle in r.stdout, needle


def test_python_api(tiny_exported, image_png):
    import tamc_codec

    data = tamc_codec.encode(str(image_png), tasks="edge", quality=1, model=str(tiny_exported))
    edge = tamc_codec.decode(data, task="edge", model=str(tiny_exported))
    assert edge.shape == (80, 90) and edge.dtype == np.float32
