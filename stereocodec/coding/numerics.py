"""How latent values, means and scales are represented between the network and the coder.

Two arithmetics, one per family of file formats:
- `FLOAT` (formats v1 and v2): the float network's means and scales as computed. Files decode
  only where the decoder reproduces the encoder's floating-point results.
- `FIXED_POINT` (format v3): the exact entropy path (`nn.integer`): means, scales and decoded
  latents are integers in units of 2^-12, the scale-to-table mapping compares integers with
  integer thresholds, and the coder's 64 standard deviations are defined by exact decimal
  arithmetic. Encoder and decoder compute the same integers on every machine.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, localcontext
from functools import cache

import numpy as np
import torch

from ..nn.integer import ACT_MAX, ONE, integer_medians
from ..nn.models import BiSICBase
from .range_coding import SCALE_LEVELS, SCALE_MAX, SCALE_MIN, SCALE_TABLE, scale_indices


class FloatArithmetic:
    """Formats v1 and v2: values are float32, symbols round(y - mu), scales snapped in the log domain."""

    scale_table = SCALE_TABLE

    def medians(self, model: BiSICBase) -> torch.Tensor:
        return model.hyperprior.entropy_bottleneck.medians().detach()

    def symbols(self, target: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.round(target - offsets)

    def values(self, symbols: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return symbols + offsets

    def indices(self, scales: torch.Tensor) -> np.ndarray:
        return scale_indices(scales)

    def real(self, values: torch.Tensor) -> torch.Tensor:
        return values


@cache
def exact_scale_table() -> tuple[np.ndarray, torch.Tensor]:
    """(the 64 coder standard deviations, the 63 Q.12 thresholds between them).

    std_i = exp(ln 0.11 + i (ln 256 - ln 0.11) / 63) and threshold_i = ceil(sqrt(std_i std_(i+1)) 2^12),
    in 50-digit decimal arithmetic (exactly specified, so the same on every machine), each std then
    rounded once to float64. A Q.12 scale s takes the index of the number of thresholds <= s: the
    nearest std in the log domain, as formats v1 and v2 choose it.
    """
    with localcontext() as ctx:
        ctx.prec = 50
        lo, hi = Decimal(repr(SCALE_MIN)).ln(), Decimal(repr(SCALE_MAX)).ln()
        stds = [(lo + (hi - lo) * i / (SCALE_LEVELS - 1)).exp() for i in range(SCALE_LEVELS)]
        thresholds = [int(((a * b).sqrt() * ONE).to_integral_value(ROUND_CEILING)) for a, b in zip(stds, stds[1:])]
    return np.array([float(s) for s in stds]), torch.tensor(thresholds, dtype=torch.float64)


class FixedPointArithmetic:
    """Format v3: means, scales and values are Q.12 integers (float64 tensors) from `nn.integer`."""

    @property
    def scale_table(self) -> np.ndarray:
        return exact_scale_table()[0]

    def medians(self, model: BiSICBase) -> torch.Tensor:
        return integer_medians(model)

    def symbols(self, target: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return torch.round(target.double() - offsets / ONE)

    def values(self, symbols: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return (symbols.double() * ONE + offsets).clamp(-ACT_MAX, ACT_MAX)

    def indices(self, scales: torch.Tensor) -> np.ndarray:
        thresholds = exact_scale_table()[1].to(scales.device)
        return torch.bucketize(scales.contiguous(), thresholds, right=True).cpu().numpy().reshape(-1)

    def real(self, values: torch.Tensor) -> torch.Tensor:
        return (values / ONE).float()


FLOAT = FloatArithmetic()
FIXED_POINT = FixedPointArithmetic()
