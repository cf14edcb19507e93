"""What shipping weights in fewer bits would cost: rate and PSNR after rounding them, and their size.

Shipped weights are float16 (about 21 MiB in git for the `wide` BiSIC-Fast network), and the
weights issue allows the repository only so much growth. This rounds every convolution and
linear weight (`*.weight`, two or more dimensions: 99.8 % of the parameters) to BITS-bit
integers with one scale per slice along the first axis, keeps the rest (biases, gains, the
hyperprior's density) as they are, and measures the release's eval forward (estimated bpp,
PSNR) at every quality level on the fixed 256x256 crops of the held-out pairs that
`preset_ceiling.py` uses, before and after. It also prints the size of the rounded tensors,
raw and zlib-compressed (what git stores). Not a test: prints measured figures.

    python benchmarks/weight_rounding.py stereocodec/weights_store/bisic-fast-step63151.safetensors [--bits 8]
"""

from __future__ import annotations

import argparse
import io
import zlib
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from preset_ceiling import crops, load, measure


@torch.no_grad()
def round_weights(model: torch.nn.Module, bits: int) -> tuple[bytes, int]:
    """Round the model's weights in place; returns the bytes a file would hold and how many were rounded."""
    top = 2 ** (bits - 1) - 1
    raw, rounded = io.BytesIO(), 0
    for name, p in model.named_parameters():
        if name.endswith(".weight") and p.ndim >= 2:
            rows = p.reshape(p.shape[0], -1)
            scale = rows.abs().amax(1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny) / top
            codes = torch.round(rows / scale)
            p.copy_((codes * scale).reshape(p.shape))
            raw.write(codes.to(torch.int8 if bits <= 8 else torch.int16).numpy().tobytes())
            raw.write(scale.float().numpy().tobytes())
            rounded += p.numel()
        else:
            raw.write(p.half().numpy().tobytes())
    return raw.getvalue(), rounded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--bits", type=int, default=8)
    args = parser.parse_args()
    model = load(args.weights).float().eval()
    x = crops()
    levels = model.config.qualities
    before = [measure(model, x, q) for q in range(levels)]
    data, rounded = round_weights(model, args.bits)
    after = [measure(model, x, q) for q in range(levels)]
    total = sum(p.numel() for p in model.parameters())
    table = Table(title=f"{args.weights.name}: float16 against {args.bits}-bit weights, {len(x)} crops (estimated)")
    for col in ("level", "float16 bpp / dB", f"{args.bits}-bit bpp / dB", "bits", "PSNR"):
        table.add_column(col, justify="right")
    for q, ((b0, p0), (b1, p1)) in enumerate(zip(before, after)):
        table.add_row(f"q{q}", f"{b0:.4f} / {p0:.3f}", f"{b1:.4f} / {p1:.3f}", f"{100 * (b1 / b0 - 1):+.2f} %",
                      f"{p1 - p0:+.3f} dB")
    console = Console(width=160)
    console.print(table)
    console.print(f"{rounded:,} of {total:,} parameters rounded; the file's tensors: {len(data) / 2**20:.2f} MiB raw, "
                  f"{len(zlib.compress(data, 6)) / 2**20:.2f} MiB zlib-compressed (float16: "
                  f"{2 * total / 2**20:.2f} MiB raw)")


if __name__ == "__main__":
    main()
