"""The Python API against the CLI at full size: same bytes, same pixels, real files.

Not a test (the suite does this on crops, `tests/test_api.py`): for each pair of PAIRS_DIR
(default ../shared/data/stereo), each variant and quality, `stereo-codec encode` runs as a
subprocess and `stereocodec.Codec.encode` in this process; the files must be equal, and
`stereocodec.decode` of the CLI's file must give the pixels `stereo-codec decode` writes.
Prints one line per case and the count of mismatches; exit status 1 when there is one. Usage:

    python benchmarks/api_parity.py [PAIRS_DIR] [--variants bisic-fast,bisic] [--qualities 0,2.5,5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import stereocodec


def cli(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "stereocodec", *map(str, args)], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pairs", nargs="?", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "stereo")
    parser.add_argument("--variants", default="bisic-fast,bisic")
    parser.add_argument("--qualities", default="0,2.5,5")
    args = parser.parse_args()
    pairs = sorted(p for p in args.pairs.iterdir() if any(p.glob("left.*")))
    mismatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for variant in args.variants.split(","):
            codec = stereocodec.Codec(variant)
            for pair in pairs:
                left, right = next(pair.glob("left.*")), next(pair.glob("right.*"))
                for quality in args.qualities.split(","):
                    t = time.perf_counter()
                    cli("encode", left, right, "-o", out / "cli.sbic", "--variant", variant, "-q", quality, "--force")
                    t_cli = time.perf_counter() - t
                    t = time.perf_counter()
                    data = codec.encode(left, right, quality=float(quality))
                    t_api = time.perf_counter() - t
                    same_bytes = data == (out / "cli.sbic").read_bytes()
                    cli("decode", out / "cli.sbic", "-o", out / "dec", "--force")
                    views = codec.decode(out / "cli.sbic")
                    same_pixels = all(np.array_equal(v, np.asarray(Image.open(out / f"dec_{side}.png")))
                                      for v, side in zip(views, ("left", "right")))
                    mismatches += not (same_bytes and same_pixels)
                    print(f"{variant:10s} {pair.name:16s} q{quality:4s} {len(data):8,d} bytes  bytes equal: {same_bytes}  "
                          f"pixels equal: {same_pixels}  (cli {t_cli:.1f} s, api {t_api:.1f} s)", flush=True)
    print(f"{mismatches} mismatches")
    return int(mismatches > 0)


if __name__ == "__main__":
    sys.exit(main())
