"""Sweep the continuous quality scale on stereo pairs: bytes, bpp and PSNR per quality value.

    python benchmarks/sweep_quality.py ../shared/data/stereo [--steps 31] [--crop 256] [--variant bisic-fast]

Prints one line per pair and quality, then whether bpp rose strictly and PSNR never fell.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stereocodec.codec import Codec
from stereocodec.io.images import View, read_view
from stereocodec.eval.metrics import psnr
from stereocodec.io.pairs import find_pairs
from stereocodec.store import load_default


def center_crop(view: View, side: int | None) -> View:
    """The central side x side square of a view (the whole view for None)."""
    if side is None:
        return view
    h, w = view.pixels.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return View(np.ascontiguousarray(view.pixels[top:top + side, left:left + side]), view.mode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", type=Path)
    ap.add_argument("--steps", type=int, default=31)
    ap.add_argument("--crop", type=int, default=None, help="center crop side (default: full size)")
    ap.add_argument("--variant", default="bisic-fast")
    args = ap.parse_args()
    codec = Codec(load_default(args.variant, "cpu"))
    top = codec.quality_levels() - 1
    for pair in find_pairs(args.pairs):
        left, right = (center_crop(read_view(p), args.crop) for p in (pair.left, pair.right))
        h, w = left.pixels.shape[:2]
        rows = []
        start = time.perf_counter()
        for q in np.linspace(0, top, args.steps):
            enc = codec.encode(left, right, float(q))
            rows.append((float(q), len(enc.data), 8 * len(enc.data) / (2 * h * w), (psnr(left.pixels, enc.left) + psnr(right.pixels, enc.right)) / 2))
            print(f"{pair.name} {w}x{h} q{q:.3f}: {rows[-1][1]} bytes, {rows[-1][2]:.4f} bpp, {rows[-1][3]:.3f} dB", flush=True)
        bpp_up = all(b[2] > a[2] for a, b in zip(rows, rows[1:]))
        drops = [(a[0], round(a[3] - b[3], 3)) for a, b in zip(rows, rows[1:]) if b[3] < a[3]]
        print(f"{pair.name}: bpp strictly increasing: {bpp_up}; PSNR drops (q, dB): {drops or 'none'}; "
              f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
