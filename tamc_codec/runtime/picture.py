"""Picture layers: the picture itself, coded by AVIF through Pillow (docs/MODEL.md, "Picture layers").

A model may code a group that serves only tasks defined on the picture's pixels (edge, keypoint,
rgb: CONTRACT.md, label definitions) as a picture rather than a learned latent: the picture is
area-downscaled by the quality's scale (1, 2 or 4), coded by AVIF with the quality's options, and
its container boxes deflated (bitstream.avif). A receiver puts the AVIF file back together, decodes
it with Pillow and brings it back to full size (Lanczos); rgb is that picture, edge and keypoint
are CONTRACT.md's filters run on it. The same down- and up-scaling serve the bench's down-scaled
classical variants (bench.baselines), so a picture layer is exactly a bench curve point.

Only numpy and Pillow (and scipy / scikit-image for the edge and keypoint filters, through
tasks.labels) are imported here; never torch.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np

from ..bitstream.avif import pack_avif, unpack_avif
from ..errors import TamcFormatError, TamcInputError
from ..tasks.registry import TASK_SPECS
# the tasks a picture layer can serve (CONTRACT.md's filters of the picture), its codings and its
# scale divisors (the picture's sides over 1, 2 or 4): the manifest's rules
from .manifest import PICTURE_CODINGS, PICTURE_SCALES, PICTURE_TASKS


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """The picture's area mean over scale x scale blocks; sides are edge-padded to a multiple
    first, so every block is whole and its centre is where up-scaling puts it back."""
    from PIL import Image

    if scale == 1:
        return image
    h, w = image.shape[:2]
    padded = np.pad(image, ((0, -h % scale), (0, -w % scale), (0, 0)), mode="edge")
    return np.asarray(Image.fromarray(np.ascontiguousarray(padded), "RGB").reduce(scale))


def upscale(image: np.ndarray, scale: int, height: int, width: int) -> np.ndarray:
    """A down-scaled picture brought back to height x width (the padded size, then cropped)."""
    from PIL import Image

    if scale == 1:
        return image
    big = Image.fromarray(image, "RGB").resize((image.shape[1] * scale, image.shape[0] * scale),
                                               Image.Resampling.LANCZOS)
    return np.asarray(big)[:height, :width].copy()


def avif_threads(threads: int | None = None) -> int:
    """libaom's thread count. With two threads or more libaom's row-based multithreading writes
    the same bytes for any count (one thread writes other bytes), so this is at least 2 and never
    changes a bit: `threads` (0 or None: every core) otherwise."""
    n = int(threads or 0) or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    return max(2, n)


def encode_avif(image: np.ndarray, options: dict, threads: int | None = None) -> bytes:
    """An (h, w, 3) uint8 picture as an AVIF file, Pillow's save() with `options`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(
        buf, format="AVIF", max_threads=avif_threads(threads), **options)
    return buf.getvalue()


def decode_avif(data: bytes, size: tuple[int, int] | None = None, what: str = "picture layer") -> np.ndarray:
    """An AVIF file's picture as (h, w, 3) uint8; TamcFormatError, one line, when Pillow cannot
    decode it or (with `size`, (h, w)) it is not that size, checked before the pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["AVIF"]) as im:
                w, h = im.size
                if size is not None and (h, w) != tuple(size):
                    raise TamcFormatError(f"{what}: the AVIF picture is {h}x{w} (HxW), expected {size[0]}x{size[1]}")
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except TamcFormatError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:80] or exc.__class__.__name__
        raise TamcFormatError(f"{what}: the AVIF picture cannot be decoded ({detail})") from None


def coded_size(height: int, width: int, scale: int) -> tuple[int, int]:
    """The size a height x width picture is coded at, at `scale`."""
    return -(-height // scale), -(-width // scale)


def picture_output(task: str, picture: np.ndarray) -> np.ndarray:
    """A picture task's raw output (CONTRACT.md units) from the decoded picture: the picture for
    rgb, CONTRACT.md's filter of it for edge and keypoint."""
    from ..tasks import labels

    if task == "rgb":
        return picture
    if task == "edge":
        return labels.edge_label(picture)
    if task == "keypoint":
        return labels.keypoint_label(picture)
    raise TamcInputError(f"{task} is not a task of the picture (those are {', '.join(PICTURE_TASKS)})")


def picture_prediction(task: str, picture: np.ndarray) -> np.ndarray:
    """picture_output in the normalised units networks predict, (C, H, W) float32: what a task
    decoder's output would be (the bench's "+filter" receivers use the same function)."""
    if task == "rgb":
        return np.moveaxis(picture, -1, 0).astype(np.float32) / 255.0
    s = TASK_SPECS[task]
    return ((picture_output(task, picture) - s.offset) / s.scale)[None].astype(np.float32)


class PictureCodec:
    """Codes a picture group's layer at one quality (the manifest's `pictures` entry)."""

    def __init__(self, spec: dict, quality: int, group: str = "picture"):
        self.group = group
        self.coding = spec["coding"]
        setting = spec["qualities"][quality - 1]
        self.scale = int(setting["scale"])
        self.options = dict(setting["avif"])

    def encode(self, image: np.ndarray, threads: int | None = None) -> tuple[bytes, np.ndarray]:
        """The layer's payload and the picture a decoder will get (full size, uint8)."""
        h, w = image.shape[:2]
        data = encode_avif(downscale(np.ascontiguousarray(image, dtype=np.uint8), self.scale), self.options, threads)
        picture = upscale(decode_avif(data, coded_size(h, w, self.scale), f"{self.group} (encoder)"), self.scale, h, w)
        return pack_avif(data), picture

    def decode(self, payload: bytes, height: int, width: int, what: str) -> np.ndarray:
        """The full-size picture a payload holds; TamcFormatError when it holds none of the right size."""
        data = unpack_avif(payload, what)
        return upscale(decode_avif(data, coded_size(height, width, self.scale), what), self.scale, height, width)


__all__ = ["PICTURE_TASKS", "PICTURE_CODINGS", "PICTURE_SCALES", "PictureCodec", "avif_threads",
           "coded_size", "decode_avif", "downscale", "encode_avif", "picture_output", "picture_prediction", "upscale"]
