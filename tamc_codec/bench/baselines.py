"""Classical image codecs through Pillow, swept from their lowest rate to near-lossless.

Each codec is encoded to bytes in memory and decoded back; the rate is the length of
those bytes (the whole file: headers, tables, everything a receiver gets), and the
times are wall-clock per call. Options are chosen for each codec's best compression at
a practical speed, so the baselines are not handicapped: optimised Huffman tables for
JPEG, WebP's slowest and best method, AVIF at libavif speed 4.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

#: Full sweeps: each reaches the codec's lowest rate (JPEG 1, WebP 0, AVIF 0) and goes up
#: to near-lossless (JPEG 95, WebP 100, AVIF 100 at about 40 dB PSNR on photos).
SWEEPS: dict[str, list[int]] = {
    "jpeg": [1, 3, 5, 10, 20, 35, 50, 70, 85, 95],
    "webp": [0, 5, 10, 20, 35, 50, 70, 85, 95, 100],
    "avif": [0, 10, 20, 35, 50, 65, 80, 90, 100],
}
#: --quick: three settings each, low / middle / high.
QUICK_SWEEPS: dict[str, list[int]] = {"jpeg": [5, 50, 95], "webp": [5, 50, 95], "avif": [10, 50, 90]}

PILLOW_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
#: Fixed encoder options besides quality (recorded in results.json).
OPTIONS: dict[str, dict] = {
    "jpeg": {"optimize": True},          # 4:2:0 chroma below quality 95 (Pillow's default)
    "webp": {"method": 6},
    "avif": {"speed": 4},
}
CODECS = tuple(SWEEPS)


@dataclass
class Coded:
    codec: str
    quality: int
    decoded: np.ndarray
    nbytes: int
    encode_s: float
    decode_s: float

    @property
    def bpp(self) -> float:
        return 8.0 * self.nbytes / (self.decoded.shape[0] * self.decoded.shape[1])


def available(codec: str) -> bool:
    from PIL import features

    return bool(features.check({"jpeg": "jpg", "webp": "webp", "avif": "avif"}[codec]))


def code(image: np.ndarray, codec: str, quality: int) -> Coded:
    """Encode an (H, W, 3) uint8 image with `codec` at `quality`, decode it back."""
    from PIL import Image

    if codec not in PILLOW_FORMAT:
        raise ValueError(f"unknown codec {codec!r} (known: {', '.join(PILLOW_FORMAT)})")
    pic = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    t0 = time.perf_counter()
    pic.save(buf, format=PILLOW_FORMAT[codec], quality=int(quality), **OPTIONS[codec])
    t1 = time.perf_counter()
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    t2 = time.perf_counter()
    if decoded.shape != image.shape:
        raise RuntimeError(f"{codec} decoded a {decoded.shape} image from a {image.shape} one")
    return Coded(codec, int(quality), decoded, len(data), t1 - t0, t2 - t1)


def settings(codecs: list[str], quick: bool) -> dict[str, dict]:
    """The sweep of each codec as recorded in results.json."""
    table = QUICK_SWEEPS if quick else SWEEPS
    return {c: {"library": "Pillow", "format": PILLOW_FORMAT[c], "parameter": "quality", "values": list(table[c]),
                "options": dict(OPTIONS[c])} for c in codecs}


__all__ = ["SWEEPS", "QUICK_SWEEPS", "OPTIONS", "CODECS", "Coded", "available", "code", "settings"]
