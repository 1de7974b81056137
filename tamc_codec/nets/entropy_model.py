"""Entropy models of the group latents along the DAG (paper Eqs. 3 and 11-13).

Per group latent y (C channels at 1/16 resolution):

- **Variable rate**: quality q scales the latent by a learned gain vector before
  quantisation (y_s = y * gain[q]) and the decoder undoes it (ŷ / gain[q] approx. by
  inv_gain[q]); a larger gain means finer quantisation and more bits.
- **Hyperprior** (Eq. 3): z = h_a(y_s) is coded with a factorised prior; ψ = h_s(ẑ).
- **Checkerboard context**: the latent is coded in two passes. Anchors (i + j even)
  are predicted from ψ (and the parent); non-anchors also from the decoded anchors
  through a convolution. Two parallel passes instead of a serial raster scan.
- **Cross-task context** (Eq. 11): a child latent also sees its parent's decoded
  latent. The parent is fully decoded first, so an unmasked convolution over all of
  it feeds both passes.
- **Global cross-task context** (Eq. 12, optional): attention whose queries and keys
  come from the parent and whose values come from the child's decoded anchors. The
  child's values exist only after pass 1, so it feeds pass 2 only.

Training sees what decoding sees: the anchors that feed pass 2 are quantised as in
coding (round(y - μ) + μ, straight-through gradient), non-anchors are zero in the
context input, and the task decoders get the same quantised latent.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SCALE_MIN = 0.11  # the smallest scale of the coder's table (tamc_codec.entropy)


def checkerboard(h: int, w: int, device=None) -> torch.Tensor:
    """1 at anchors ((i + j) even), 0 elsewhere; shape (1, 1, h, w)."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    return ((i + j) % 2 == 0).float()[None, None]


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def gaussian_likelihood(v: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(bin of width 1 around v) under N(mean, scale²), floored for stable logs."""
    s = scale.clamp(min=SCALE_MIN)
    d = (v - mean).abs()
    # Phi(x) = erfc(-x / sqrt 2) / 2; the bin is [d - 1/2, d + 1/2] mirrored to d >= 0
    upper = 0.5 * torch.erfc((d - 0.5) / (s * math.sqrt(2)))
    lower = 0.5 * torch.erfc((d + 0.5) / (s * math.sqrt(2)))
    return (upper - lower).clamp(min=1e-9)


class GlobalContext(nn.Module):
    """Eq. 12: softmax(q_p) softmax(k_p)^T v_c, linear attention from parent to child anchors."""

    def __init__(self, c_parent: int, c: int, dim: int = 32):
        super().__init__()
        self.q = nn.Sequential(nn.Conv2d(c_parent, dim, 1), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))
        self.k = nn.Sequential(nn.Conv2d(c_parent, dim, 1), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))
        self.v = nn.Sequential(nn.Conv2d(c, dim, 1), nn.Conv2d(dim, dim, 3, padding=1, groups=dim))
        self.out = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 1))
        self.dim = dim

    def forward(self, parent: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        b, _, h, w = parent.shape
        q = torch.softmax(self.q(parent).flatten(2), dim=1)            # over channels
        k = torch.softmax(self.k(parent).flatten(2), dim=2)            # over positions
        v = self.v(anchors).flatten(2)
        ctx = torch.einsum("bdn,ben->bde", k, v)                       # (b, dim, dim)
        y = torch.einsum("bdn,bde->ben", q, ctx).reshape(b, self.dim, h, w)
        return y + self.out(y)


class GroupEntropyModel(nn.Module):
    """Hyperprior + checkerboard + parent context for one group latent."""

    def __init__(self, channels: int, parent_channels: int | None, qualities: int = 5,
                 hyper_channels: int = 32, use_global: bool = False):
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck

        c, cz = channels, hyper_channels
        self.channels = c
        self.qualities = qualities
        # Gains live in log space so that Adam moves them by ratios: a quality's step size
        # must be able to travel an order of magnitude within a short fine-tuning.
        # init_gains() replaces this placeholder spread with one scaled to the latents.
        init = torch.linspace(math.log(0.35), math.log(2.8), qualities)
        self.log_gain = nn.Parameter(init[:, None].repeat(1, c))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, c))
        self.h_a = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, c, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(c, cz, 5, stride=2, padding=2),
        )
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(cz, c, 5, stride=2, padding=2, output_padding=1), nn.GELU(),
            nn.ConvTranspose2d(c, c, 5, stride=2, padding=2, output_padding=1), nn.GELU(),
            # 1x1: the transposed convs already mix space; this keeps the shipped model small
            nn.Conv2d(c, 2 * c, 1),
        )
        self.entropy_bottleneck = EntropyBottleneck(cz)
        self.has_parent = parent_channels is not None
        cp = c if self.has_parent else 0
        if self.has_parent:
            self.parent_net = nn.Sequential(nn.Conv2d(parent_channels, c, 3, padding=1), nn.GELU(),
                                            nn.Conv2d(c, c, 3, padding=1))
        self.use_global = bool(use_global and self.has_parent)
        cg = 32 if self.use_global else 0
        if self.use_global:
            self.global_ctx = GlobalContext(parent_channels, c)
        self.context = nn.Conv2d(c, 2 * c, 5, padding=2)
        self.params1 = nn.Sequential(nn.Conv2d(2 * c + cp, 2 * c, 1), nn.GELU(), nn.Conv2d(2 * c, 2 * c, 1))
        self.params2 = nn.Sequential(nn.Conv2d(4 * c + cp + cg, 2 * c, 1), nn.GELU(), nn.Conv2d(2 * c, 2 * c, 1))

    @property
    def gain(self) -> torch.Tensor:
        """(Q, C) multipliers on the latent before quantisation; larger = finer = more bits."""
        return self.log_gain.exp()

    @property
    def inv_gain(self) -> torch.Tensor:
        """(Q, C) learned approximate inverse applied to the decoded latent."""
        return self.log_inv_gain.exp()

    @torch.no_grad()
    def init_gains(self, latent_std: torch.Tensor, low: float, high: float) -> None:
        """Start quality q's quantisation step at std_c / g_q, g log-spaced from `low` (q=1)
        to `high` (q=Q), per channel c.

        Stage-1 latents carry no rate pressure, so their ranges differ by orders of
        magnitude between groups and channels; one fixed gain would give one group
        7 bits per element and another 2. Channels with (almost) no spread get the
        median channel's std, so they are not coded at a needlessly fine step.
        """
        std = latent_std.to(self.log_gain).clamp(min=float(latent_std.median()) * 1e-2)
        g = torch.linspace(math.log(low), math.log(high), self.qualities, device=std.device)
        self.log_gain.copy_(g[:, None] - std.log()[None, :])
        self.log_inv_gain.copy_(-self.log_gain)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the log-space parameters stored gain / inv_gain
        for name in ("gain", "inv_gain"):
            old = state_dict.pop(prefix + name, None)
            if old is not None:
                state_dict[prefix + "log_" + name] = old.clamp(min=1e-12).log()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- the pieces the exported graphs are made of ------------------------------------------

    def parent_features(self, parent_hat: torch.Tensor | None, like: torch.Tensor) -> list[torch.Tensor]:
        if not self.has_parent:
            return []
        if parent_hat.shape[-2:] != like.shape[-2:]:
            raise ValueError("parent and child latents must have the same spatial size")
        return [self.parent_net(parent_hat)]

    def pass1(self, psi: torch.Tensor, parent_hat: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales of the anchors (valid at anchor positions)."""
        p = self.params1(torch.cat([psi, *self.parent_features(parent_hat, psi)], dim=1))
        mean, raw = p.chunk(2, dim=1)
        return mean, SCALE_MIN + F.softplus(raw)

    def pass2(self, psi: torch.Tensor, parent_hat: torch.Tensor | None, anchors_hat: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales of the non-anchors, given the decoded anchors (zero elsewhere)."""
        feats = [psi, *self.parent_features(parent_hat, psi), self.context(anchors_hat)]
        if self.use_global:
            feats.append(self.global_ctx(parent_hat, anchors_hat))
        p = self.params2(torch.cat(feats, dim=1))
        mean, raw = p.chunk(2, dim=1)
        return mean, SCALE_MIN + F.softplus(raw)

    # -- training -----------------------------------------------------------------------------

    def forward(self, y: torch.Tensor, q: torch.Tensor, parent_hat: torch.Tensor | None = None) -> dict:
        """y (B, C, h, w) from the encoder, q (B,) quality indices 0..Q-1.

        Returns the dequantised latent for the decoders (`y_dec`), the bits of y and z
        per image, and the quantised scaled latent.
        """
        gain = self.gain[q][:, :, None, None]
        inv_gain = self.inv_gain[q][:, :, None, None]
        ys = y * gain
        z = self.h_a(ys)
        z_hat, z_lik = self.entropy_bottleneck(z)
        psi = self.h_s(z_hat)
        if psi.shape[-2:] != ys.shape[-2:]:
            psi = psi[..., : ys.shape[-2], : ys.shape[-1]]
        mask = checkerboard(*ys.shape[-2:], device=ys.device)
        mean1, scale1 = self.pass1(psi, parent_hat)
        anchors_hat = (ste_round(ys - mean1) + mean1) * mask
        mean2, scale2 = self.pass2(psi, parent_hat, anchors_hat)
        mean = mean1 * mask + mean2 * (1 - mask)
        scale = scale1 * mask + scale2 * (1 - mask)
        y_hat = ste_round(ys - mean) + mean
        if self.training:
            noisy = ys + torch.empty_like(ys).uniform_(-0.5, 0.5)
            lik = gaussian_likelihood(noisy, mean, scale)
        else:
            lik = gaussian_likelihood(y_hat, mean, scale)
        bits_y = -torch.log2(lik).flatten(1).sum(1)
        bits_z = -torch.log2(z_lik.clamp(min=1e-9)).flatten(1).sum(1)
        return {"y_dec": y_hat * inv_gain, "y_hat": y_hat, "bits_y": bits_y, "bits_z": bits_z,
                "mean": mean, "scale": scale}

    def aux_loss(self) -> torch.Tensor:
        return self.entropy_bottleneck.loss()
