"""Make a fixture for every stored weights version that lacks one (run after `ship-weights`).

    python tests/data/store/make_fixtures.py

For each manifest entry this writes `<file stem>.sbic` (a 64x64 crop of examples/left.png +
right.png at quality 0, coded with that version) and the views it decodes to, as PNG. The test
decodes every fixture with the installed package: a file written by any shipped weights must
give the same pixels after every later release.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stereocodec.codec import Codec
from stereocodec.io.images import View, read_view
from stereocodec.store import load_stored, manifest

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[2] / "examples"


def crop(path: Path) -> View:
    return View(np.ascontiguousarray(read_view(path).pixels[160:224, 224:288]), "RGB")


def main() -> None:
    torch.set_num_threads(1)  # as the tests decode
    for entry in manifest():
        stem = HERE / Path(entry.file).stem
        if stem.with_suffix(".sbic").exists():
            continue
        codec = Codec(load_stored(entry))
        enc = codec.encode(crop(EXAMPLES / "left.png"), crop(EXAMPLES / "right.png"), 0)
        dec = codec.decode(enc.data)
        stem.with_suffix(".sbic").write_bytes(enc.data)
        for side, pixels in (("left", dec.left), ("right", dec.right)):
            Image.fromarray(pixels).save(f"{stem}-{side}.png")
        print(f"wrote {stem}.sbic ({len(enc.data)} bytes) and its decoded views")


if __name__ == "__main__":
    main()
