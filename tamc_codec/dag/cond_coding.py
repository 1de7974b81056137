"""The ``coding`` estimator: H(Yc | Yp) as the bits a small entropy model spends on Yc.

Beyond the paper, which uses a KDE oracle (§3.3, Eq. 9): here the conditional entropy is what
the codec would actually save. For each group a context-free model (a Gaussian per channel)
and, for each ordered pair, a model that predicts a Gaussian mean and scale per element of the
child from the co-located neighbourhood of the parent, are fitted for a fixed number of steps
on part of the images and evaluated on the rest. Bits are −log2 of the discretised Gaussian
likelihood of round(y), as Eqs. 11 and 13 code them: the codec quantises latents with unit
step, so values are measured at the scale they are given in. The parent is rounded too, since
the decoder only has the quantised parent.

H(Yc)      = held-out bits per element of the context-free model;
H(Yc | Yp) = held-out bits per element with Yp as context, capped at H(Yc) because a codec
             can always ignore an unhelpful parent.

Both numbers are upper bounds in the coding sense (achievable rates of one particular model),
and the difference measures what this model class extracts from the parent, not the mutual
information.
"""
from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TamcInputError

#: Smallest scale a Gaussian may take, as in CompressAI's scale tables: below it a unit bin
#: holds essentially all the mass anyway, and tiny scales make the likelihood brittle.
SCALE_BOUND = 0.11
#: Likelihood floor: caps one element's cost at about 30 bits so a single outlier cannot
#: dominate (or overflow) the mean.
LIKELIHOOD_FLOOR = 1e-9


@dataclass
class CodingSettings:
    # The ridge-regression start already holds the co-located linear dependence; the steps
    # only let the 3×3 branch add what a neighbourhood or a nonlinearity gives, and the
    # stop images keep the start whenever they do not help.
    steps: int = 100        # optimiser steps per model
    batch: int = 16         # images per step
    lr: float = 1e-3
    hidden: int = 32        # channels of the parent branch
    holdout: float = 0.25   # fraction of images held out for evaluation (at least one)
    seed: int = 0
    # One thread: the tensors are small (a batch is ~1 MB), and on a shared 2-core machine
    # two OpenMP threads waiting on each other ran 5-10× slower than one (measured on the
    # 4 × 200 × 64 × 16×16 case). None = every CPU this process may use.
    threads: int | None = 1


def discretised_gaussian_bits(y: torch.Tensor, mu: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """−log2 P(y) for integer y under N(mu, scale²) integrated over [y − ½, y + ½] (Eq. 11)."""
    # Evaluate on the lower tail (|y − μ|) so that both CDF values are small when they differ
    # least, which keeps the subtraction accurate far from the mean.
    v = (y - mu).abs()
    p = torch.special.ndtr((0.5 - v) / scale) - torch.special.ndtr((-0.5 - v) / scale)
    return -torch.log2(p.clamp_min(LIKELIHOOD_FLOOR))


class _Prior(nn.Module):
    """Context-free baseline: one Gaussian per channel."""

    def __init__(self, mu: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.mu = nn.Parameter(mu.clone())
        # scale = bound + exp(raw): never below the bound, and the gradient never vanishes.
        self.raw = nn.Parameter(torch.log((scale - SCALE_BOUND).clamp_min(1e-3)))

    def params(self, n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.mu.view(1, -1, 1, 1).expand(n, -1, h, w)
        scale = (SCALE_BOUND + self.raw.exp()).view(1, -1, 1, 1).expand(n, -1, h, w)
        return mu, scale


class _Conditional(nn.Module):
    """The baseline plus a correction predicted from the parent.

    A linear 1×1 path carries co-located linear dependence (B = A + noise needs the identity,
    which a narrow nonlinear branch cannot pass); two 3×3 convolutions add a 5×5 neighbourhood
    of the parent. Output layers start at zero, so training starts from the baseline and the
    measured saving is what the parent adds. Replicate padding keeps the image border from
    being a feature: with zero padding the model could learn position-only structure of the
    child and credit it to any parent.
    """

    def __init__(self, prior: _Prior, c_parent: int, c_child: int, hidden: int):
        super().__init__()
        self.prior = _Prior(prior.mu.detach(), SCALE_BOUND + prior.raw.detach().exp())
        self.c_child = c_child
        self.linear = nn.Conv2d(c_parent, 2 * c_child, 1)
        self.conv1 = nn.Conv2d(c_parent, hidden, 3, padding=1, padding_mode="replicate")
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="replicate")
        self.out = nn.Conv2d(hidden, 2 * c_child, 1)
        for layer in (self.linear, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @torch.no_grad()
    def init_linear(self, parent: torch.Tensor, child: torch.Tensor, ridge: float = 1e-3) -> None:
        """Start the linear path at the ridge regression of child on co-located parent.

        A few hundred Adam steps cannot walk weights of order one from zero, so without this
        the measured saving would depend on the step budget more than on the parent.
        """
        cp, cc = parent.shape[1], child.shape[1]
        x = parent.permute(0, 2, 3, 1).reshape(-1, cp).double()
        y = child.permute(0, 2, 3, 1).reshape(-1, cc).double()
        x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        gram = x1.T @ x1 + ridge * len(x) * torch.eye(cp + 1, dtype=x.dtype)
        coef = torch.linalg.solve(gram, x1.T @ y)  # [cp + 1, cc]
        resid = (y - x1 @ coef).std(dim=0, unbiased=False)
        mu0 = self.prior.mu.double()
        scale0 = SCALE_BOUND + self.prior.raw.exp().double()
        self.linear.weight[:cc, :, 0, 0] = coef[:cp].T.float()
        self.linear.bias[:cc] = (coef[cp] - mu0).float()
        # Residual spread, as a log factor on the prior's scale above the bound.
        ratio = (resid.clamp_min(1e-3)) / (scale0 - SCALE_BOUND).clamp_min(1e-3)
        self.linear.bias[cc:] = torch.log(ratio.clamp(1e-3, 1.0)).float()

    def params(self, parent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = parent.shape
        mu0, scale0 = self.prior.params(n, h, w)
        r = self.linear(parent) + self.out(F.gelu(self.conv2(F.gelu(self.conv1(parent)))))
        mu = mu0 + r[:, : self.c_child]
        # Correct the scale multiplicatively, in the log domain, above the bound.
        scale = SCALE_BOUND + (scale0 - SCALE_BOUND) * torch.exp(r[:, self.c_child:].clamp(-20, 20))
        return mu, scale


def _resize(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if y.shape[2:] == (h, w):
        return y
    if y.shape[2] >= h and y.shape[3] >= w:
        return F.adaptive_avg_pool2d(y, (h, w))
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)


def _stable_seed(*parts: object) -> int:
    """A seed from names that does not depend on PYTHONHASHSEED or evaluation order."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode()) & 0x7FFFFFFF


@contextlib.contextmanager
def _torch_threads(n: int | None):
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


class CodingOracle:
    """Entropies and conditional entropies in bits per latent element, from fitted coders.

    Images are split three ways with a fixed seed: *fit* images train the models, *stop*
    images choose the checkpoint (a conv model on a few hundred latent elements per channel
    memorises i.i.d. noise within a hundred steps, and then its held-out rate exceeds the
    baseline's), and *eval* images, seen by neither, give the reported bits.
    """

    def __init__(self, latents: dict[str, np.ndarray], settings: CodingSettings | None = None):
        self.s = settings or CodingSettings()
        n = next(iter(latents.values())).shape[0]
        if n < 2:
            raise TamcInputError(
                f"the coding estimator needs at least 2 images (one to fit, one to measure); got {n}")
        if self.s.steps < 0 or self.s.batch < 1 or not 0 < self.s.holdout < 1:
            raise TamcInputError("coding estimator needs steps >= 0, batch >= 1, 0 < holdout < 1")
        order = np.random.default_rng(self.s.seed).permutation(n)
        n_eval = min(n - 1, max(1, int(round(self.s.holdout * n))))
        rest = n - n_eval
        # With a single training image there is nothing to stop on: the initial models stand.
        n_stop = 0 if rest < 2 else min(rest - 1, max(1, int(round(self.s.holdout * rest))))
        self.eval_idx = np.sort(order[:n_eval])
        self.stop_idx = np.sort(order[n_eval:n_eval + n_stop])
        self.fit_idx = np.sort(order[n_eval + n_stop:])
        # Rounded once: the codec codes round(y), and the decoder's context is round(y_p).
        self.q = {g: torch.from_numpy(np.rint(np.asarray(y, dtype=np.float32))) for g, y in latents.items()}
        self._priors: dict[str, _Prior] = {}
        self._h: dict[str, float] = {}
        self.stopped_at: dict[str, int] = {}

    @staticmethod
    def _mean_bits(bits_of, images: np.ndarray) -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(images), 32):
                bits = bits_of(torch.from_numpy(images[start:start + 32]))
                total += float(bits.double().sum())
                count += bits.numel()
        return total / count

    def _fit(self, model: nn.Module, bits_of, key: tuple) -> int:
        """Adam on fit images; keeps the parameters that code the stop images best."""
        check_every = max(1, self.s.steps // 10)
        if len(self.stop_idx) == 0 or self.s.steps == 0:
            return 0
        best = self._mean_bits(bits_of, self.stop_idx)
        best_state, best_step = {k: v.clone() for k, v in model.state_dict().items()}, 0
        opt = torch.optim.Adam(model.parameters(), lr=self.s.lr)
        gen = torch.Generator().manual_seed(_stable_seed(self.s.seed, "batches", *key))
        fit = torch.from_numpy(self.fit_idx)
        b = min(self.s.batch, len(fit))
        for step in range(1, self.s.steps + 1):
            idx = fit[torch.randperm(len(fit), generator=gen)[:b]]
            loss = bits_of(idx).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % check_every == 0 or step == self.s.steps:
                now = self._mean_bits(bits_of, self.stop_idx)
                if now < best:
                    best, best_step = now, step
                    best_state = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
        return best_step

    def _prior(self, gid: str) -> _Prior:
        if gid in self._priors:
            return self._priors[gid]
        y = self.q[gid]
        _, _, h, w = y.shape
        fit = y[torch.from_numpy(self.fit_idx)]
        # Start from the moments so a short fit suffices even for far-off means.
        mu = fit.mean(dim=(0, 2, 3))
        scale = fit.std(dim=(0, 2, 3), unbiased=False).nan_to_num(0.0) + SCALE_BOUND
        with _torch_threads(self.s.threads):
            torch.manual_seed(_stable_seed(self.s.seed, "prior", gid))
            prior = _Prior(mu, scale)

            def bits_of(idx):
                return discretised_gaussian_bits(y[idx], *prior.params(len(idx), h, w))

            self.stopped_at[gid] = self._fit(prior, bits_of, ("prior", gid))
            self._h[gid] = self._mean_bits(bits_of, self.eval_idx)
        for p in prior.parameters():
            p.requires_grad_(False)
        self._priors[gid] = prior
        return prior

    def entropy(self, gid: str) -> float:
        """H(Y): held-out bits per element without context."""
        self._prior(gid)
        return self._h[gid]

    def conditional(self, child: str, parent: str) -> float:
        """H(Yc | Yp): held-out bits per element of Yc given Yp, at most H(Yc)."""
        prior = self._prior(child)
        yc = self.q[child]
        _, c_child, h, w = yc.shape
        yp = _resize(self.q[parent], h, w)
        fit = torch.from_numpy(self.fit_idx)
        # Standardise the context with fit statistics; a constant channel becomes 0.
        mean = yp[fit].mean(dim=(0, 2, 3), keepdim=True)
        std = yp[fit].std(dim=(0, 2, 3), unbiased=False, keepdim=True)
        yp = (yp - mean) / torch.where(std > 1e-6, std, torch.ones_like(std))
        with _torch_threads(self.s.threads):
            torch.manual_seed(_stable_seed(self.s.seed, "cond", child, parent))
            model = _Conditional(prior, yp.shape[1], c_child, self.s.hidden)
            model.init_linear(yp[fit], yc[fit])

            def bits_of(idx):
                return discretised_gaussian_bits(yc[idx], *model.params(yp[idx]))

            self.stopped_at[f"{child}|{parent}"] = self._fit(model, bits_of, ("cond", child, parent))
            bits = self._mean_bits(bits_of, self.eval_idx)
        return min(bits, self.entropy(child))

    def settings(self) -> dict:
        out = asdict(self.s)
        out.update(
            scale_bound=SCALE_BOUND,
            likelihood_floor=LIKELIHOOD_FLOOR,
            fit_images=len(self.fit_idx),
            stop_images=len(self.stop_idx),
            eval_images=len(self.eval_idx),
        )
        return out
