"""How hard the encoder searches a latent layer's symbols (runtime.search; docs/CLI.md, "Effort").

Stdlib only: the CLI's fast path imports it for its options' defaults and help.
"""
from __future__ import annotations

from .errors import TamcInputError

#: Effort level: (sweeps over the layer's non-zero symbols, most candidate moves tried per layer or
#: None for all). 0 rounds every element and searches nothing. One sweep takes most of the gain.
EFFORTS: dict[int, tuple[int, int | None]] = {0: (0, 0), 1: (1, 512), 2: (3, None)}
#: Effort of `tamc encode`, `tamc bench` and the library's encode_image unless told otherwise:
#: rounding, within the encoder's speed target (docs/CLI.md, "Speed"); a search costs seconds a
#: picture and saves bits (docs/CLI.md, "Effort").
DEFAULT_EFFORT = 0


def check_effort(effort: int) -> int:
    """`effort` if it is a level of EFFORTS; else TamcInputError, in one line."""
    if isinstance(effort, bool) or effort not in EFFORTS:
        raise TamcInputError(f"effort must be one of {', '.join(map(str, EFFORTS))}, not {effort!r}")
    return effort
