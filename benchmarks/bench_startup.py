"""Start-up time of `stereo-codec --help` and `--version` (they must not import torch).

    python benchmarks/bench_startup.py [--runs 5]

Prints the median and best wall time of each command over the runs, against a bare
`python -c pass` for reference, and the target (under 0.5 s).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

TARGET_S = 0.5
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "stereo-codec --help": [sys.executable, "-m", "stereocodec", "--help"],
    "stereo-codec --version": [sys.executable, "-m", "stereocodec", "--version"],
    "stereo-codec encode --help": [sys.executable, "-m", "stereocodec", "encode", "--help"],
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    torch_free = subprocess.run(
        [sys.executable, "-c", "import sys, stereocodec.cli; print('torch' in sys.modules)"], capture_output=True, text=True, check=True
    ).stdout.strip() == "False"
    print(f"importing stereocodec.cli loads torch: {not torch_free}")
    for name, cmd in COMMANDS.items():
        times = [wall(cmd) for _ in range(args.runs)]
        verdict = "" if name.startswith("python") else ("  ok" if statistics.median(times) < TARGET_S else f"  over the {TARGET_S} s target")
        print(f"{name:28s} median {statistics.median(times):.3f} s, best {min(times):.3f} s{verdict}")


if __name__ == "__main__":
    main()
