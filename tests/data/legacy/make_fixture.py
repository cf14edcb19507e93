"""Make the legacy-file fixture with stereo-codec as of commit f3806fe (run from its checkout).

    git worktree add /tmp/old f3806fe
    PYTHONPATH=/tmp/old python tests/data/legacy/make_fixture.py tests/data/legacy

That version's float16 weights files still held the constant bounds, and its fingerprints
hashed them. The weights are not kept: `fixture_model()` rebuilds them from a seed, so only the
.sbic file and that version's decoded views are stored; today's decoder must give the same pixels.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stereocodec.nn.models import BiSICConfig, build_model


def fixture_model() -> torch.nn.Module:
    """A tiny variable-rate BiSIC-Fast, the same on every machine for one torch version."""
    torch.manual_seed(0)
    config = BiSICConfig(N=48, M=48, slices=6, ep_hidden=(8, 8, 8), lrp_hidden=(8, 8, 8),
                         cc_hidden=(8, 8, 8), qualities=6)
    model = build_model("bisic-fast", config)
    with torch.no_grad():
        model.gain.copy_(torch.linspace(2, 12, 6)[:, None].expand(6, 48))
        model.inv_gain.copy_(1 / model.gain)
    return model


def main(out: Path) -> None:
    from stereocodec.codec import Codec
    from stereocodec.io.images import read_view
    from stereocodec.weights import load_weights, save_weights

    weights = out / "weights.safetensors"
    save_weights(fixture_model(), weights, {"name": "legacy fixture (f3806fe)"})
    codec = Codec(load_weights(weights))
    weights.unlink()
    examples = Path(__file__).resolve().parents[3] / "examples"
    views = []
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("left", "right"):
            crop = Image.open(examples / f"{side}.png").convert("RGB").crop((0, 0, 80, 72))
            crop.save(Path(tmp) / f"{side}.png")
            views.append(read_view(Path(tmp) / f"{side}.png"))
    encoded = codec.encode(*views, quality=4)
    (out / "pair.sbic").write_bytes(encoded.data)
    decoded = codec.decode(encoded.data)
    for side, pixels in (("left", decoded.left), ("right", decoded.right)):
        Image.fromarray(np.ascontiguousarray(pixels)).save(out / f"{side}-decoded.png")
    print(codec.weights.fingerprint.hex())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
