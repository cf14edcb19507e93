"""The exact entropy path (format v3) against the legacy float one (v1): rate and speed, real files.

Not a test: prints measured figures. On the pairs of PAIRS_DIR (default ../shared/data/stereo,
full size), for each variant and level, both paths code the pair for real (range-coded streams,
the decoder's reconstruction); the BD-rate of exact against float by PSNR says what the integer
arithmetic costs. Then encode and decode times of each path on the first pair, after a warm-up,
and their ratio (the issue's target: BiSIC-Fast within 1.3x), best of --repeat codings with
the two paths interleaved (the machine may be shared). --timing skips the rate curves (then
one level is enough). Usage:

    python benchmarks/exact_entropy.py [PAIRS_DIR] [--variants bisic-fast,bisic] [--levels 0,1,2,3,4,5] [--threads 2]
                                       [--repeat 3] [--timing]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from stereocodec.coding.latent_codecs import StereoLatentCodec
from stereocodec.eval.bdrate import bd_rate
from stereocodec.io.images import pair_tensor, read_view, to_uint8
from stereocodec.metrics import psnr
from stereocodec.store import default_entry, load_stored


def code(latents: StereoLatentCodec, x: torch.Tensor, q: int, h: int, w: int, views) -> tuple[float, float, float, float]:
    """(bpp, mean PSNR, encode s, decode s) of one real coding."""
    t = time.perf_counter()
    enc = latents.compress(x, q, reconstruct=False)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    x_hat = latents.decompress(enc.streams, tuple(x.shape[-2:]), q, enc.checksum)
    t_dec = time.perf_counter() - t
    nbytes = sum(map(len, enc.streams.values()))
    rec = to_uint8(x_hat, h, w)
    return 8 * nbytes / (2 * h * w), float(np.mean([psnr(a, b) for a, b in zip(views, rec)])), t_enc, t_dec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pairs", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "stereo"))
    p.add_argument("--variants", default="bisic-fast,bisic")
    p.add_argument("--levels", default="0,1,2,3,4,5")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="timed codings per path (best of)")
    p.add_argument("--timing", action="store_true", help="times only, no rate curves")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pairs = sorted(d for d in Path(args.pairs).iterdir() if d.is_dir())
    levels = [int(v) for v in args.levels.split(",")]
    for variant in args.variants.split(","):
        model = load_stored(default_entry(variant)).model.eval()
        paths = {"float": StereoLatentCodec(model, exact=False), "exact": StereoLatentCodec(model, exact=True)}
        rates = []
        for pair in pairs:
            left, right = (read_view(next(pair.glob(f"{side}.*"))).pixels for side in ("left", "right"))
            h, w = left.shape[:2]
            x = pair_tensor(left, right)
            if not args.timing:
                curves = {name: [code(lat, x, q, h, w, (left, right)) for q in levels] for name, lat in paths.items()}
                for name, curve in curves.items():
                    print(f"{variant} {pair.name} {w}x{h} {name}: " + ", ".join(f"q{q} {b:.4f}/{d:.2f}" for q, (b, d, _, _) in zip(levels, curve)))
                rate = bd_rate([c[0] for c in curves["float"]], [c[1] for c in curves["float"]],
                               [c[0] for c in curves["exact"]], [c[1] for c in curves["exact"]])
                rates.append(rate)
                print(f"{variant} {pair.name}: BD-rate of exact against float {rate:+.3f} %")
            if pair == pairs[0]:
                if args.timing:
                    for lat in paths.values():
                        code(lat, x, 3, h, w, (left, right))  # warm-up
                runs = {name: [] for name in paths}
                for _ in range(args.repeat):
                    for name, lat in paths.items():
                        runs[name].append(code(lat, x, 3, h, w, (left, right))[2:])
                times = {name: (min(r[0] for r in rs), min(r[1] for r in rs)) for name, rs in runs.items()}
                for name, (te, td) in times.items():
                    print(f"{variant} {pair.name} q3 {name}: encode {te:.2f} s, decode {td:.2f} s (best of {args.repeat})")
                print(f"{variant} {pair.name}: exact / float encode {times['exact'][0] / times['float'][0]:.2f}x, "
                      f"decode {times['exact'][1] / times['float'][1]:.2f}x")
            if args.timing:
                break
        if rates:
            print(f"{variant}: mean BD-rate of exact against float {np.mean(rates):+.3f} % over {len(rates)} pairs")


if __name__ == "__main__":
    main()
