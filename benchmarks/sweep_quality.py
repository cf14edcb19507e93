"""Sweep the continuous quality scale on stereo pairs: bytes, bpp and PSNR per quality value.

    python benchmarks/sweep_quality.py ../shared/data/stereo [--steps 31] [--crop 256] [--only aloe] [--variant bisic-fast]

On a machine busy with other work run it with OMP_NUM_THREADS=1: two threads that wait for
each other made a full-size sweep several times slower there (a training run beside it).

Full size by default. Prints one line per pair and quality, then per pair whether bpp rose
strictly and PSNR never fell, and the largest PSNR dip between neighbouring quality values:
the continuous scale promises the first, and the second only up to the quantisation noise.
Each PSNR is measured on the reconstruction the encoder returns, which is bit-identical to
what the decoder produces from the file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stereocodec.codec import Codec
from stereocodec.eval.report import center_crop
from stereocodec.io.images import View, read_view
from stereocodec.io.pairs import find_pairs
from stereocodec.rate_control import pair_psnr
from stereocodec.store import load_default


def sweep_pair(codec: Codec, name: str, left: View, right: View, steps: int) -> None:
    """Code one pair at `steps` evenly spaced qualities and print every point and the verdict."""
    h, w = left.pixels.shape[:2]
    rows: list[tuple[float, int, float, float]] = []  # quality, bytes, bpp, PSNR dB
    start = time.perf_counter()
    for q in np.linspace(0, codec.quality_levels() - 1, steps):
        enc = codec.encode(left, right, float(q))
        rows.append((float(q), len(enc.data), 8 * len(enc.data) / (2 * h * w), pair_psnr(left, right, enc)))
        print(f"{name} {w}x{h} q{q:.3f}: {rows[-1][1]} bytes, {rows[-1][2]:.4f} bpp, {rows[-1][3]:.3f} dB", flush=True)
    bpp_up = all(b[2] > a[2] for a, b in zip(rows, rows[1:]))
    dips = [(a[0], b[0], a[3] - b[3]) for a, b in zip(rows, rows[1:]) if b[3] < a[3]]
    worst = max(dips, key=lambda d: d[2], default=None)
    dip_text = "none" if worst is None else f"{worst[2]:.3f} dB (q{worst[0]:.3f} -> q{worst[1]:.3f}), {len(dips)} dip(s)"
    print(
        f"{name} {w}x{h}, {steps} qualities: bpp strictly increasing: {'yes' if bpp_up else 'NO'}; "
        f"PSNR non-decreasing: {'yes' if not dips else 'no'}; largest PSNR dip: {dip_text}; "
        f"{rows[0][2]:.4f}-{rows[-1][2]:.4f} bpp, {rows[0][3]:.2f}-{rows[-1][3]:.2f} dB; {time.perf_counter() - start:.0f} s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", type=Path)
    ap.add_argument("--steps", type=int, default=31, help="quality values from 0 to the top level (default 31)")
    ap.add_argument("--crop", type=int, default=None, help="center crop side (default: full size)")
    ap.add_argument("--only", action="append", default=None, metavar="NAME", help="only this pair (repeatable)")
    ap.add_argument("--variant", default="bisic-fast")
    args = ap.parse_args()
    codec = Codec(load_default(args.variant, "cpu"))
    pairs = [p for p in find_pairs(args.pairs) if args.only is None or p.name in args.only]
    if not pairs:
        raise SystemExit(f"{args.pairs}: no stereo pairs" + (f" named {', '.join(args.only)}" if args.only else ""))
    for pair in pairs:
        left, right = (read_view(p) for p in (pair.left, pair.right))
        left, right = (View(center_crop(v.pixels, args.crop), v.mode) for v in (left, right))
        sweep_pair(codec, pair.name, left, right, args.steps)


if __name__ == "__main__":
    main()
