"""Reading a picture the way the codec takes it (the image policy in docs/CLI.md): any file Pillow
opens becomes 8-bit sRGB RGB, or a one-line TamcInputError says why it cannot."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from ..errors import TamcInputError


def read_image(path: str | Path | BinaryIO, *, max_pixels: int | None = None,
               check_size: Callable[[int, int], None] | None = None,
               notices: list[str] | None = None, name: str | None = None) -> np.ndarray:
    """An image file as uint8 RGB (the policy in docs/CLI.md); one-line TamcInputError when unusable.

    EXIF orientation is applied; palette, grey and 16-bit images become 8-bit RGB; alpha is
    composited on black; an embedded ICC profile is converted to sRGB; of several frames
    (animations, multi-page TIFF) the first is read, with a notice.

    path: a file, or a seekable binary stream (standard input read into memory, say).
    max_pixels: refuse images of more pixels, from the header alone.
    check_size: called with (height, width) from the header, before any pixel is decoded;
    raises TamcInputError to refuse the image (the codec's padded-size limit).
    When either is given, PIL's own decompression-bomb limit is lifted for the call, as the
    caller's limits replace it.
    notices: receives one line per change the caller's user should hear about (transparency
    dropped, an ICC profile that could not be applied, frames after the first ignored, damage
    Pillow warned about).
    name: how messages call the image (default: the path).
    """
    label = str(path) if name is None else name

    def note(text: str) -> None:
        if notices is not None:
            notices.append(f"{label}: {text}")

    # Pillow warns about damage it works around (corrupt EXIF, say) on stderr, in several lines;
    # they become notices, so that the user still hears of them and errors stay one line.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            return _read_image(path, label, max_pixels, check_size, note)
        finally:
            for text in dict.fromkeys(" ".join(str(w.message).split()) for w in seen):
                note(f"Pillow: {text}")


def _read_image(path: str | Path | BinaryIO, name: str, max_pixels: int | None,
                check_size: Callable[[int, int], None] | None, note: Callable[[str], None]) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    bomb_limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None or check_size is not None:
        Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w == 0 or h == 0:
                raise TamcInputError(f"{name}: the image is empty ({w}x{h} pixels)")
            if max_pixels is not None and w * h > max_pixels:
                raise TamcInputError(f"{name}: {w}x{h} is {w * h:,} pixels, more than the limit of {max_pixels:,}")
            if check_size is not None:
                try:
                    check_size(h, w)
                except TamcInputError as exc:
                    raise TamcInputError(f"{name}: {exc}") from None
            # is_animated, not n_frames: counting a GIF's frames walks all of them, which a crafted
            # file can make take minutes; is_animated looks for a second frame only
            if getattr(im, "is_animated", False):
                note("several frames (an animation or pages); only the first is coded")
            icc = im.info.get("icc_profile")
            # PIL decodes lazily and some plugins stop quietly at a truncation; load
            # here so that a damaged file fails inside this try, not later.
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception as exc:  # malformed EXIF is metadata damage, the pixels are fine
                note(f"EXIF orientation unreadable ({exc.__class__.__name__}); used as stored")
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                if im.getchannel("A").getextrema()[0] < 255:
                    note("transparency dropped (composited on black)")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im).convert("RGB")
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                a = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(a / 257.0, 0, 255).astype(np.uint8))
            if icc:
                im = _to_srgb(im, icc, note)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except TamcInputError:
        raise
    except FileNotFoundError:
        raise TamcInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise TamcInputError(f"{name}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        raise TamcInputError(f"{name}: too many pixels (more than PIL's limit of {2 * bomb_limit:,})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = "truncated" if "truncated" in str(exc) else exc.__class__.__name__
        raise TamcInputError(f"{name}: not a readable image ({detail})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


def _to_srgb(im, icc: bytes, note: Callable[[str], None]):
    """`im` converted from its embedded ICC profile to sRGB; unchanged (with a notice) when that fails."""
    import io

    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        # Already sRGB: a conversion could only add rounding (lcms maps its own sRGB exactly, others by ±1).
        if ImageCms.getProfileDescription(src).strip().lower().startswith("srgb"):
            return im
        if im.mode not in ("RGB", "L", "CMYK"):
            im = im.convert("RGB")
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception as exc:  # ImageCms raises PyCMSError, OSError or ValueError for profiles it cannot use
        reason = " ".join(str(exc).split())[:80] or exc.__class__.__name__
        note(f"ICC profile not applied ({reason}); pixels used as they are")
        return im
