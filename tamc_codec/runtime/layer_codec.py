"""One group's layer, coded and decoded by the same steps (docs/FORMAT.md, layer payload).

A layer is three sub-streams:
0. the hyper-latent z, rounded around the factorised prior's medians; absent where the model
   fixes z (docs/MODEL.md, fixed hyper-latents), so that the layer is the next two only;
1. the latent's anchors ((i + j) even), each a Gaussian whose mean and scale come from ψ (the
   hyper-synthesis of ẑ) and the decoded parent;
2. the rest, whose parameters also see the decoded anchors.

`LayerCodec.encode` and `LayerCodec.decode` walk these steps through one method, `_latent`, that
only differs in where a pass's symbols come from (rounded from the latent, or read from the
stream). The encoder therefore computes every mean and scale with the decoder's graphs on the
values the decoder will hold, and a 16-bit checksum of the scale bins makes any disagreement fail
loudly instead of decoding garbage.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..bitstream import LayerPayload, pack_substreams
from ..entropy import index_checksum
from ..errors import TamcFormatError
from .model import RuntimeModel
from .resample import on_grid
from .search import Objective, search_symbols

#: Graphs that decide entropy parameters run single-threaded: identical floats on every machine setting.
PARAM_THREADS = 1


def checkerboard(h: int, w: int) -> np.ndarray:
    """The anchor positions of pass 1: (i + j) even."""
    return (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0


@dataclass
class CodedLayer:
    """What coding a layer gives both sides: the payload and the latent as the decoder sees it."""
    payload: bytes
    #: the dequantised latent (what the group's task decoders read)
    latent: np.ndarray
    #: what the layer's DAG children see of it (RuntimeModel.parent_input)
    context: np.ndarray
    #: bytes of each sub-stream (hyper, anchors, the rest)
    substreams: list[int]


class LayerCodec:
    """Codes group `group` at `quality` on a latent grid of `grid` (height, width) positions.

    parent: the decoded parent's context (CodedLayer.context) for a DAG child, else None; it is put
    on this layer's grid here.
    """

    def __init__(self, model: RuntimeModel, group: str, quality: int, grid: tuple[int, int],
                 parent: np.ndarray | None = None):
        self.model = model
        self.group = group
        self.grid = grid
        self.gain, self.inv_gain = model.gains(group, quality)
        self.hyper, self.medians = model.hyper_coder(group)
        self.fixed_z = model.fixed_hyper(group, quality)
        self.parent = on_grid(parent, grid) if parent is not None else None
        channels = int(model.manifest["latent_channels"])
        self.shape = (1, channels, *grid)
        self.anchor = checkerboard(*grid)[None, None] & np.ones(self.shape, bool)

    # ------------------------------------------------------------------ both directions

    def _fixed_symbols(self) -> np.ndarray:
        zh, zw = (-(-n // self.model.hyper_stride) for n in self.grid)
        return np.broadcast_to(self.fixed_z[None, :, None, None], (1, self.fixed_z.shape[0], zh, zw)).copy()

    def _psi(self, z_sym: np.ndarray) -> np.ndarray:
        z_hat = (z_sym + self.medians[None, :, None, None]).astype(np.float32)
        psi = self.model.run(self.group, "hyper_synthesis", PARAM_THREADS, z_hat=z_hat)[0]
        return psi[..., :self.grid[0], :self.grid[1]]

    def _params(self, part: str, psi: np.ndarray, anchors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        inputs = {"psi": psi}
        if self.model.parents[self.group] is not None:
            inputs["parent"] = self.parent
        if anchors is not None:
            inputs["anchors"] = anchors
        mean, scale = self.model.run(self.group, part, PARAM_THREADS, **inputs)
        return mean, scale

    def _latent(self, psi: np.ndarray,
                symbols: Callable[[int, np.ndarray, np.ndarray, list[np.ndarray]], np.ndarray]
                ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The quantised, gain-scaled latent and each pass's scale bins, pass by pass.
        symbols(k, mask, mean, indexes) gives pass k's integer symbols; `indexes` holds the scale
        bins of passes 1..k."""
        y_hat = np.zeros(self.shape, np.float32)
        indexes: list[np.ndarray] = []
        for k, mask in ((1, self.anchor), (2, ~self.anchor)):
            mean, scale = self._params(f"pass{k}", psi, y_hat if k == 2 else None)
            indexes.append(self.model.gaussian.indexes(scale[mask]))
            y_hat[mask] = symbols(k, mask, mean, indexes) + mean[mask]
        return y_hat, indexes

    def _coded(self, y_hat: np.ndarray, payload: bytes, substreams: list[int]) -> CodedLayer:
        latent = (y_hat * self.inv_gain[None, :, None, None]).astype(np.float32)
        context = y_hat.astype(np.float32) if self.model.parent_input == "quantised" else latent
        return CodedLayer(payload=payload, latent=latent, context=context, substreams=substreams)

    # ------------------------------------------------------------------ directions

    def _searched(self, ys: np.ndarray, psi: np.ndarray, objective: Objective, effort: int
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Each pass's symbols as runtime.search chooses them; the cost of a choice is computed on
        what the decoder would hold (pass 2's parameters from the chosen anchors)."""
        gauss, anchor = self.model.gaussian, self.anchor
        mean1, scale1 = self._params("pass1", psi, None)
        index1 = gauss.indexes(scale1[anchor])
        last: list = [None, None]  # the anchors pass 2 last ran on, and what it gave

        def decoded(sym1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if last[0] is None or not np.array_equal(last[0], sym1):  # a non-anchor's move keeps them
                y_hat = np.zeros(self.shape, np.float32)
                y_hat[anchor] = sym1 + mean1[anchor]
                mean2, scale2 = self._params("pass2", psi, y_hat)
                last[:] = [sym1, (y_hat, mean2, gauss.indexes(scale2[~anchor]))]
            return last[1]

        def cost(sym1: np.ndarray, sym2: np.ndarray) -> float:
            y_hat, mean2, index2 = decoded(sym1)
            y_hat = y_hat.copy()
            y_hat[~anchor] = sym2 + mean2[~anchor]
            bits = gauss.information_content(sym1, index1) + gauss.information_content(sym2, index2)
            return objective.distortion(y_hat * self.inv_gain[None, :, None, None]) + objective.mu * bits

        sym1 = np.rint(ys[anchor] - mean1[anchor]).astype(np.int32)
        mean2 = decoded(sym1)[1]
        sym2 = np.rint(ys[~anchor] - mean2[~anchor]).astype(np.int32)
        residual = (ys[anchor] - mean1[anchor], ys[~anchor] - mean2[~anchor])
        return search_symbols((sym1, sym2), residual, cost, effort)

    def encode(self, y: np.ndarray, objective: Objective | None = None, effort: int = 0) -> CodedLayer:
        """Code the analysis output `y` (1, C, H, W) on this layer's grid: its elements rounded, or,
        with an `objective` and an effort above 0, the symbols runtime.search finds."""
        ys = y * self.gain[None, :, None, None]
        if self.fixed_z is None:
            z = self.model.run(self.group, "hyper_analysis", PARAM_THREADS, ys=ys)[0]
            z_sym = np.rint(z - self.medians[None, :, None, None]).astype(np.int32)
        else:
            z_sym = self._fixed_symbols()
        psi = self._psi(z_sym)
        chosen = self._searched(ys, psi, objective, effort) if objective is not None and effort > 0 else None
        coded: list[np.ndarray] = []

        def rounded(k: int, mask: np.ndarray, mean: np.ndarray, indexes: list[np.ndarray]) -> np.ndarray:
            coded.append(chosen[k - 1] if chosen else np.rint(ys[mask] - mean[mask]).astype(np.int32))
            return coded[-1]

        y_hat, indexes = self._latent(psi, rounded)
        streams = [self.hyper.encode(z_sym)] if self.fixed_z is None else []
        streams += [self.model.gaussian.encode(sym, idx) for sym, idx in zip(coded, indexes)]
        payload = pack_substreams(streams, index_checksum(*indexes))
        return self._coded(y_hat, payload, [len(s) for s in streams])

    def decode(self, payload: LayerPayload, what: str) -> CodedLayer:
        """Decode a layer's sub-streams; `what` names the layer in errors."""
        first = 0 if self.fixed_z is not None else 1  # the stream of pass 1
        if len(payload.streams) != first + 2:
            raise TamcFormatError(f"{what} has {len(payload.streams)} sub-streams, expected {first + 2}")
        if self.fixed_z is None:
            zh, zw = (-(-n // self.model.hyper_stride) for n in self.grid)
            z_sym = self.hyper.decode(payload.streams[0], (1, self.hyper.channels, zh, zw))
        else:
            z_sym = self._fixed_symbols()

        def read(k: int, mask: np.ndarray, mean: np.ndarray, indexes: list[np.ndarray]) -> np.ndarray:
            if k == 2:  # every scale bin is known: check them before reading the last stream
                payload.verify(index_checksum(*indexes), what=what)
            return self.model.gaussian.decode(payload.streams[first + k - 1], indexes[-1])

        y_hat, _ = self._latent(self._psi(z_sym), read)
        return self._coded(y_hat, b"", [len(s) for s in payload.streams])
