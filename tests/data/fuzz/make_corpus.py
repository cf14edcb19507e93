"""Make the fuzzing corpus: tiny valid .sbic files of the shipped weights (run from the repo root).

    python tests/data/fuzz/make_corpus.py

Small views keep every fuzz case fast; the corpus covers both variants, odd sizes (padding),
grayscale and the quality range, in format v3 (the store fixtures beside them are v1 files, the legacy
float entropy path).
"""

from pathlib import Path

import numpy as np

from stereocodec.codec import Codec
from stereocodec.io.images import View, read_view
from stereocodec.store import load_default

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[2] / "examples"


def main() -> None:
    left, right = (read_view(EXAMPLES / f"{s}.png").pixels for s in ("left", "right"))
    for name, variant, (h, w), mode, quality in (
        ("fast-8x8-q5", "bisic-fast", (8, 8), "RGB", 5),
        ("fast-33x70-gray-q0", "bisic-fast", (33, 70), "L", 0),
        ("bisic-16x16-q2", "bisic", (16, 16), "RGB", 2),
    ):
        crop = lambda v: View(np.ascontiguousarray(v[200:200 + h, 250:250 + w]), mode)  # noqa: E731
        data = Codec(load_default(variant)).encode(crop(left), crop(right), quality, reconstruct=False).data
        (HERE / f"{name}.sbic").write_bytes(data)
        print(name, len(data), "bytes")


if __name__ == "__main__":
    main()
