"""How far a network's quality can rise: its PSNR at the top level with a much finer quantiser
(not a test: prints measured figures, for choosing presets; weights/README.md quotes them).

For each training checkpoint or weights file, the release's eval forward (estimated bpp) runs on
fixed 256x256 crops of the held-out real pairs at every quality level, then at the top level
with the latent gain multiplied by FACTOR (the quantiser FACTOR times finer). A network whose
PSNR hardly moves at the finer quantiser is limited by its transforms, not by its rate. Usage:

    python benchmarks/preset_ceiling.py runs/A/checkpoint.pt weights/bisic-fast.safetensors [--factor 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from heldout import held_out_crops
from stereocodec.nn.presets import LAMBDAS
from stereocodec.train.loop import averaged_model, load_checkpoint
from stereocodec.weights import load_weights

def load(path: Path) -> torch.nn.Module:
    if path.suffix == ".safetensors":
        return load_weights(path).model
    return averaged_model(load_checkpoint(path))


def crops(size: int = 256) -> torch.Tensor:
    """Two crops of each held-out pair (a quarter and three quarters across) as (N, 3, 2, H, W)."""
    items = [np.stack([left, right], axis=-1).transpose(2, 3, 0, 1) for left, right in held_out_crops(size, (0.25, 0.75))]
    return torch.from_numpy(np.stack(items).astype(np.float32) / 255)


@torch.no_grad()
def measure(model: torch.nn.Module, x: torch.Tensor, quality: int, factor: float = 1.0) -> tuple[float, float]:
    gain, inv_gain = model.gain.clone(), model.inv_gain.clone()
    model.gain[quality] *= factor
    model.inv_gain[quality] /= factor
    try:
        out = model(x, quality)
    finally:
        model.gain.copy_(gain)
        model.inv_gain.copy_(inv_gain)
    n, _, _, h, w = x.shape
    bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    mse = ((out["x_hat"].clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3, 4))
    return float(bits / (2 * n * h * w)), float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--factor", type=float, default=16.0)
    args = parser.parse_args()
    x = crops()
    table = Table(title=f"estimated bpp / PSNR dB on {len(x)} crops of the held-out pairs")
    table.add_column("network")
    for q in range(len(LAMBDAS)):
        table.add_column(f"q{q}", justify="right")
    table.add_column(f"q{len(LAMBDAS) - 1} x{args.factor:g} finer", justify="right")
    for source in args.sources:
        model = load(source)
        cells = [f"{b:.3f} / {p:.2f}" for b, p in (measure(model, x, q) for q in range(len(LAMBDAS)))]
        b, p = measure(model, x, len(LAMBDAS) - 1, args.factor)
        table.add_row(str(source), *cells, f"{b:.3f} / {p:.2f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
