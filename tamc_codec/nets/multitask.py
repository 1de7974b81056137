"""Group encoders and task decoders (paper §3.2: l_a per group, l_s per task).

Sized for two CPU cores rather than the paper's Xception (≈16 M parameters):
each group has a convolutional analysis transform to a latent at 1/16 resolution,
and each task in the group a decoder. Dense geometric tasks (seg, depth, normal)
are predicted at 1/4 resolution and upsampled bilinearly, which costs about 4x
less than full-resolution decoding and loses little on piecewise-smooth labels;
rgb, edge and keypoint carry fine texture and are decoded at full resolution.

Everything here exports to ONNX with plain ops (conv, transposed conv, GELU,
bilinear resize), which the torch-free codec runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..contract import group_id, group_tasks
from . import NORMS
from ..tasks.registry import TASK_SPECS

LATENT_STRIDE = 16
FULL_RES_TASKS = ("edge", "keypoint", "rgb")


@dataclass
class NetConfig:
    latent_channels: int = 64
    encoder_channels: tuple[int, int, int] = (32, 64, 96)
    decoder_channels: tuple[int, int, int] = (96, 64, 48)
    full_res_channels: int = 32
    # NORMS: "group" (GroupNorm) or "channel" (each pixel's features normalised alone) after
    # the encoder's and decoders' hidden convolutions. Without one the plain stacks learned
    # the geometric tasks far too slowly on a CPU budget.
    norm: str = "none"
    # The encoder's normalisation, when it differs from the decoders' (None: `norm`). GroupNorm
    # in the encoder let a whole scene normalise differently from the crops it was trained
    # on, and edge and keypoint lost half their quality on whole scenes (docs/TRAINING.md).
    encoder_norm: str | None = None
    # Decoders add a projection of the latent's spatial mean to their first features:
    # a whole-scene cue (room size for depth, layout for seg) that a 1/16-resolution
    # receptive field cannot see.
    global_context: bool = False
    # The encoder and the decoders also see each pixel's position in the image (two
    # channels, -1..1 across the whole picture). Room layout ties seg, depth and normal to
    # position: the per-pixel-mean baseline knows it, a translation-invariant network does
    # not, and random training crops hide it altogether unless told where they came from.
    coords: bool = False
    # Channels of the context a task decoder also reads: its group's DAG ancestors' latents,
    # which decoding the task has already decoded (stage 3; CONTRACT.md, decoder context).
    # They enter through a 1x1 projection added to the first features: a few kB per decoder.
    context_channels: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def coord_grid(like: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 2, h, w) pixel-centre positions (y, x) in -1..1 across the whole picture.

    `origin` (N, 4): top, left, full height, full width of the picture `like` was cut from,
    in `like`'s own pixels; None means `like` is the whole picture. Built from the input's
    shape with arange so the exported graphs take any image size.
    """
    n, _, h, w = like.shape
    ys = torch.arange(h, dtype=like.dtype, device=like.device) + 0.5
    xs = torch.arange(w, dtype=like.dtype, device=like.device) + 0.5
    # two branches, not one formula with a zero origin: the whole-picture branch is what the
    # exported graphs contain, and changing its ops changes the shipped model's file hashes
    if origin is None:
        gy = (2 * ys / h - 1).view(1, 1, h, 1).expand(n, 1, h, w)
        gx = (2 * xs / w - 1).view(1, 1, 1, w).expand(n, 1, h, w)
    else:
        o = origin.to(like.dtype)
        gy = (2 * (ys[None] + o[:, :1]) / o[:, 2:3] - 1).view(n, 1, h, 1).expand(n, 1, h, w)
        gx = (2 * (xs[None] + o[:, 1:2]) / o[:, 3:4] - 1).view(n, 1, 1, w).expand(n, 1, h, w)
    return torch.cat([gy, gx], 1)


def _norm(kind: str, ch: int) -> list[nn.Module]:
    """The normalisation layer(s) to splice into a stack: none adds nothing, so the default
    network keeps its layer indices and earlier state dicts load."""
    if kind == "none":
        return []
    if kind == "group":
        return [nn.GroupNorm(min(8, ch), ch)]
    if kind == "channel":
        return [ChannelNorm(ch)]
    raise ValueError(f"unknown norm {kind!r} (known: {', '.join(NORMS)})")


class ChannelNorm(nn.Module):
    """Each pixel's feature vector scaled to zero mean and unit variance, then a learned
    per-channel affine map. Unlike GroupNorm no statistic spans the picture, so a network
    trained on crops computes the same on a whole scene of any size."""

    def __init__(self, ch: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))
        self.eps = eps
        self.channels = ch  # a Python int: the ONNX tracer would turn x.shape[1] into a graph op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # layer_norm over the last axis is one fused kernel, about twice as fast on CPU as
        # computing the moments over axis 1 by hand
        return F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    def __init__(self, ch: int, norm: str = "none"):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)
        # Identity has no state, so the default block's state dict is unchanged
        self.n1 = nn.Sequential(*_norm(norm, ch))
        self.n2 = nn.Sequential(*_norm(norm, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.gelu(self.n2(self.c1(F.gelu(self.n1(x))))))


class GroupEncoder(nn.Module):
    """Analysis transform: image (3, H, W) in [0, 1] -> latent (C, H/16, W/16)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        c1, c2, c3 = cfg.encoder_channels
        k = cfg.encoder_norm or cfg.norm
        self.cfg = cfg
        self.coords = cfg.coords
        self.net = nn.Sequential(
            nn.Conv2d(5 if cfg.coords else 3, c1, 5, stride=2, padding=2), *_norm(k, c1), nn.GELU(),
            nn.Conv2d(c1, c2, 5, stride=2, padding=2), ResBlock(c2, k), *_norm(k, c2), nn.GELU(),
            nn.Conv2d(c2, c3, 5, stride=2, padding=2), ResBlock(c3, k), *_norm(k, c3), nn.GELU(),
            nn.Conv2d(c3, cfg.latent_channels, 5, stride=2, padding=2),
        )

    def forward(self, image: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
        # centre the input: the latent's zero then means "average image"
        x = image - 0.5
        if self.coords:
            x = torch.cat([x, coord_grid(x, origin)], 1)
        return self.net(x)


class Up(nn.Module):
    """x2 upsampling by sub-pixel convolution: a 3x3 conv at the low resolution and a
    pixel shuffle, several times cheaper than a transposed conv at the high one."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class TaskDecoder(nn.Module):
    """Synthesis transform for one task: latent -> prediction at the input resolution."""

    def __init__(self, task: str, cfg: NetConfig):
        super().__init__()
        d0, d1, d2 = cfg.decoder_channels
        out = TASK_SPECS[task].channels
        self.task = task
        self.cfg = cfg
        self.full_res = task in FULL_RES_TASKS
        k = cfg.norm
        self.coords = cfg.coords
        layers: list[nn.Module] = [
            nn.Conv2d(cfg.latent_channels + (2 if cfg.coords else 0), d0, 3, padding=1), *_norm(k, d0), nn.GELU(),
            Up(d0, d1), ResBlock(d1, k), *_norm(k, d1), nn.GELU(),   # 1/8
            Up(d1, d2), ResBlock(d2, k), *_norm(k, d2), nn.GELU(),   # 1/4
        ]
        if cfg.global_context:
            self.global_context = nn.Linear(cfg.latent_channels, d0)
        if cfg.context_channels:
            self.context = nn.Conv2d(cfg.context_channels, d0, 1)
        if self.full_res:
            f = cfg.full_res_channels
            layers += [Up(d2, f), nn.GELU(), nn.Conv2d(f, f, 3, padding=1), nn.GELU(),  # 1/2
                       Up(f, out)]                                                       # 1/1
        else:
            layers += [nn.Conv2d(d2, out, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor, origin: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        x = latent
        if self.coords:
            # origin is in image pixels; the latent is LATENT_STRIDE times smaller
            x = torch.cat([latent, coord_grid(latent, None if origin is None else origin / LATENT_STRIDE)], 1)
        if hasattr(self, "global_context") or hasattr(self, "context"):
            h = self.net[0](x)
            if hasattr(self, "global_context"):
                h = h + self.global_context(latent.mean(dim=(2, 3)))[:, :, None, None]
            if hasattr(self, "context"):
                if context is None:
                    raise ValueError(f"the {self.task} decoder reads its ancestors' latents: pass context")
                h = h + self.context(context)
            y = self.net[1:](h)
        else:
            y = self.net(x)  # one call: the exported graph of a plain decoder stays as it was
        if not self.full_res:
            y = F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False)
        if self.task == "rgb":
            y = y + 0.5  # predict around mid-grey; the target is in [0, 1]
        return y


class MultiGroupModel(nn.Module):
    """One encoder per group and, inside each group, one decoder per member task.

    A task in several groups has a decoder in each (it shapes each group's latent
    during training) but is *served* by one group only at inference (`serving`).
    """

    def __init__(self, groups: list[str], cfg: NetConfig | None = None, serving: dict[str, str] | None = None):
        super().__init__()
        self.cfg = cfg or NetConfig()
        self.groups = [group_id(group_tasks(g)) for g in groups]
        if len(set(self.groups)) != len(self.groups):
            raise ValueError("duplicate group ids")
        self.encoders = nn.ModuleDict({_key(g): GroupEncoder(self.cfg) for g in self.groups})
        self.decoders = nn.ModuleDict({
            _key(g): nn.ModuleDict({t: TaskDecoder(t, self.cfg) for t in group_tasks(g)}) for g in self.groups
        })
        self.serving = dict(serving) if serving else default_serving(self.groups)

    @property
    def tasks(self) -> list[str]:
        from ..contract import sort_tasks

        return sort_tasks({t for g in self.groups for t in group_tasks(g)})

    @property
    def coded_groups(self) -> list[str]:
        """The groups that serve at least one task, in model order: the ones worth coding."""
        return coded_groups(self.groups, self.serving)

    def encode(self, image: torch.Tensor, groups: list[str] | None = None,
               origin: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`origin`: where crops sit in their scenes (coord_grid); None for whole pictures."""
        return {g: self.encoders[_key(g)](image, origin) for g in (groups or self.groups)}

    def decode(self, group: str, task: str, latent: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoders[_key(group)][task](latent, origin)

    def forward(self, image: torch.Tensor, origin: torch.Tensor | None = None) -> dict[tuple[str, str], torch.Tensor]:
        """Predictions of every (group, task) pair, for training."""
        latents = self.encode(image, origin=origin)
        return {(g, t): self.decode(g, t, latents[g], origin) for g in self.groups for t in group_tasks(g)}

    def describe(self) -> dict:
        return {"groups": self.groups, "serving": self.serving, "config": self.cfg.to_dict()}


def _key(group: str) -> str:
    # ModuleDict keys cannot contain '.', and '+' reads badly in state dicts
    return group.replace("+", "_")


def coded_groups(groups: list[str], serving: dict[str, str]) -> list[str]:
    """Groups that serve a task. A group whose every member is served better elsewhere
    has no receiver: it shaped the shared training but coding it would only cost bits."""
    used = set(serving.values())
    return [g for g in groups if g in used]


def default_serving(groups: list[str]) -> dict[str, str]:
    """Serve each task from the smallest group containing it (before any measurement)."""
    serving: dict[str, str] = {}
    for g in sorted(groups, key=lambda g: (len(group_tasks(g)), g)):
        for t in group_tasks(g):
            serving.setdefault(t, g)
    return serving


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
