"""Test-only builders of stereo photo files (the package reads these formats; it never writes them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def join_sbs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """One parallel side-by-side image (left | right) from two views of the same shape."""
    assert left.shape == right.shape, (left.shape, right.shape)
    return np.concatenate([left, right], axis=1)


def write_mpo(path: Path, left: Image.Image, right: Image.Image, quality: int = 95) -> None:
    """A two-frame MPO as a 3D camera writes it (JPEG frames, 4:4:4)."""
    left.convert("RGB").save(path, "MPO", save_all=True, append_images=[right.convert("RGB")], quality=quality, subsampling=0)
