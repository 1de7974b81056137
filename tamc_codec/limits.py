"""How large a picture tamc codes without --allow-large, and what that costs (docs/CLI.md, "Size limit").

Memory follows the *padded* picture, not the original: the networks run on the padded one,
and the pad multiple grows with the long side (1024 around 4096 pixels, 2048 near 9000), so a
1 x 9000 picture is coded as 2048 x 10240. Every check here takes the padded size. Stdlib only:
the CLI's fast path imports it.
"""
from __future__ import annotations

from .errors import TamcInputError

#: Largest padded picture (pixels) encoded or decoded without --allow-large: 4096 x 4096.
MAX_PIXELS = 16_777_216
#: Largest original side a .tamc header can hold (bitstream.container.MAX_SIDE).
MAX_SIDE = 65535
#: Peak resident memory per padded pixel, measured with the shipped model (tasks all, 2 cores):
#: encode 1.60 GB at 2048², 6.13 GB at 4096² (365 bytes a pixel); decode 0.98 GB at 2048², 3.57 GB
#: at 4096² (edge, the largest), rounded up with a margin for other machines' thread buffers.
#: They tell the user what --allow-large would cost; benchmarks/fuzz_encode.py checks the first.
ENCODE_BYTES_PER_PIXEL = 380
DECODE_BYTES_PER_PIXEL = 230
#: Most bytes read from standard input (`-`): the input is held in memory whole before decoding.
MAX_STDIN_BYTES = 256 << 20


def memory_gb(pixels: int, action: str) -> float:
    """About how many GB coding `pixels` padded pixels takes (`action`: "encode" or "decode")."""
    per = ENCODE_BYTES_PER_PIXEL if action == "encode" else DECODE_BYTES_PER_PIXEL
    return pixels * per / 1e9


def check_padded(height: int, width: int, padded_height: int, padded_width: int, action: str,
                 allow_large: bool = False) -> None:
    """Refuse a picture whose padded size exceeds MAX_PIXELS, naming both sizes and the memory it needs."""
    pixels = padded_height * padded_width
    if allow_large or pixels <= MAX_PIXELS:
        return
    raise TamcInputError(
        f"{height}x{width} (HxW) is padded to {padded_height}x{padded_width} = {pixels:,} pixels, more than "
        f"the limit of {MAX_PIXELS:,}; pass --allow-large (Python: allow_large=True) to {action} it anyway "
        f"(about {memory_gb(pixels, action):.1f} GB of memory)")
