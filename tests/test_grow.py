"""Growth of a trained narrow network into a wide preset: same output first, then the new channels learn."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stereocodec.nn.models import build_model
from stereocodec.store import ARCHIVE_FOLDER, ARCHIVE_PACKAGE, STORE
from stereocodec.train.grow import GrowthError, grow
from stereocodec.train.loop import preset_config, rd_loss, warm_start
from stereocodec.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"bisic-fast": "bisic-fast-step25451.safetensors", "bisic": "bisic-step20920.safetensors"}


def stored(file: str) -> Path:
    """A stored weights file of this checkout, in the package's store or in the weights archive."""
    folders = ROOT / "stereocodec" / STORE, ROOT / ARCHIVE_FOLDER / ARCHIVE_PACKAGE
    return next(folder / file for folder in folders if (folder / file).is_file())


def _grown(variant: str):
    torch.manual_seed(0)
    small = load_weights(stored(SHIPPED[variant])).model.float().eval()
    wide = build_model(variant, preset_config("wide", variant)).eval()
    grow(small, wide)
    return small, wide


@pytest.mark.parametrize("variant", ["bisic-fast", "bisic"])
def test_a_grown_network_computes_what_the_narrow_one_did(variant: str) -> None:
    small, wide = _grown(variant)
    stride = wide.config.y_channels // small.config.y_channels
    assert stride == 4
    x = torch.rand(1, 3, 2, 64, 64, generator=torch.Generator().manual_seed(1))
    for quality in (0, 2.5, 5):
        with torch.no_grad():
            before, after = small(x, quality), wide(x, quality)
        torch.testing.assert_close(after["x_hat"], before["x_hat"], atol=1e-5, rtol=0)
        torch.testing.assert_close(after["likelihoods"]["y"][:, ::stride], before["likelihoods"]["y"], atol=1e-5, rtol=0)
        assert after["likelihoods"]["y"].shape[1] == 192
        # the new channels cost something, but less than the old ones carry
        new_bits = -torch.log2(after["likelihoods"]["y"]).sum() + torch.log2(before["likelihoods"]["y"]).sum()
        assert 0 < new_bits < -torch.log2(before["likelihoods"]["y"]).sum()


def test_the_new_channels_get_gradients_where_they_start_at_zero() -> None:
    _, wide = _grown("bisic-fast")
    wide.train()
    x = torch.rand(2, 3, 2, 64, 64, generator=torch.Generator().manual_seed(2))
    q = torch.tensor([5, 5])
    loss = rd_loss(wide(x, q), x, torch.tensor([4096.0, 4096.0]))["loss"].mean()
    loss.backward()
    fresh = torch.ones(192, dtype=torch.bool)
    fresh[::4] = False
    decoder_in = wide.Conv3DDecoder_A[0].weight
    assert torch.all(decoder_in[fresh] == 0)  # they change nothing yet...
    assert decoder_in.grad[fresh].abs().sum() > 0  # ...and they learn
    last = wide.entropy_params_anchor_zero_means[-1].weight
    assert last.grad[fresh[:32]].abs().sum() > 0


def test_networks_that_do_not_embed_are_refused() -> None:
    small = build_model("bisic-fast", preset_config("small", "bisic-fast"))
    with pytest.raises(GrowthError, match="does not grow"):
        grow(small, build_model("bisic-fast", preset_config("tiny", "bisic-fast")))  # narrower hidden layers
    with pytest.raises(GrowthError, match="does not grow"):
        grow(small, build_model("bisic", preset_config("wide", "bisic")))  # another variant


def test_warm_start_from_shipped_small_weights_grows_them() -> None:
    model = build_model("bisic-fast", preset_config("wide", "bisic-fast"))
    message, steps = warm_start(model, stored(SHIPPED["bisic-fast"]))
    assert "grown from 48 to 192 latent channels" in message and steps == 25451


def test_wide_weights_grow_into_wide_mid_and_the_new_channels_learn() -> None:
    """`wide-mid` widens the 1/8-resolution layers next to y: same output first, then the new
    channels' outgoing weights (zero) get gradients."""
    wide = load_weights(stored("bisic-fast-step63151.safetensors")).model.float().eval()
    torch.manual_seed(0)
    mid = build_model("bisic-fast", preset_config("wide-mid", "bisic-fast")).eval()
    grow(wide, mid)
    x = torch.rand(1, 3, 2, 64, 64, generator=torch.Generator().manual_seed(3))
    for quality in (0, 5):
        with torch.no_grad():
            before, after = wide(x, quality), mid(x, quality)
        torch.testing.assert_close(after["x_hat"], before["x_hat"], atol=1e-5, rtol=0)
        torch.testing.assert_close(after["likelihoods"]["y"], before["likelihoods"]["y"], atol=1e-6, rtol=0)
    mid.train()
    q = torch.tensor([5])
    rd_loss(mid(x, q), x, torch.tensor([4096.0]))["loss"].mean().backward()
    old = wide.config.mid_channels
    into_y, out_of_mid = mid.Conv3DEncoder_B[2].weight, mid.Conv3DDecoder_A[2].weight  # (Y, mid), (mid, N): transposed
    assert mid.config.mid_channels == 192 > old
    assert torch.all(into_y[:, old:] == 0) and into_y.grad[:, old:].abs().sum() > 0
    assert torch.all(out_of_mid[old:] == 0) and out_of_mid.grad[old:].abs().sum() > 0
    assert mid.Conv3DDecoder_A[0].weight[:, old:].abs().sum() > 0  # fresh incoming weights
