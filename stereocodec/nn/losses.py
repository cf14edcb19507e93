"""The rate-distortion objective the networks are trained on, shared by training and by the
encoder's latent refinement so that both optimise the same thing."""

from __future__ import annotations

import torch


def rate_distortion(out: dict, x: torch.Tensor, lambdas: torch.Tensor | float,
                    size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """The release's loss per pair: lambda * (MSE_l + MSE_r) / 2 + (bpp_l + bpp_r) / 2.

    `out` is a network's output for the pairs `x` (B, 3, 2, H, W). `size` is the views' (height,
    width) inside a padded `x`: only those pixels count, as errors and as the pixels bits are
    spread over. Returns `loss` and `bpp` per pair (B,) and `mse` per pair and view (B, 2)."""
    h, w = size or x.shape[-2:]
    mse = ((out["x_hat"] - x)[..., :h, :w] ** 2).mean(dim=(1, 3, 4))
    bits = sum(-torch.log2(lik).flatten(1).sum(1) for lik in out["likelihoods"].values())
    bpp = bits / (x.shape[2] * h * w)
    return {"loss": lambdas * mse.mean(1) + bpp, "bpp": bpp, "mse": mse}
