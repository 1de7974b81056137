"""Classical image codecs through Pillow, swept from their lowest rate to near-lossless.

Each codec is encoded to bytes in memory and decoded back; the rate is the length of
those bytes (the whole file: headers, tables, everything a receiver gets), and the
times are wall-clock per call. Options are chosen for each codec's best compression at
a practical speed, so the baselines are not handicapped: optimised Huffman tables for
JPEG, WebP's slowest and best method, AVIF at libavif speed 4.

Each codec is also swept *down-scaled* (a variant ``avif@1/2``: the picture coded at half
its sides and brought back to full size, what a practitioner does at low rates) and, where
Pillow passes the encoder options that allow it, *below its lowest quality* (negative
settings, :data:`BELOW_FLOOR`), so that the bench's iso-quality rates are measured rather
than censored at a codec's lowest setting (docs/BENCH.md, Variants).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# one implementation of the resampling for the bench's variants and the codec's picture layers
from ..runtime.picture import avif_threads, downscale, upscale

#: Full sweeps: each reaches the codec's lowest rate (JPEG 1, WebP 0, AVIF below 0: see
#: BELOW_FLOOR) and goes up to near-lossless (JPEG 95, WebP 100, AVIF 100 at about 40 dB
#: PSNR on photos).
SWEEPS: dict[str, list[int]] = {
    "jpeg": [1, 3, 5, 10, 20, 35, 50, 70, 85, 95],
    "webp": [0, 5, 10, 20, 35, 50, 70, 85, 95, 100],
    "avif": [-2, -1, 0, 10, 20, 35, 50, 65, 80, 90, 100],
}
#: Down-scaled sweeps, by scale divisor: the lower part of each range, because a
#: down-scaled picture pays off at low rates only (at high ones the detail it has lost
#: costs more than the bits it saves), and each setting costs a network pass per image.
#: Where it stops paying was measured on 4 test scenes with the shipped model: each codec's
#: lower envelope (docs/BENCH.md) ran on 1/4 up to about 0.1 bpp and on 1/2 up to 0.25-0.35
#: bpp (its quality 80-85), full size only above; settings that were never on it (JPEG 1 and
#: 3 at 1/2, AVIF below 0 at 1/2, where 1/4 does better) are left out.
#: 1/8 reaches below 1/4's lowest rates (WebP 0 at 1/4 still met the depth target on the
#: committed run). Its files are mostly header: on 4 test scenes JPEG 1-50 spanned only
#: 0.010-0.024 bpp, AVIF -2-50 0.010-0.020, WebP 0-70 0.004-0.018; each codec's envelope over
#: 1/4 and 1/8 (swept densely) ran on 1/8 up to about 0.02 bpp (WebP: up to its 70 for seg and
#: normal). A few settings spread evenly in log rate over that span suffice; left out are
#: those a few percent in rate from a neighbour (JPEG 3 is 2 % above 1, AVIF -1 3 % above -2).
#: 1/16 (a 32² picture of a 512² one): on the same 4 scenes WebP 0 at 1/8 still met the depth
#: target; at 1/16 WebP 0 was 1.35 x it at 0.0023 bpp and WebP 20 met it at 0.0043, so depth's
#: classical rate is measured, not censored at a lowest setting.
SCALED_SWEEPS: dict[int, dict[str, list[int]]] = {
    2: {"jpeg": [5, 10, 20, 35, 50, 70, 85], "webp": [0, 5, 10, 20, 35, 50, 70, 85],
        "avif": [0, 10, 20, 35, 50, 65, 80]},
    4: {"jpeg": [1, 5, 10, 20, 35, 50, 85], "webp": [0, 10, 20, 35, 50, 85], "avif": [-2, 0, 20, 35, 50, 65, 80]},
    8: {"jpeg": [1, 5, 10, 20, 35], "webp": [0, 5, 20, 35, 70], "avif": [-2, 0, 10, 35]},
    16: {"jpeg": [10, 50], "webp": [0, 10, 20, 50], "avif": [-2, 20, 50]},
}
#: --quick: three settings each, low / middle / high; down-scaled, the low one alone.
QUICK_SWEEPS: dict[str, list[int]] = {"jpeg": [5, 50, 95], "webp": [5, 50, 95], "avif": [10, 50, 90]}
QUICK_SCALED_SWEEPS: dict[int, dict[str, list[int]]] = {
    s: {"jpeg": [5], "webp": [5], "avif": [10]} for s in SCALED_SWEEPS}

PILLOW_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
#: Fixed encoder options besides quality (recorded in results.json).
OPTIONS: dict[str, dict] = {
    "jpeg": {"optimize": True},          # 4:2:0 chroma below quality 95 (Pillow's default)
    "webp": {"method": 6},
    "avif": {"speed": 4},
}
#: Settings below a codec's lowest quality, as the encoder options they stand for. Pillow
#: refuses AVIF qualities below 0, and quality 0 is already libaom's coarsest quantiser, but
#: libavif tunes libaom for still pictures with tune=iq, whose per-block quantiser offsets
#: (deltaq) spend bits on detail. Pillow's `advanced` options reach libaom's own: -1 turns the
#: offsets off, -2 tunes for SSIM instead. On the test scenes -1 costs about 0.55 and -2
#: about 0.43 of quality 0's bytes. JPEG (quality 1 already divides every coefficient by
#: 255, a baseline table's most; a non-baseline 16-bit table saves 5-13 % more, of flat grey
#: blocks) and WebP (Pillow passes quality and method alone) have nothing worth a setting below.
BELOW_FLOOR: dict[str, dict[int, dict]] = {
    "avif": {-1: {"quality": 0, "advanced": {"deltaq-mode": "0"}},
             -2: {"quality": 0, "advanced": {"tune": "ssim"}}},
}
CODECS = tuple(SWEEPS)
#: Scale divisors a sweep can be run at: 1 (the codec alone), 2, 4 and 8 (sides cut to a half, a
#: quarter, an eighth); the bench's default is all of them.
SCALES: tuple[int, ...] = (1, *SCALED_SWEEPS)
#: Down-scaling averages each scale x scale block (area, no aliasing); up-scaling is Lanczos,
#: the sharpest of Pillow's standard filters: on 4 test scenes (AVIF 20 at 1/2 and 1/4, JPEG
#: 35 at 1/2) it gave about 1 % lower losses than bicubic for the networks' tasks and the
#: edge and keypoint filters, whose labels are gradients that bicubic's wider kernel blurs.
DOWNSAMPLE = "box (PIL Image.reduce), sides edge-padded to a multiple of the scale"
UPSAMPLE = "lanczos (PIL Image.resize), cropped to the original size"
#: Suffixes of the bench's curve names: a CTA receiver running the label filter, and the
#: lower envelope of a codec's down-scaled variants (docs/BENCH.md).
FILTER_SUFFIX = "+filter"
BEST_SUFFIX = "-best"


@dataclass
class Coded:
    codec: str
    quality: int
    decoded: np.ndarray
    nbytes: int
    encode_s: float
    decode_s: float
    scale: int = 1

    @property
    def bpp(self) -> float:
        """Bits over the original picture's pixels (the decoded picture is brought back to them)."""
        return 8.0 * self.nbytes / (self.decoded.shape[0] * self.decoded.shape[1])


# --------------------------------------------------------------------------- names


def scale_label(scale: int) -> str:
    """'1', '1/2', ..., '1/16': the fraction of each side that is coded."""
    return "1" if scale == 1 else f"1/{scale}"


def parse_scale(text: str) -> int:
    """The divisor of a scale written '1/8', '0.125' or '1'; ValueError when it is not one of SCALES."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or value <= 0 or value.numerator != 1 or value.denominator not in SCALES:
        raise ValueError(f"{text.strip()!r} is not one of {', '.join(scale_label(s) for s in SCALES)}")
    return value.denominator


def variant_name(codec: str, scale: int = 1, filtered: bool = False) -> str:
    """`avif`, `avif@1/2`, `avif@1/2+filter`: a curve of the bench."""
    return codec + ("" if scale == 1 else "@" + scale_label(scale)) + (FILTER_SUFFIX if filtered else "")


def parse_variant(name: str) -> tuple[str, int, bool] | None:
    """(codec, scale, filtered) of a classical variant's name; None for tamc, envelopes, anything else."""
    filtered = name.endswith(FILTER_SUFFIX)
    base = name[:-len(FILTER_SUFFIX)] if filtered else name
    codec, _, scale = base.partition("@")
    if codec not in PILLOW_FORMAT:
        return None
    try:
        return codec, parse_scale(scale) if scale else 1, filtered
    except ValueError:
        return None


def family_name(codec: str, filtered: bool = False) -> str:
    """`avif-best` (`avif-best+filter`): the lower envelope of all of a codec's scales."""
    return codec + BEST_SUFFIX + (FILTER_SUFFIX if filtered else "")


def families(names: list[str]) -> dict[str, list[str]]:
    """Each codec family with more than one scale among `names`: envelope name -> member names."""
    out: dict[str, list[str]] = {}
    for name in names:
        parsed = parse_variant(name)
        if parsed is not None:
            out.setdefault(family_name(parsed[0], parsed[2]), []).append(name)
    return {k: v for k, v in out.items() if len(v) > 1}


# --------------------------------------------------------------------------- coding


def available(codec: str) -> bool:
    from PIL import features

    return bool(features.check({"jpeg": "jpg", "webp": "webp", "avif": "avif"}[codec]))


def encoder_args(codec: str, quality: int) -> dict:
    """Pillow's save() keywords for one setting (a negative one: BELOW_FLOOR's options)."""
    if codec not in PILLOW_FORMAT:
        raise ValueError(f"unknown codec {codec!r} (known: {', '.join(PILLOW_FORMAT)})")
    if quality < 0:
        below = BELOW_FLOOR.get(codec, {})
        if quality not in below:
            raise ValueError(f"{codec} has no setting {quality} (below its lowest quality: "
                             f"{', '.join(map(str, sorted(below))) or 'none'})")
        return {**OPTIONS[codec], **below[quality]}
    return {**OPTIONS[codec], "quality": int(quality)}


def code(image: np.ndarray, codec: str, quality: int, scale: int = 1) -> Coded:
    """Encode an (H, W, 3) uint8 image with `codec` at `quality`, decode it back.

    With `scale` > 1 the picture is coded at 1/scale of its sides and the decoded one brought
    back to H x W; the resampling counts in the encode and decode times, as it would for a user.
    """
    from PIL import Image

    args = encoder_args(codec, quality)
    h, w = image.shape[:2]
    t0 = time.perf_counter()
    small = downscale(np.ascontiguousarray(image, dtype=np.uint8), scale)
    buf = io.BytesIO()
    # libaom writes other bytes with one thread than with two or more (and the same for any
    # count above one): at least two, so a row's bytes do not depend on the machine's cores
    threads = {"max_threads": avif_threads()} if codec == "avif" else {}
    Image.fromarray(small, "RGB").save(buf, format=PILLOW_FORMAT[codec], **args, **threads)
    t1 = time.perf_counter()
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        decoded = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    decoded = upscale(decoded, scale, h, w)
    t2 = time.perf_counter()
    if decoded.shape != image.shape:
        raise RuntimeError(f"{codec} decoded a {decoded.shape} image from a {image.shape} one")
    return Coded(codec, int(quality), decoded, len(data), t1 - t0, t2 - t1, scale)


# --------------------------------------------------------------------------- sweeps


def sweep(codec: str, scale: int, quick: bool) -> list[int]:
    """The settings a variant is swept over."""
    if scale == 1:
        return list((QUICK_SWEEPS if quick else SWEEPS)[codec])
    return list((QUICK_SCALED_SWEEPS if quick else SCALED_SWEEPS)[scale][codec])


def settings(codecs: list[str], quick: bool, scales: tuple[int, ...] | list[int] = (1,)) -> dict[str, dict]:
    """The sweep of each variant (codec x scale) as recorded in results.json, keyed by its name."""
    out = {}
    for c in codecs:
        for s in scales:
            values = sweep(c, s, quick)
            entry = {"library": "Pillow", "format": PILLOW_FORMAT[c], "parameter": "quality", "values": values,
                     "options": dict(OPTIONS[c]), "codec": c, "scale": 1.0 / s, "scale_label": scale_label(s)}
            below = {str(q): BELOW_FLOOR[c][q] for q in values if q < 0}
            if below:
                entry["below_floor"] = below
            if s != 1:
                entry["resample"] = {"down": DOWNSAMPLE, "up": UPSAMPLE}
            out[variant_name(c, s)] = entry
    return out


__all__ = ["SWEEPS", "SCALED_SWEEPS", "QUICK_SWEEPS", "QUICK_SCALED_SWEEPS", "OPTIONS", "BELOW_FLOOR", "CODECS",
           "SCALES", "Coded", "available", "code", "encoder_args", "downscale", "upscale", "sweep", "settings",
           "scale_label", "parse_scale", "variant_name", "parse_variant", "family_name", "families"]
