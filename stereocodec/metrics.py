"""Image quality metrics on 8-bit RGB arrays, the way codec papers report them."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of the same shape (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two uint8 HWC images (data range 255).

    Images smaller than the 5-scale pyramid needs (161 px per side) are edge-padded
    so that small crops still get a number rather than an exception.
    """
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].double()
    y = torch.from_numpy(np.array(b)).permute(2, 0, 1)[None].double()
    min_side = 161
    ph, pw = max(0, min_side - x.shape[-2]), max(0, min_side - x.shape[-1])
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        y = torch.nn.functional.pad(y, (0, pw, 0, ph), mode="replicate")
    return float(_ms_ssim(x, y, data_range=255.0, size_average=True))
