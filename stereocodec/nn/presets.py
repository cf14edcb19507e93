"""The one home of the networks' named sizes and of the defaults that follow from them.

Plain data (no torch), so that the command line can offer them without loading the networks.
"""

from __future__ import annotations

VARIANTS = ("bisic", "bisic-fast")
DEFAULT_VARIANT = "bisic-fast"
ENV_WEIGHTS = "STEREOCODEC_WEIGHTS"  # a weights file to use instead of the shipped ones (as --weights)
DEFAULT_SLICES = {"bisic": 12, "bisic-fast": 6}

# Quality levels: level q is trained with lambda LAMBDAS[q] (the paper's six values), on
# loss = lambda * MSE + bpp with images in [0, 1].
LAMBDAS = (256, 512, 1024, 2048, 3072, 4096)
DEFAULT_QUALITY = 3

# Presets: keyword arguments of `BiSICConfig`. `official` is the release at N = M = 192 (one
# network per lambda there); ours add the six quality levels. `wide` carries the release's 192
# latent channels per view with `small`'s transforms and hidden widths, so that the trained
# `small` network grows into it without changing what it computes (`stereocodec.train.grow`;
# weights/README.md has the measurements behind it); `small` (48 latent channels, PSNR capped
# near 30 dB) is what shipped first; the `tiny` ones are for tests.
_SMALL_WIDTHS = dict(N=48, M=48, ep_hidden=(192, 128, 64), lrp_hidden=(192, 128, 64), cc_hidden=(128, 96, 64))
PRESETS: dict[str, dict] = {
    "official": {},
    "wide": dict(_SMALL_WIDTHS, latent=192),
    "small": _SMALL_WIDTHS,
    "tiny": dict(N=48, M=48, ep_hidden=(16, 16, 16), lrp_hidden=(16, 16, 16), cc_hidden=(16, 16, 16)),
    "tiny-wide": dict(N=16, M=16, latent=48, context=16, ep_hidden=(16, 16, 16), lrp_hidden=(16, 16, 16),
                      cc_hidden=(16, 16, 16)),
}
DEFAULT_PRESET = "wide"

# Training: what `--freeze shared` keeps fixed are the transforms, hyperprior and gains that
# BiSIC and BiSIC-Fast share, so that BiSIC trains only its own entropy model on BiSIC-Fast's.
SHARED_PREFIXES = ("Conv3DEncoder_", "En_Transfer_", "De_Transfer_", "Conv3DDecoder_", "hyperprior.", "gain", "inv_gain")
FREEZE_CHOICES = ("none", "shared")
