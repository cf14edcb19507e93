"""Coding speed and memory against the network's own cost (not a test: prints measured figures).

For each variant, preset and size, a fresh child process (so that peak RSS belongs to one
configuration) times one plain eval forward pass, encode (no reconstruction) and decode
on a random pair, and reports (encode + decode) / forward: the floor for a codec built
from the network is about 1. Usage:

    python benchmarks/bench_codec.py [--sizes 1088x896,2048x1024] [--presets official,shipped]
                                     [--variants bisic,bisic-fast] [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def measure(variant: str, preset: str, height: int, width: int, device: str, threads: int | None) -> dict:
    """Run in the child process."""
    import torch

    from stereocodec.codec import Codec
    from stereocodec.io.images import View
    from stereocodec.nn.models import build_model, official_config
    from stereocodec.store import default_weights_path
    from stereocodec.weights import LoadedWeights, fingerprint, load_weights

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if preset == "shipped" and default_weights_path(variant).exists():
        loaded = load_weights(default_weights_path(variant), variant, device)
    else:
        from stereocodec.train.loop import preset_config

        config = official_config(variant) if preset == "official" else preset_config("small", variant)
        model = build_model(variant, config).eval().to(device)
        loaded = LoadedWeights(model, f"random {preset}", fingerprint(model), {})
    codec = Codec(loaded)
    rng = torch.Generator().manual_seed(1)
    # a smooth random pair codes like a photo far better than white noise
    base = torch.nn.functional.interpolate(torch.rand(1, 3, height // 16, width // 16, generator=rng), size=(height, width), mode="bicubic")
    pixels = (base.clamp(0, 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    left, right = View(pixels, "RGB"), View(pixels[:, ::-1].copy(), "RGB")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    from stereocodec.io.images import pair_tensor

    x = pair_tensor(left.pixels, right.pixels).to(device)
    q = codec.default_quality() if codec.quality_levels() else None
    with torch.no_grad():
        sync(); t = time.perf_counter(); codec.model(x, q); sync()
        forward = time.perf_counter() - t
    t = time.perf_counter(); enc = codec.encode(left, right, reconstruct=False); sync()
    encode = time.perf_counter() - t
    t = time.perf_counter(); codec.decode(enc.data); sync()
    decode = time.perf_counter() - t
    return {
        "variant": variant, "preset": preset, "size": f"{width}x{height}", "device": device,
        "threads": torch.get_num_threads(), "forward_s": forward, "encode_s": encode, "decode_s": decode,
        "ratio": (encode + decode) / forward, "bpp": 8 * len(enc.data) / (2 * height * width),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1088x896,2048x1024")
    ap.add_argument("--presets", default="official,shipped")
    ap.add_argument("--variants", default="bisic-fast,bisic")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return
    rows = []
    console = Console()
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        for preset in args.presets.split(","):
            for variant in args.variants.split(","):
                spec = json.dumps([variant, preset, h, w, args.device, args.threads])
                proc = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True)
                if proc.returncode:
                    console.print(f"[red]{variant} {preset} {size} failed:[/] {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                console.print(rows[-1])
    table = Table(title=f"stereo-codec coding cost ({args.device})")
    for col in ("variant", "preset", "size", "forward s", "encode s", "decode s", "(enc+dec)/forward", "peak RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["variant"], r["preset"], r["size"], f"{r['forward_s']:.1f}", f"{r['encode_s']:.1f}",
                      f"{r['decode_s']:.1f}", f"{r['ratio']:.2f}", f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
