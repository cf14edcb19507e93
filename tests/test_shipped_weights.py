"""The default weights of the store are what `encode` and `decode` use when no --weights is given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import need_archive, need_shared, run_cli
from stereocodec.codec import Codec
from stereocodec.io.images import View, read_view
from stereocodec.metrics import psnr
from stereocodec.store import HISTORY, default_weights_path, load_default, load_stored, manifest, shipped_before, store_root

VARIANTS = ("bisic-fast", "bisic")


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_weights_metadata_and_size(variant: str) -> None:
    path = default_weights_path(variant)
    assert path.is_file(), f"{path} must ship with the project"
    assert path.stat().st_size <= 25 * 2**20
    loaded = load_default(variant)
    meta = loaded.metadata
    for key in ("name", "preset", "quality_levels", "lambdas", "training_steps", "training_data", "date", "config"):
        assert key in meta, key
    assert meta["variant"] == variant and loaded.model.config.qualities == meta["quality_levels"] == 6


def test_every_shipped_weights_file_is_in_the_history() -> None:
    """weights_store/history.json names every development weights file shipped before the store, so
    that a file they made can say where its weights are; the first stored ones are listed too."""
    need_archive()
    history = json.loads(store_root().joinpath(HISTORY).read_text())
    assert len({e["name"] for e in history}) == len(history)
    assert all(len(fp) == 64 and int(fp, 16) >= 0 for e in history for fp in e["fingerprints"])
    for variant in VARIANTS:
        loaded = load_stored(next(e for e in manifest() if e.variant == variant))  # the first stored version
        entry = shipped_before(loaded.fingerprint)
        assert entry is not None, f"the first stored {variant} weights are in history.json"
        assert (entry["variant"], entry["name"]) == (variant, loaded.name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_quality_level_roundtrips_and_rate_grows(variant: str) -> None:
    pair = need_shared("data", "stereo", "mb_playtable")
    crop = lambda p: View(np.ascontiguousarray(read_view(p).pixels[400:528, 600:728]), "RGB")  # noqa: E731
    left, right = crop(pair / "left.png"), crop(pair / "right.png")
    codec = Codec(load_default(variant))
    sizes = []
    for q in range(6):
        enc = codec.encode(left, right, q)
        dec = codec.decode(enc.data)
        assert np.array_equal(dec.left, enc.left) and np.array_equal(dec.right, enc.right)
        sizes.append(len(enc.data))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], sizes


def test_readme_main_command_on_the_example_pair(tmp_path) -> None:
    """README's first command, as a newcomer runs it: shipped weights, no options."""
    examples = Path(__file__).parents[1] / "examples"
    out = tmp_path / "pair.sbic"
    run_cli("encode", examples / "left.png", examples / "right.png", "-o", out, "--psnr", check=True)
    info = json.loads(run_cli("info", out, "--json", check=True).stdout)
    assert info["variant"] == "bisic-fast" and info["quality"] == 3
    run_cli("decode", out, "-o", tmp_path / "pair", check=True)
    for v in ("left", "right"):
        original = np.asarray(Image.open(examples / f"{v}.png"), np.float64)
        decoded = np.asarray(Image.open(tmp_path / f"pair_{v}.png"), np.float64)
        assert decoded.shape == original.shape
        assert psnr(decoded, original) > 16, v  # random weights give about 5 dB
