"""What encoder-side latent refinement (`encode --refine STEPS`) buys, in real files.

Not a test: prints measured figures (weights/README.md quotes them). For crops of the held-out
real pairs, every quality level is encoded twice through the codec, plainly and with STEPS
refinement steps; the files are decoded back and measured (bytes, PSNR of both views), and the
table gives per level bpp / PSNR / encode seconds and the BD-rate of refined against plain.
Usage (the default weights unless --weights):

    python benchmarks/latent_refinement.py [--steps 60] [--size 256] [--weights FILE] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from heldout import held_out_crops
from stereocodec.codec import Codec
from stereocodec.eval.bdrate import bd_psnr, bd_rate
from stereocodec.metrics import psnr
from stereocodec.io.images import View
from stereocodec.store import load_default
from stereocodec.weights import load_weights

def crops(size: int) -> list[tuple[View, View]]:
    """One centred crop of each held-out pair."""
    return [(View(left, "RGB"), View(right, "RGB")) for left, right in held_out_crops(size, (0.5,))]


def measure(codec: Codec, pairs: list[tuple[View, View]], quality: int) -> tuple[float, float, float]:
    """Mean bpp (real file bytes), mean PSNR (both views, decoded file) and mean encode seconds."""
    bpps, psnrs, seconds = [], [], []
    for left, right in pairs:
        t0 = time.perf_counter()
        encoded = codec.encode(left, right, quality, reconstruct=False)
        seconds.append(time.perf_counter() - t0)
        decoded = codec.decode(encoded.data)
        h, w = left.pixels.shape[:2]
        bpps.append(8 * len(encoded.data) / (2 * h * w))
        psnrs.append((psnr(left.pixels, decoded.left) + psnr(right.pixels, decoded.right)) / 2)
    return float(np.mean(bpps)), float(np.mean(psnrs)), float(np.mean(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = load_weights(args.weights) if args.weights else load_default("bisic-fast")
    pairs = crops(args.size)
    plain, refined = Codec(weights), Codec(weights, refine_steps=args.steps)
    table = Table(title=f"{weights.name}: {len(pairs)} crops of {args.size}x{args.size}, real files")
    for column in ("level", "plain bpp / PSNR", "refined bpp / PSNR", "plain s", "refined s"):
        table.add_column(column, justify="right")
    curves: dict[str, list[tuple[float, float]]] = {"plain": [], "refined": []}
    for level in range(plain.quality_levels()):
        p, r = measure(plain, pairs, level), measure(refined, pairs, level)
        curves["plain"].append(p[:2])
        curves["refined"].append(r[:2])
        table.add_row(f"q{level}", f"{p[0]:.4f} / {p[1]:.2f}", f"{r[0]:.4f} / {r[1]:.2f}", f"{p[2]:.2f}", f"{r[2]:.1f}")
    console = Console()
    console.print(table)
    (pr, pq), (rr, rq) = (zip(*curves["plain"]), zip(*curves["refined"]))
    console.print(f"refined against plain: BD-rate {bd_rate(pr, pq, rr, rq):+.2f} %, BD-PSNR {bd_psnr(pr, pq, rr, rq):+.3f} dB")


if __name__ == "__main__":
    main()
