"""What the int8 weights form costs: rate and PSNR of a weights file against its int8 version, and sizes.

Shipped weights are float16 by default (about 21 MiB in git for the `wide` BiSIC-Fast network),
and the weights issue allows the repository only so much growth. `stereo-codec export --encoding
int8` stores every convolution and linear weight (`*.weight`, two or more dimensions: 99.8 % of
the parameters) as 8-bit integers with one float32 scale per slice along the first axis and the
rest in float16 (`stereocodec.weights.encode_tensors`). This writes that form of WEIGHTS (rounded
from the float values WEIGHTS loads to; an export from the training checkpoint rounds from
float32 and is a little closer), loads it back as the codec would, and measures the release's
eval forward (estimated bpp, PSNR) at every quality level on the fixed 256x256 crops of the
held-out pairs that `preset_ceiling.py` uses, before and after. It also prints both files'
sizes, raw and zlib-compressed (what git stores). Not a test: prints measured figures.

    python benchmarks/weight_rounding.py stereocodec/weights_store/bisic-fast-step63151.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
import zlib
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from preset_ceiling import crops, measure
from stereocodec.weights import load_weights, save_weights


def sizes(path: Path) -> str:
    data = path.read_bytes()
    return f"{len(data) / 2**20:.2f} MiB raw, {len(zlib.compress(data, 6)) / 2**20:.2f} MiB zlib-compressed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    args = parser.parse_args()
    loaded = load_weights(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.safetensors"
        save_weights(loaded.model, int8, loaded.metadata, encoding="int8")
        rounded, int8_size = load_weights(int8).model.float().eval(), sizes(int8)
    model = loaded.model.float().eval()
    x = crops()
    levels = model.config.qualities
    with torch.no_grad():
        rows = [(measure(model, x, q), measure(rounded, x, q)) for q in range(levels)]
    table = Table(title=f"{args.weights.name} against its int8 form, {len(x)} crops (estimated)")
    for col in ("level", "as stored bpp / dB", "int8 bpp / dB", "bits", "PSNR"):
        table.add_column(col, justify="right")
    for q, ((b0, p0), (b1, p1)) in enumerate(rows):
        table.add_row(f"q{q}", f"{b0:.4f} / {p0:.3f}", f"{b1:.4f} / {p1:.3f}", f"{100 * (b1 / b0 - 1):+.2f} %",
                      f"{p1 - p0:+.3f} dB")
    console = Console(width=160)
    console.print(table)
    console.print(f"{args.weights.name}: {sizes(args.weights)}; int8 form: {int8_size}")


if __name__ == "__main__":
    main()
