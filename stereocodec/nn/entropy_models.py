"""Probability models of the latents, as differentiable torch modules.

`FactorizedPrior` is compressai's EntropyBottleneck and `GaussianConditional` its
Gaussian conditional, re-implemented with the release's tensor names. The compressai
coder buffers (`_quantized_cdf`, `_offset`, `_cdf_length`, `scale_table`) are kept only
so that state dicts match the release; real coding lives in `stereocodec.coding`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOOD_BOUND = 1e-9
SCALE_BOUND = 0.11

# Buffers that are not learned: compressai's range-coder tables, and the constant bounds, which
# the modules set themselves (1e-9 does not survive float16). Weight files neither need nor set them.
CONSTANT_BOUNDS = ("bound", "scale_bound")
DERIVED_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table", *CONSTANT_BOUNDS)


class _LowerBoundFunction(torch.autograd.Function):
    """max(x, bound) whose gradient also flows below the bound when it pushes x upwards.

    A plain max passes no gradient below the bound, so a predicted scale stuck under 0.11 would
    never learn to rise; compressai's lower bound lets such gradients through, and so does this.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, bound = ctx.saved_tensors
        passes = (x >= bound) | (grad < 0)
        return passes.to(grad.dtype) * grad, None


class LowerBound(nn.Module):
    """Holds a `bound` buffer, as compressai's LowerBound does, and applies max(x, bound)."""

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LowerBoundFunction.apply(x, self.bound.to(x.dtype))


def full_precision(x: torch.Tensor) -> torch.autocast:
    """Likelihoods stay in float32 under mixed-precision training: bfloat16 keeps 8 bits of
    mantissa, too few for quantisation noise on y and for CDF differences near 1e-9."""
    return torch.autocast(x.device.type, enabled=False)


def _register_coder_buffers(module: nn.Module) -> None:
    for name in ("_quantized_cdf", "_offset", "_cdf_length"):
        module.register_buffer(name, torch.zeros(0, dtype=torch.int32))


def quantize(x: torch.Tensor, mode: str, means: torch.Tensor | None = None) -> torch.Tensor:
    """compressai's quantizer: 'noise' (training), 'dequantize' (round around means), 'ste'."""
    if mode == "noise":
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    offset = means if means is not None else 0
    if mode == "dequantize":
        return torch.round(x - offset) + offset
    if mode == "ste":
        return (torch.round(x - offset) - (x - offset)).detach() + x
    raise ValueError(f"unknown quantization mode {mode!r}")


class FactorizedPrior(nn.Module):
    """Per-channel learned density of the hyper-latent z (Ballé et al. 2018)."""

    filters = (3, 3, 3, 3)
    init_scale = 10.0
    tail_mass = 1e-9

    def __init__(self, channels: int) -> None:
        super().__init__()
        _register_coder_buffers(self)
        self.likelihood_lower_bound = LowerBound(LIKELIHOOD_BOUND)
        widths = (1, *self.filters, 1)
        scale = self.init_scale ** (1 / (len(self.filters) + 1))
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.register_parameter(f"_matrix{i}", nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.register_parameter(f"_bias{i}", nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(self.filters):
                self.register_parameter(f"_factor{i}", nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))
        s = self.init_scale
        self.quantiles = nn.Parameter(torch.tensor([-s, 0.0, s]).repeat(channels, 1, 1))
        t = math.log(2 / self.tail_mass - 1)
        self.register_buffer("target", torch.tensor([-t, 0.0, t]))

    @property
    def channels(self) -> int:
        return self.quantiles.shape[0]

    def medians(self) -> torch.Tensor:
        """(C,) medians the hyper-latent is quantised around."""
        return self.quantiles[:, 0, 1]

    def logits_cumulative(self, x: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        """Cumulative logits f(x) for x of shape (C, 1, n)."""
        for i in range(len(self.filters) + 1):
            matrix, bias = getattr(self, f"_matrix{i}"), getattr(self, f"_bias{i}")
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.filters):
                factor = getattr(self, f"_factor{i}")
                if stop_gradient:
                    factor = factor.detach()
                x = x + torch.tanh(factor) * torch.tanh(x)
        return x

    def likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit interval around each value; values shaped (C, 1, n)."""
        lower = self.logits_cumulative(values - 0.5)
        upper = self.logits_cumulative(values + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat, likelihoods) for x of shape (B, C, H, W), as compressai computes them."""
        b, c, h, w = x.shape
        values = x.float().permute(1, 0, 2, 3).reshape(c, 1, -1)
        medians = self.quantiles[:, :, 1:2]
        outputs = quantize(values, "noise" if self.training else "dequantize", medians)
        with full_precision(x):
            lik = self.likelihood_lower_bound(self.likelihood(outputs))
        unflatten = lambda t: t.reshape(c, b, h, w).permute(1, 0, 2, 3)  # noqa: E731
        return unflatten(outputs), unflatten(lik)

    def aux_loss(self) -> torch.Tensor:
        """Quantile loss that places `quantiles` at the tails and the median of each density."""
        logits = self.logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    @torch.no_grad()
    def pmf_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-channel probability tables over integer offsets from the median.

        Returns (pmfs (C, L) float64, minima (C,) int, lengths (C,) int): channel c's
        symbol s (an integer, z = median + s) has probability pmfs[c, s + minima[c]] for
        -minima[c] <= s < lengths[c] - minima[c]. Computed in float64 on the CPU so the
        tables are the same wherever the model is loaded.
        """
        model = copy.deepcopy(self).to("cpu", torch.float64)
        q = model.quantiles[:, 0, :]
        medians = q[:, 1]
        minima = torch.ceil(medians - q[:, 0]).clamp(min=0).long()
        maxima = torch.ceil(q[:, 2] - medians).clamp(min=0).long()
        lengths = minima + maxima + 1
        width = int(lengths.max())
        offsets = torch.arange(width, dtype=torch.float64)[None, :] - minima[:, None]
        pmf = model.likelihood((medians[:, None] + offsets)[:, None, :])[:, 0, :]
        pmf = torch.where(torch.arange(width)[None, :] < lengths[:, None], pmf, torch.zeros_like(pmf))
        return pmf.numpy(), minima.numpy(), lengths.numpy()


class GaussianConditional(nn.Module):
    """Gaussian likelihood of y given predicted means and scales (scale floored at 0.11)."""

    def __init__(self) -> None:
        super().__init__()
        _register_coder_buffers(self)
        self.register_buffer("scale_table", torch.zeros(0))
        self.register_buffer("scale_bound", torch.tensor([SCALE_BOUND]))
        self.lower_bound_scale = LowerBound(SCALE_BOUND)
        self.likelihood_lower_bound = LowerBound(LIKELIHOOD_BOUND)

    def likelihood(self, values: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        scales = self.lower_bound_scale(scales)
        v = torch.abs(values - means)
        upper = 0.5 * torch.erfc(-((0.5 - v) / scales) / math.sqrt(2))
        lower = 0.5 * torch.erfc(-((-0.5 - v) / scales) / math.sqrt(2))
        return self.likelihood_lower_bound(upper - lower)

    def forward(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Likelihood of y (noisy in training, rounded around the means in eval)."""
        with full_precision(y):
            y, scales, means = y.float(), scales.float(), means.float()
            values = quantize(y, "noise" if self.training else "dequantize", means)
            return self.likelihood(values, scales, means)
