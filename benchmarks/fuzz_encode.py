"""Hostile images thrown at `tamc encode`: what happens to each, and how much memory it takes.

    python benchmarks/fuzz_encode.py [--model NAME_OR_DIR] [--jobs 2] [--timeout 600] [--seed 0]
                                     [--only SUBSTRING] [--out benchmarks/results/fuzz_encode.json]

Over 200 images, generated here with a fixed seed: odd sizes and aspect ratios (1x1 to
1x65536, thin lines either side of the padded-size limit, one picture that pads to exactly the
limit and a decompression bomb at the limit), every Pillow mode that can be saved, a dozen file
formats, animations and multi-page files, EXIF orientations and broken EXIF, ICC profiles good and
bad, truncations of each format, bit flips, headers claiming huge sizes without pixel data,
garbage, and standard input (including /dev/zero, which must stop at the stdin limit).

Each case runs `python -m tamc_codec encode CASE -o OUT --model MODEL` in its own process (the
default options: the size limit in force), started by a small launcher process. Per case it
records the exit status, the wall time, the peak resident memory of the tamc process (os.wait4's
ru_maxrss, in the launcher) and sorts the outcome into classes:

    encoded            exit 0, a .tamc that parses, every layer readable
    encoded + notice   the same, with a `tamc: notice:` on stderr (frames, transparency, ICC, EXIF)
    refused: REASON    exit 2 and one `tamc: error:` line, no output or temporary file
    traceback          "Traceback" on stderr (a bug)
    hang               still running after --timeout seconds (killed)
    bad exit           any other ending: another status, a signal, a malformed error, a file left

The checks at the end: no traceback, no hang, no bad exit, and every peak below the memory bound
docs/CLI.md states for the limit (limits.MAX_PIXELS padded pixels at
limits.ENCODE_BYTES_PER_PIXEL). Results: benchmarks/results/fuzz_encode.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuzz_encode.json"


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    category: str
    data: bytes | None = None       # the file's bytes; None for the special kinds below
    stdin: str | None = None        # "file": the bytes go to standard input; "/dev/zero": that device
    special: str | None = None      # "missing", "folder"
    heavy: bool = False             # pads to the limit (about 6 GB): never two at once


def _picture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth gradients plus noise: compresses like a photo, not like noise or a flat colour."""
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    base = (y * np.array([1.0, 0.3, 0.6]) + x * np.array([0.2, 1.0, 0.4])) / 1.5
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_raw(w: int, h: int, depth: int, colour: int, rows: bytes | None) -> bytes:
    """A PNG written by hand: 16-bit RGB(A), or a header whose pixel data is missing (rows None)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"", 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_zeros(w: int, h: int) -> bytes:
    """A decompression bomb: w x h black RGB pixels, compressed row by row into a small file."""
    comp = zlib.compressobj(9)
    row = b"\0" + bytes(3 * w)
    parts = [comp.compress(row) for _ in range(h)]
    idat = b"".join(parts) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _size_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    dims = [(1, 1), (1, 2), (2, 1), (2, 2), (3, 7), (7, 3), (15, 17), (31, 33), (63, 65), (64, 64), (65, 64),
            (127, 129), (128, 128), (255, 257), (256, 256), (361, 1), (1, 362), (363, 2), (511, 513), (512, 512),
            (1, 100), (100, 1), (1, 1000), (1000, 1), (1, 2000), (2000, 1), (3, 3000), (3000, 3), (1, 4000),
            (1023, 1025), (1024, 1024)]
    for h, w in dims:
        cases.append(Case(f"size_{h}x{w}", "size", _save(Image.fromarray(_picture(rng, h, w)), "PNG")))
    # refused by the padded-size limit (or the side limit) though their pixel counts are small
    for h, w in [(1, 9000), (9000, 1), (1, 16384), (16384, 1), (2, 30000), (30000, 2), (1, 65535), (65535, 1),
                 (1, 65536), (65536, 1), (4, 12000), (5000, 3500)]:
        img = np.zeros((h, w, 3), np.uint8) if h * w > 10**6 else _picture(rng, h, w)
        cases.append(Case(f"size_{h}x{w}", "size", _save(Image.fromarray(img), "PNG", compress_level=9)))
    # pads to exactly the limit: 8 x 8192 is coded as 2048 x 8192 = 16,777,216 pixels
    cases.append(Case("size_8x8192_pads_to_limit", "size", _save(Image.fromarray(_picture(rng, 8, 8192)), "PNG"),
                      heavy=True))
    return cases


def _aspect_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for long in (256, 1024, 2048):
        for short in sorted({1, 4, 16, 64, long // 4, long // 2}):
            for h, w in ((short, long), (long, short)):
                cases.append(Case(f"aspect_{h}x{w}", "aspect", _save(Image.fromarray(_picture(rng, h, w)), "PNG")))
    return cases


def _mode_cases(rng: np.random.Generator) -> list[Case]:
    rgb = Image.fromarray(_picture(rng, 48, 40))
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)  # mode I;16
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (48, 1))))
    pal_t = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal_t.info["transparency"] = 0
    rows16 = b"".join(b"\0" + (np.asarray(rgb, np.uint16)[i] * 257).astype(">u2").tobytes() for i in range(48))
    rows16a = b"".join(b"\0" + np.concatenate([np.asarray(rgb, np.uint16)[i] * 257,
                                               np.full((40, 1), 30000, np.uint16)], 1).astype(">u2").tobytes()
                       for i in range(48))
    float_img = Image.fromarray(np.asarray(rgb.convert("L"), np.float32) / 255.0)  # mode F
    int32 = Image.fromarray(np.asarray(rgb.convert("L"), np.int32) * 1000)  # mode I
    return [
        Case("mode_1_png", "mode", _save(rgb.convert("1"), "PNG")),
        Case("mode_L_png", "mode", _save(rgb.convert("L"), "PNG")),
        Case("mode_LA_png", "mode", _save(rgb.convert("LA"), "PNG")),
        Case("mode_P_png", "mode", _save(rgb.convert("P"), "PNG")),
        Case("mode_P_transparency_png", "mode", _save(pal_t, "PNG", transparency=0)),
        Case("mode_RGBA_png", "mode", _save(rgba, "PNG")),
        Case("mode_RGBA_opaque_png", "mode", _save(rgb.convert("RGBA"), "PNG")),
        Case("mode_I16_png", "mode", _save(grey16, "PNG")),
        Case("mode_RGB16_png", "mode", _png_raw(40, 48, 16, 2, rows16)),
        Case("mode_RGBA16_png", "mode", _png_raw(40, 48, 16, 6, rows16a)),
        Case("mode_I32_tiff", "mode", _save(int32, "TIFF")),
        Case("mode_F_tiff", "mode", _save(float_img, "TIFF")),
        Case("mode_CMYK_jpeg", "mode", _save(rgb.convert("CMYK"), "JPEG")),
        Case("mode_CMYK_tiff", "mode", _save(rgb.convert("CMYK"), "TIFF")),
        Case("mode_LAB_tiff", "mode", _save(rgb.convert("LAB"), "TIFF")),
        Case("mode_YCbCr_jpeg", "mode", _save(rgb.convert("YCbCr"), "JPEG")),
        Case("mode_L_jpeg", "mode", _save(rgb.convert("L"), "JPEG")),
        Case("mode_1_bmp", "mode", _save(rgb.convert("1"), "BMP")),
        Case("mode_P_bmp", "mode", _save(rgb.convert("P"), "BMP")),
        Case("mode_RGBA_webp", "mode", _save(rgba, "WEBP", lossless=True)),
        Case("mode_LA_tiff", "mode", _save(rgb.convert("LA"), "TIFF")),
        Case("mode_RGBA_tiff", "mode", _save(rgba, "TIFF")),
        Case("mode_I16_tiff", "mode", _save(grey16, "TIFF")),
        Case("mode_P_gif", "mode", _save(rgb.convert("P"), "GIF")),
        Case("mode_RGBA_gif_transparency", "mode", _save(pal_t, "GIF", transparency=0)),
    ]


def _format_cases(rng: np.random.Generator) -> dict[str, bytes]:
    """One good file per format; the truncation and bit-flip cases start from these."""
    rgb = Image.fromarray(_picture(rng, 72, 88))
    other = Image.fromarray(_picture(rng, 72, 88)[::-1])
    return {
        "png": _save(rgb, "PNG"),
        "png_stored": _save(rgb, "PNG", compress_level=0),
        "jpeg": _save(rgb, "JPEG", quality=90),
        "jpeg_progressive": _save(rgb, "JPEG", quality=80, progressive=True),
        "webp_lossy": _save(rgb, "WEBP", quality=80),
        "webp_lossless": _save(rgb, "WEBP", lossless=True),
        "gif": _save(rgb.convert("P"), "GIF"),
        "bmp": _save(rgb, "BMP"),
        "tiff": _save(rgb, "TIFF"),
        "tiff_lzw": _save(rgb, "TIFF", compression="tiff_lzw"),
        "tiff_deflate": _save(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "tiff_jpeg": _save(rgb, "TIFF", compression="jpeg"),
        "ppm": _save(rgb, "PPM"),
        "pgm": _save(rgb.convert("L"), "PPM"),
        "tga": _save(rgb, "TGA"),
        "tga_rle": _save(rgb, "TGA", compression="tga_rle"),
        "pcx": _save(rgb, "PCX"),
        "ico": _save(rgb, "ICO"),
        "sgi": _save(rgb, "SGI"),
        "qoi": _save(rgb, "QOI"),
        "apng": _save(rgb, "PNG", save_all=True, append_images=[other], duration=40),
        "gif_animated": _save(rgb.convert("P"), "GIF", save_all=True, append_images=[other.convert("P")], duration=40),
        "webp_animated": _save(rgb, "WEBP", save_all=True, append_images=[other], duration=40),
        "tiff_multipage": _save(rgb, "TIFF", save_all=True, append_images=[other]),
        "mpo": _save(rgb, "MPO", save_all=True, append_images=[other]),
    }


def _metadata_cases(rng: np.random.Generator) -> list[Case]:
    from PIL import ImageCms

    rgb = Image.fromarray(_picture(rng, 40, 56))
    cases = []
    for orientation in range(0, 10):
        exif = Image.Exif()
        exif[0x0112] = orientation
        cases.append(Case(f"exif_orientation_{orientation}_jpeg", "metadata", _save(rgb, "JPEG", exif=exif)))
    thin_exif = Image.Exif()
    thin_exif[0x0112] = 6  # displayed rotated: 9000 x 1 stored is 1 x 9000 shown; still over the limit
    cases.append(Case("exif_rotated_thin_png", "metadata",
                      _save(Image.new("RGB", (9000, 1)), "PNG", exif=thin_exif)))
    cases.append(Case("exif_garbage_jpeg", "metadata", _save(rgb, "JPEG", exif=b"Exif\0\0" + bytes(rng.integers(0, 256, 64, dtype=np.uint8)))))
    cases.append(Case("exif_truncated_png", "metadata", _save(rgb, "PNG", exif=b"Exif\0\0II*\0\x08\0\0\0\x05\0")))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    cases.append(Case("icc_srgb_png", "metadata", _save(rgb, "PNG", icc_profile=srgb)))
    cases.append(Case("icc_garbage_png", "metadata", _save(rgb, "PNG", icc_profile=b"garbage" * 40)))
    cases.append(Case("icc_truncated_jpeg", "metadata", _save(rgb, "JPEG", icc_profile=srgb[: len(srgb) // 2])))
    cases.append(Case("icc_lab_on_rgb_png", "metadata", _save(rgb, "PNG", icc_profile=lab)))
    cases.append(Case("icc_srgb_on_grey_png", "metadata", _save(rgb.convert("L"), "PNG", icc_profile=srgb)))
    cases.append(Case("icc_srgb_on_cmyk_jpeg", "metadata", _save(rgb.convert("CMYK"), "JPEG", icc_profile=srgb)))
    return cases


def _damage_cases(rng: np.random.Generator, formats: dict[str, bytes]) -> list[Case]:
    cases = []
    for fmt, data in formats.items():
        cases.append(Case(f"format_{fmt}", "format", data))
    for fmt in ("png", "jpeg", "jpeg_progressive", "webp_lossy", "gif", "bmp", "tiff", "tiff_lzw", "tga_rle", "apng"):
        data = formats[fmt]
        for frac in (0.02, 0.1, 0.5, 0.9, 0.99):
            cut = max(1, int(len(data) * frac))
            cases.append(Case(f"truncated_{fmt}_{frac}", "truncated", data[:cut]))
    for fmt in ("png", "jpeg", "webp_lossy", "gif", "tiff", "bmp"):
        data = formats[fmt]
        for k in range(5):
            b = bytearray(data)
            for pos in rng.integers(0, len(b), 1 + k * 3):
                b[pos] ^= 1 << int(rng.integers(0, 8))
            cases.append(Case(f"bitflip_{fmt}_{k}", "bitflip", bytes(b)))
    return cases


def _claim_cases() -> list[Case]:
    """Headers that claim a size and carry no pixels (or a bomb's worth of zeros)."""
    cases = [Case(f"header_only_{w}x{h}", "header", _png_raw(w, h, 8, 2, None))
             for w, h in [(70000, 70000), (65535, 65535), (5000, 5000), (4097, 4097), (4096, 4096), (9000, 1),
                          (1, 9000), (0, 0), (0, 10), (10, 0), (2**31 - 1, 1)]]
    cases.append(Case("bomb_16384x16384_png", "header", _png_zeros(16384, 16384)))
    cases.append(Case("bomb_4096x4096_png_at_limit", "header", _png_zeros(4096, 4096), heavy=True))
    # a GIF whose logical screen claims 65535 x 65535
    gif = bytearray(_save(Image.new("P", (8, 8)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    cases.append(Case("gif_screen_65535", "header", bytes(gif)))
    # a BMP whose header claims 40000 x 40000 pixels
    bmp = bytearray(_save(Image.new("RGB", (4, 4)), "BMP"))
    bmp[18:26] = struct.pack("<ii", 40000, 40000)
    cases.append(Case("bmp_claims_40000", "header", bytes(bmp)))
    return cases


def _garbage_cases(rng: np.random.Generator, formats: dict[str, bytes]) -> list[Case]:
    cases = [
        Case("empty_file", "garbage", b""),
        Case("one_byte", "garbage", b"\x89"),
        Case("png_signature_only", "garbage", b"\x89PNG\r\n\x1a\n"),
        Case("jpeg_soi_only", "garbage", b"\xff\xd8"),
        Case("gif_header_only", "garbage", b"GIF89a"),
        Case("text_file", "garbage", b"this is not an image\n" * 20),
        Case("svg", "garbage", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        Case("tamc_file_as_image", "garbage", b"TAMC" + bytes(60)),
        Case("missing_file", "garbage", special="missing"),
        Case("a_folder", "garbage", special="folder"),
    ]
    for n in (16, 1000, 100_000):
        cases.append(Case(f"random_bytes_{n}", "garbage", rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
    cases.append(Case("png_then_junk", "garbage", formats["png"] + b"\0junk" * 100))
    cases.append(Case("two_pngs_concatenated", "garbage", formats["png"] + formats["png"]))
    return cases


def _stdin_cases(formats: dict[str, bytes]) -> list[Case]:
    return [
        Case("stdin_png", "stdin", formats["png"], stdin="file"),
        Case("stdin_jpeg", "stdin", formats["jpeg"], stdin="file"),
        Case("stdin_garbage", "stdin", b"garbage" * 100, stdin="file"),
        Case("stdin_empty", "stdin", b"", stdin="file"),
        Case("stdin_truncated_png", "stdin", formats["png"][:200], stdin="file"),
        Case("stdin_thin_png", "stdin", _save(Image.new("RGB", (9000, 1)), "PNG"), stdin="file"),
        Case("stdin_dev_zero", "stdin", stdin="/dev/zero"),
    ]


def build_cases(seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    formats = _format_cases(rng)
    return (_size_cases(rng) + _aspect_cases(rng) + _mode_cases(rng) + _metadata_cases(rng)
            + _damage_cases(rng, formats) + _claim_cases() + _garbage_cases(rng, formats) + _stdin_cases(formats))


# --------------------------------------------------------------------------- running


# Forks and execs the case, then reports its exit status and peak memory. A case run straight from
# this process would inherit its memory high-water mark (Linux keeps the pre-exec maximum in
# ru_maxrss, vfork or not), and this process holds every case in memory; a fresh small launcher
# adds only its own ~10 MiB.
LAUNCHER = r"""
import json, os, sys
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}))
"""


def _run(cmd: list[str], stdin, timeout: float) -> tuple[int | None, bytes, float, int | None]:
    """Run cmd; returns (exit status or None on timeout, stderr, seconds, peak RSS in KiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", LAUNCHER, *cmd], stdin=stdin, stdout=out, stderr=err,
                             start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        seconds = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        try:
            report = json.loads(out.read().decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None, err.read(), seconds, None
        return report["exit"], err.read(), seconds, report["maxrss_kib"]


def _valid_tamc(path: Path) -> bool:
    from tamc_codec.bitstream import TamcReader
    from tamc_codec.errors import TamcError

    try:
        with TamcReader(path) as r:
            for e in r.layers:
                r.read_layer(e.index)
        return True
    except TamcError:
        return False


_REASONS = [
    ("padded to", "refused: over the padded-size limit"),
    ("cannot be coded", "refused: side above 65535"),
    ("empty", "refused: empty image"),
    ("truncated", "refused: truncated"),
    ("not a readable image", "refused: not a readable image"),
    ("PIL's limit", "refused: decompression bomb"),
    ("no such file", "refused: no such file"),
    ("is a folder", "refused: a folder"),
    ("standard input holds more", "refused: stdin over its limit"),
    ("out of memory", "refused: out of memory"),
]


def classify(code: int | None, stderr: str, src: str, out: Path) -> tuple[str, str]:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("tamc: error:")]
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    # the reason, without the input's path (a case's name may contain a reason's words)
    message = errors[0][len("tamc: error: "):].replace(src, "INPUT") if errors else ""
    if "Traceback" in stderr:
        return "traceback", lines[-1] if lines else ""
    if code is None:
        return "hang", ""
    if leftovers:
        return "bad exit", f"temporary file left: {leftovers}"
    if code == 0:
        if not out.exists() or not _valid_tamc(out):
            return "bad exit", "exit 0 without a valid .tamc"
        notices = [l for l in lines if l.startswith("tamc: notice:")]
        return ("encoded + notice" if notices else "encoded"), notices[0] if notices else ""
    if code == 2 and len(errors) == 1 and all(l.startswith("tamc: notice:") for l in lines if l not in errors):
        if out.exists():
            return "bad exit", "refused but an output was written"
        for needle, reason in _REASONS:
            if needle in message:
                return reason, message
        return "refused: other", message
    return "bad exit", f"exit {code}: {' | '.join(lines[-2:])}"


def run_case(case: Case, work: Path, model: str, timeout: float) -> dict:
    folder = work / case.name
    folder.mkdir()
    out = folder / "out.tamc"
    src: str
    stdin = subprocess.DEVNULL
    handle = None
    if case.special == "missing":
        src = str(folder / "missing.png")
    elif case.special == "folder":
        (folder / "dir.png").mkdir()
        src = str(folder / "dir.png")
    elif case.stdin == "/dev/zero":
        src, handle = "-", open("/dev/zero", "rb")
    else:
        path = folder / "input.img"
        path.write_bytes(case.data or b"")
        src = str(path)
        if case.stdin == "file":
            src, handle = "-", open(path, "rb")
    cmd = [sys.executable, "-m", "tamc_codec", "encode", src, "-o", str(out), "--model", model]
    try:
        code, err, seconds, rss_kib = _run(cmd, handle if handle is not None else stdin, timeout)
    finally:
        if handle is not None:
            handle.close()
    text = err.decode("utf-8", "replace")
    outcome, detail = classify(code, text, src, out)
    return {"name": case.name, "category": case.category, "input_bytes": None if case.data is None else len(case.data),
            "outcome": outcome, "exit": code, "seconds": round(seconds, 3),
            "peak_rss_mb": None if rss_kib is None else round(rss_kib / 1024, 1),
            "output_bytes": out.stat().st_size if out.exists() else None, "detail": detail[:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or name (default: the shipped default model)")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds after which a case counts as a hang")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from tamc_codec import limits
    from tamc_codec.atomic import atomic_write_bytes
    from tamc_codec.runtime.model import find_model

    model = find_model(args.model)
    manifest = json.loads((model / "manifest.json").read_text())
    cases = build_cases(args.seed)
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    bound_mb = limits.MAX_PIXELS * limits.ENCODE_BYTES_PER_PIXEL / 2**20
    print(f"{len(cases)} cases, model {manifest.get('name')} ({model}), {args.jobs} at once, "
          f"timeout {args.timeout:g} s, memory bound {bound_mb:,.0f} MiB", flush=True)
    t0 = time.perf_counter()
    lock, heavy = threading.Lock(), threading.Lock()
    done = [0]

    def one(case: Case) -> dict:
        with heavy if case.heavy else contextlib.nullcontext():
            r = run_case(case, work, str(model), args.timeout)
        with lock:
            done[0] += 1
            print(f"  [{done[0]:>3}/{len(cases)}] {r['name']:<36} {r['outcome']:<40} {r['seconds']:7.2f} s "
                  f"{r['peak_rss_mb'] or 0:8.0f} MiB", flush=True)
        return r

    with tempfile.TemporaryDirectory(prefix="tamc_fuzz_") as tmp:
        work = Path(tmp)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one, cases))
    wall = time.perf_counter() - t0

    classes: dict[str, dict] = {}
    for r in results:
        c = classes.setdefault(r["outcome"], {"count": 0, "max_peak_rss_mb": 0.0, "max_seconds": 0.0, "examples": []})
        c["count"] += 1
        c["max_peak_rss_mb"] = max(c["max_peak_rss_mb"], r["peak_rss_mb"] or 0.0)
        c["max_seconds"] = max(c["max_seconds"], r["seconds"])
        if len(c["examples"]) < 3:
            c["examples"].append(r["name"])
    peak = max(results, key=lambda r: r["peak_rss_mb"] or 0.0)
    checks = {
        "tracebacks": classes.get("traceback", {}).get("count", 0),
        "hangs": classes.get("hang", {}).get("count", 0),
        "bad_exits": classes.get("bad exit", {}).get("count", 0),
        "max_peak_rss_mb": peak["peak_rss_mb"],
        "max_peak_case": peak["name"],
        "memory_bound_mb": round(bound_mb, 1),
    }
    checks["passed"] = (checks["tracebacks"] == 0 and checks["hangs"] == 0 and checks["bad_exits"] == 0
                        and checks["max_peak_rss_mb"] <= bound_mb)

    width = max(len(k) for k in classes)
    print(f"\n{'outcome':<{width}}  {'cases':>5}  {'max MiB':>8}  {'max s':>7}  examples")
    for k in sorted(classes, key=lambda k: -classes[k]["count"]):
        c = classes[k]
        print(f"{k:<{width}}  {c['count']:>5}  {c['max_peak_rss_mb']:8.0f}  {c['max_seconds']:7.2f}  "
              f"{', '.join(c['examples'])}")
    print(f"\n{len(results)} cases in {wall:.0f} s: {checks['tracebacks']} tracebacks, {checks['hangs']} hangs, "
          f"{checks['bad_exits']} bad exits; peak {checks['max_peak_rss_mb']:,.0f} MiB ({checks['max_peak_case']}) "
          f"against the bound of {bound_mb:,.0f} MiB: {'PASS' if checks['passed'] else 'FAIL'}")

    result = {
        "schema": "tamc.bench.fuzz_encode/1",
        "command": [sys.executable, "-m", "tamc_codec", "encode", "CASE", "-o", "OUT", "--model", str(model)],
        "invocation": ["python", "benchmarks/fuzz_encode.py", *sys.argv[1:]],
        "model": {"name": manifest.get("name"), "id": manifest.get("model_id"), "path": str(model)},
        "seed": args.seed,
        "jobs": args.jobs,
        "timeout_s": args.timeout,
        "wall_s": round(wall, 1),
        "limit": {"max_padded_pixels": limits.MAX_PIXELS, "encode_bytes_per_padded_pixel": limits.ENCODE_BYTES_PER_PIXEL,
                  "max_stdin_bytes": limits.MAX_STDIN_BYTES},
        "checks": checks,
        "classes": classes,
        "cases": results,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {args.out}")
    if not checks["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
