"""The one home of the networks' named sizes and of the defaults that follow from them.

Plain data (no torch), so that the command line can offer them without loading the networks.
"""

from __future__ import annotations

from collections.abc import Iterable

VARIANTS = ("bisic", "bisic-fast")
DEFAULT_VARIANT = "bisic-fast"
ENV_WEIGHTS = "STEREOCODEC_WEIGHTS"  # a weights file to use instead of the shipped ones (as --weights)
ENCODINGS = ("float16", "int8", "float32", "int8-delta")  # how a weights file stores its tensors (weights.encode_tensors)
DEFAULT_SLICES = {"bisic": 12, "bisic-fast": 6}

# Quality levels: level q is trained with lambda LAMBDAS[q], on loss = lambda * MSE + bpp with
# images in [0, 1]. Geometric, ratio 2.5 down from the paper's top value: equal steps between
# levels, and a range wide enough for the levels to span more than 4 dB (the paper's six values,
# 256-4096, gave 2.1 dB, three of them within 0.25 dB: weights/README.md).
LAMBDAS = (42, 105, 262, 655, 1638, 4096)
# The lambdas of training checkpoints that record none (every run before LAMBDAS was chosen).
PAPER_LAMBDAS = (256, 512, 1024, 2048, 3072, 4096)


def checked_lambdas(values: Iterable[float | str]) -> tuple[float, ...]:
    """Quality levels' lambdas as floats; ValueError unless they are positive and increasing."""
    lambdas = tuple(float(v) for v in values)
    if not lambdas or min(lambdas) <= 0 or any(b <= a for a, b in zip(lambdas, lambdas[1:])):
        raise ValueError(f"lambdas must be positive and increasing, not {', '.join(f'{v:g}' for v in lambdas)}")
    return lambdas


DEFAULT_QUALITY = 3

# Presets: keyword arguments of `BiSICConfig`. `official` is the release at N = M = 192 (one
# network per lambda there); ours add the six quality levels. `wide` carries the release's 192
# latent channels per view with `small`'s transforms and hidden widths, so that the trained
# `small` network grows into it without changing what it computes (`stereocodec.train.grow`;
# weights/README.md has the measurements behind it); `wide-mid` also widens the two 1/8-resolution
# layers next to y from 48 to 192 channels, and a `wide` run grows into it the same way (a
# candidate measured against `wide` at equal wall clock and not chosen: 14 % slower steps for at
# most 0.08 % lower validation loss step for step); `small`
# (48 latent channels, PSNR capped near 30 dB) is what shipped first; the `tiny` ones are for tests.
_SMALL_WIDTHS = dict(N=48, M=48, ep_hidden=(192, 128, 64), lrp_hidden=(192, 128, 64), cc_hidden=(128, 96, 64))
PRESETS: dict[str, dict] = {
    "official": {},
    "wide": dict(_SMALL_WIDTHS, latent=192),
    "wide-mid": dict(_SMALL_WIDTHS, latent=192, mid=192),
    "small": _SMALL_WIDTHS,
    "tiny": dict(N=48, M=48, ep_hidden=(16, 16, 16), lrp_hidden=(16, 16, 16), cc_hidden=(16, 16, 16)),
    "tiny-wide": dict(N=16, M=16, latent=48, context=16, ep_hidden=(16, 16, 16), lrp_hidden=(16, 16, 16),
                      cc_hidden=(16, 16, 16)),
    "tiny-wide-mid": dict(N=16, M=16, latent=48, context=16, mid=32, ep_hidden=(16, 16, 16),
                          lrp_hidden=(16, 16, 16), cc_hidden=(16, 16, 16)),
}
DEFAULT_PRESET = "wide"

# Training: what `--freeze shared` keeps fixed are the transforms, hyperprior and gains that
# BiSIC and BiSIC-Fast share, so that BiSIC trains only its own entropy model on BiSIC-Fast's.
SHARED_PREFIXES = ("Conv3DEncoder_", "En_Transfer_", "De_Transfer_", "Conv3DDecoder_", "hyperprior.", "gain", "inv_gain")
FREEZE_CHOICES = ("none", "shared")
