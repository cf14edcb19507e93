"""Render the example stereo pair in this folder (a synthetic rectified scene, our own pixels).

Layers at several depths are painted back to front into both views; each is shifted by its
disparity in the right view, so nearer objects occlude more of the background there, as in a
real rectified pair. Run `python examples/make_pair.py` to regenerate left.png and right.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 384, 512


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: random values on a coarse grid, bicubically enlarged."""
    coarse = Image.fromarray((rng.random((h // cell + 2, w // cell + 2)) * 255).astype(np.uint8))
    return np.asarray(coarse.resize((w + 2 * cell, h + 2 * cell), Image.BICUBIC), np.float32)[:h, :w] / 255


def texture(rng: np.random.Generator, h: int, w: int, base: tuple[float, float, float]) -> np.ndarray:
    shade = 0.6 * smooth_noise(rng, h, w, 48) + 0.3 * smooth_noise(rng, h, w, 8) + 0.1 * smooth_noise(rng, h, w, 2)
    return np.clip(np.asarray(base, np.float32)[None, None] * (0.55 + 0.9 * shade[..., None]), 0, 255)


def render(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH + 96].astype(np.float32)
    sky = texture(rng, HEIGHT, WIDTH + 96, (120, 160, 210))
    ground = texture(rng, HEIGHT, WIDTH + 96, (110, 140, 70))
    # (mask on a canvas wider than the view, colour, disparity in pixels), far to near
    layers = [
        (yy >= 0, sky, 2),
        (yy > 230 + 0.05 * (xx - 250), ground, 6),
        ((xx - 170) ** 2 / 70**2 + (yy - 200) ** 2 / 110**2 < 1, texture(rng, HEIGHT, WIDTH + 96, (200, 90, 60)), 14),
        ((abs(xx - 380) < 55) & (abs(yy - 250) < 80), texture(rng, HEIGHT, WIDTH + 96, (220, 200, 120)), 22),
        ((xx - 300) ** 2 + (yy - 330) ** 2 < 45**2, texture(rng, HEIGHT, WIDTH + 96, (90, 80, 170)), 34),
    ]
    left = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    right = np.zeros_like(left)
    for mask, colour, disparity in layers:
        for view, shift in ((left, 0), (right, disparity)):
            m = mask[:, shift:shift + WIDTH]
            view[m] = colour[:, shift:shift + WIDTH][m]
    right = right * 0.97 + 3  # the two cameras' exposures differ slightly
    return (np.clip(np.round(v), 0, 255).astype(np.uint8) for v in (left, right))


def main() -> None:
    here = Path(__file__).parent
    left, right = render()
    Image.fromarray(left).save(here / "left.png", optimize=True)
    Image.fromarray(right).save(here / "right.png", optimize=True)


if __name__ == "__main__":
    main()
