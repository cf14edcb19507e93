"""The fast coding paths produce exactly the bytes of the straightforward implementation."""

from __future__ import annotations

import pytest
import torch

from conftest import need_shared
from stereocodec.coding.contract import CheckerboardNetwork, WavefrontNetwork
from stereocodec.coding.latent_codecs import StereoLatentCodec, wavefront_positions
from stereocodec.nn.models import build_model, from_views
from stereocodec.train.loop import preset_config
from stereocodec.weights import load_weights


def straightforward_raster(model, io, k, y, hm, hs, ch):
    """The obvious BiSIC decoder: at every step, run the masked conv and the parameter
    networks over the whole latent, then code that step's positions."""
    h, w = hm.shape[-2:]
    out = torch.zeros(2, model.config.c, h, w, dtype=hm.dtype)
    for rows, cols in wavefront_positions(h, w):
        ctx = model.slice_context(k, from_views(out))
        means, scales = model.slice_params(k, hm, hs, ctx, ch)
        target = None if y is None else y[:, :, rows, cols]
        out[:, :, rows, cols] = io.gaussian(target, means[:, :, rows, cols], scales[:, :, rows, cols])
    return out


def test_wavefront_matches_straightforward_bytes() -> None:
    model = load_weights(need_shared("reference", "official_bisic_n48.pth.tar")).model
    torch.manual_seed(3)
    x = torch.rand(1, 3, 2, 64, 128)
    fast = StereoLatentCodec(model)
    slow = StereoLatentCodec(model)
    slow.spatial = straightforward_raster
    a, b = fast.compress(x, None), slow.compress(x, None)
    assert len(a.streams["y"]) > 500
    assert a.streams == b.streams and a.checksum == b.checksum
    # each implementation decodes the other's file: the exact path gives the same integers both ways
    x_slow = slow.decompress(a.streams, (64, 128), None, a.checksum)
    assert torch.equal(x_slow, a.x_hat)


def test_wavefront_order_respects_the_mask() -> None:
    """Every position comes after all positions its 5x5 'A' mask reads, and each exactly once."""
    h, w = 7, 9
    when = {}
    for t, (rows, cols) in enumerate(wavefront_positions(h, w)):
        for r, c in zip(rows.tolist(), cols.tolist()):
            assert (r, c) not in when
            when[(r, c)] = t
    assert len(when) == h * w
    for (r, c), t in when.items():
        for dr in range(-2, 1):
            for dc in range(-2, 3):
                if dr == 0 and dc >= 0:
                    continue
                if (r + dr, c + dc) in when:
                    assert when[(r + dr, c + dc)] < t


def test_networks_meet_the_contract_of_their_spatial_order_and_code_one_pair_at_a_time() -> None:
    """The protocols in coding.contract name what each order uses; the codec refuses a batch."""
    wavefront, checkerboard = (build_model(v, preset_config("tiny", v)) for v in ("bisic", "bisic-fast"))
    assert isinstance(wavefront, WavefrontNetwork) and not isinstance(wavefront, CheckerboardNetwork)
    assert isinstance(checkerboard, CheckerboardNetwork) and not isinstance(checkerboard, WavefrontNetwork)
    codec = StereoLatentCodec(checkerboard)
    with pytest.raises(ValueError, match="one pair at a time"):
        codec.compress(torch.zeros(2, 3, 2, 64, 64), 0)
    checkerboard.variant = "bisic"  # a network without the masked context cannot take the wavefront
    with pytest.raises(TypeError, match="raster_wavefront.*WavefrontNetwork"):
        StereoLatentCodec(checkerboard)
