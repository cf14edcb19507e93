"""What the latent coding may ask of a network: the contract between `nn` and `coding`.

The spatial orders in `latent_codecs` call only what these protocols name, so a network
works with an order exactly when it has these members (checked when a codec is built).
Every tensor is per view, (2, C, h, w): left and right stacked on the batch axis. The float
network and its exact twin (`nn.integer.integer_entropy_model`, Q.12 integers in float64) both
meet these protocols, so one walk drives either.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..nn.models import BiSICConfig

Params = tuple[torch.Tensor, torch.Tensor]  # (means, scales) of a Gaussian per latent value


@runtime_checkable
class SliceNetwork(Protocol):
    """The per-slice probability model of channel slice k, shared by every spatial order."""

    config: BiSICConfig  # `c`: channels per slice

    def slice_context(self, k: int, y_ctx: torch.Tensor) -> torch.Tensor:
        """Spatial context (2, 2c, h, w) from the decoded values of slice k (1, c, 2, h, w)."""
        ...

    def slice_params(self, k: int, hm: torch.Tensor, hs: torch.Tensor, ctx: torch.Tensor, ch: torch.Tensor | None) -> Params:
        """(means, scales) of slice k from the hyperprior (hm, hs), spatial and channel context."""
        ...


@runtime_checkable
class WavefrontNetwork(SliceNetwork, Protocol):
    """BiSIC: the spatial context is a masked 5x5 3-D conv, which the wavefront evaluates patch by patch."""

    context_prediction_list: nn.ModuleList  # [k]: slice k's masked conv, evaluated at positions by `forward_patches`


@runtime_checkable
class CheckerboardNetwork(SliceNetwork, Protocol):
    """BiSIC-Fast: anchors need no spatial context; non-anchors take it from the decoded anchors."""

    def anchor_params_at(self, k: int, anchors: torch.Tensor, hm: torch.Tensor, hs: torch.Tensor, ch: torch.Tensor | None) -> Params:
        """(means, scales) at the anchors (bool (h, w)), each (2, c, P), P = anchors.sum()."""
        ...

    def nonanchor_params_at(
        self, k: int, rest: torch.Tensor, hm: torch.Tensor, hs: torch.Tensor, y_anchors: torch.Tensor, ch: torch.Tensor | None
    ) -> Params:
        """(means, scales) at the non-anchors, from the slice's decoded anchors (2, c, h, w; zeros elsewhere)."""
        ...
