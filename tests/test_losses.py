"""The shared rate-distortion objective: what counts and how it is spread."""

import torch

from stereocodec.nn.losses import rate_distortion


def _output(x_hat: torch.Tensor, bits: float) -> dict:
    """A network output whose likelihoods carry `bits` bits in all for each pair."""
    lik = torch.full((x_hat.shape[0], 4, 2, 2, 2), 2.0 ** (-bits / 32))
    return {"x_hat": x_hat, "likelihoods": {"y": lik}}


def test_loss_is_lambda_mse_plus_bpp_per_pair():
    x = torch.rand(2, 3, 2, 8, 16)
    x_hat = x.clone()
    x_hat[0, :, 1] += 0.1  # the right view of pair 0 is off by 0.1 everywhere
    stats = rate_distortion(_output(x_hat, bits=64.0), x, torch.tensor([100.0, 10.0]))
    assert torch.allclose(stats["mse"], torch.tensor([[0.0, 0.01], [0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(stats["bpp"], torch.full((2,), 64.0 / (2 * 8 * 16)))
    assert torch.allclose(stats["loss"], torch.tensor([100 * 0.005, 0.0]) + stats["bpp"], atol=1e-6)


def test_padding_neither_counts_as_error_nor_dilutes_the_rate():
    x = torch.rand(1, 3, 2, 16, 16)
    x_hat = x.clone()
    x_hat[..., 12:, :] = 0.0  # garbage below the views' 12 rows
    x_hat[..., :, 10:] = 1.0  # and right of their 10 columns
    stats = rate_distortion(_output(x_hat, bits=24.0), x, 1000.0, size=(12, 10))
    assert float(stats["mse"].max()) == 0.0
    assert torch.allclose(stats["bpp"], torch.tensor([24.0 / (2 * 12 * 10)]))
    assert float(rate_distortion(_output(x_hat, bits=24.0), x, 1000.0)["mse"].min()) > 0
