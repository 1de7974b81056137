"""tamc: multi-task machine-vision compression (TAMC).

The package root imports nothing heavy: ``import tamc_codec`` is cheap, and the
codec API below loads its runtime on first call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["encode", "decode", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def encode(image: Any, tasks: Any = "all", quality: int | None = None, model: str | None = None,
           allow_large: bool = False) -> bytes:
    """Encode an image (path, PIL image or uint8 HxWx3 array) into .tamc bytes.

    Pictures whose padded size exceeds tamc_codec.limits.MAX_PIXELS are refused (TamcInputError)
    before their pixels are decoded, unless allow_large (docs/CLI.md, "Size limit").
    """
    from .runtime import encode as _encode

    return _encode(image, tasks=tasks, quality=quality, model=model, allow_large=allow_large)


def decode(data: bytes, task: str, model: str | None = None, allow_large: bool = False) -> "np.ndarray":
    """Decode one task's raw output (units in docs/CONTRACT.md) from .tamc bytes.

    A file whose padded size (declared by a version-1 or -2 file; the model's padding of a
    version-3 file's image size) exceeds tamc_codec.limits.MAX_PIXELS is refused before anything
    is allocated, unless allow_large.
    """
    from .runtime import decode as _decode

    return _decode(data, task=task, model=model, allow_large=allow_large)
