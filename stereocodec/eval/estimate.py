"""The release's evaluation: forward-pass entropy estimate plus reconstruction quality."""

from __future__ import annotations

import numpy as np
import torch

from ..io.images import pair_tensor, to_uint8
from ..metrics import ms_ssim, psnr
from ..nn.models import BiSICBase


@torch.no_grad()
def estimate_pair(model: BiSICBase, left: np.ndarray, right: np.ndarray, quality: float | None = None) -> dict:
    """Estimated bpp (-log2 of the likelihoods, no bitstream) and PSNR / MS-SSIM per view.

    Pixels are counted at the original size; the pair is edge-padded to a multiple of 64
    and the reconstruction cropped back, clamped and rounded to 8 bits.
    """
    h, w = left.shape[:2]
    device = next(model.parameters()).device
    x = pair_tensor(left, right).to(device)
    out = model.eval()(x, quality)
    report: dict = {"height": h, "width": w, "variant": model.variant}
    rec = to_uint8(out["x_hat"], h, w)
    for v, (name, orig) in enumerate((("left", left), ("right", right))):
        bits = sum(-torch.log2(lik[:, :, v].double()).sum() for lik in out["likelihoods"].values())
        report[f"bpp_{name}"] = float(bits) / (h * w)
        report[f"psnr_{name}"] = psnr(orig, rec[v])
        report[f"ms_ssim_{name}"] = ms_ssim(orig, rec[v])
    for key in ("bpp", "psnr", "ms_ssim"):
        report[key] = (report[f"{key}_left"] + report[f"{key}_right"]) / 2
    return report
