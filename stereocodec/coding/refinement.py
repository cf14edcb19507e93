"""Encoder-side latent refinement: more encoding time for a better pair at the same rate.

The analysis transform is amortised: one pass guesses the latent y for any image. Refinement
starts from that guess and runs Adam on y itself against the loss the network was trained on at
the level's lambda (lambda * MSE + bpp, with training's relaxations: uniform noise for the rates,
straight-through rounding for the decoder); the networks' weights do not change. The relaxed loss
can drift from the real one (at low rates especially), so every `check_every` steps the real loss
is measured (rounded latents in eval mode, what the file will hold, to within the estimate's ~1 %)
and the best latent seen, the start included, is kept: by that measure never worse than the
plain encoder. The decoder and the file format are untouched: any decoder reads the result.
Deterministic: the noise comes from a generator seeded the same way for every call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..nn.losses import rate_distortion
from ..nn.models import BiSICBase


@dataclass(frozen=True)
class RefinedLatent:
    y: torch.Tensor  # the analysis-domain latent to code (before the level's gain)
    loss_before: float  # real rate-distortion loss of the plain encoder's latent
    loss_after: float  # the same for `y` (equal when no step improved on the start)
    steps: int  # refinement steps run


def level_lambda(lambdas: Sequence[float], quality: float) -> float:
    """The lambda of a quality level; between levels the log-domain blend, as the gains blend."""
    low = min(int(math.floor(quality)), len(lambdas) - 1)
    high = min(low + 1, len(lambdas) - 1)
    t = quality - low
    return math.exp((1 - t) * math.log(lambdas[low]) + t * math.log(lambdas[high]))


def latent_loss(model: BiSICBase, x: torch.Tensor, y: torch.Tensor, quality: float, lam: float,
                size: tuple[int, int] | None = None) -> torch.Tensor:
    """The training objective of coding latent y of pair x (relaxed in train mode; in eval mode on
    the rounded latent and the clamped reconstruction, as the decoder gives it)."""
    out = model.forward_latent(model.scale_y(y, quality), quality)
    if not model.training:
        out = out | {"x_hat": out["x_hat"].clamp(0, 1)}
    return rate_distortion(out, x, lam, size)["loss"].mean()


def refine_latent(model: BiSICBase, x: torch.Tensor, y: torch.Tensor, quality: float, lam: float, steps: int,
                  size: tuple[int, int] | None = None, lr: float = 0.05, check_every: int = 10,
                  seed: int = 0) -> RefinedLatent:
    """Refine the analysis latent `y` of pair `x` (1, 3, 2, H, W; views of `size` inside it) for
    coding at `quality` (see the module)."""
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    best = y.detach().clone()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model.eval()
            with torch.no_grad():
                start = best_loss = float(latent_loss(model, x, best, quality, lam, size))
            variable = best.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([variable], lr=lr)
            for step in range(1, steps + 1):
                model.train()
                with torch.enable_grad():
                    loss = latent_loss(model, x, variable, quality, lam, size)
                    (grad,) = torch.autograd.grad(loss, [variable])
                variable.grad = grad
                optimizer.step()
                if step % check_every == 0 or step == steps:
                    model.eval()
                    with torch.no_grad():
                        real = float(latent_loss(model, x, variable, quality, lam, size))
                    if real < best_loss:
                        best_loss, best = real, variable.detach().clone()
    finally:
        model.train(was_training)
    return RefinedLatent(best, start, best_loss, steps)
