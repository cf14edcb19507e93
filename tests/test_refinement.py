"""Encoder-side latent refinement: better pairs at the same level, files any decoder reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import need_shared, run_cli
from stereocodec.codec import Codec
from stereocodec.coding.refinement import level_lambda, refine_latent
from stereocodec.metrics import psnr
from stereocodec.io.images import InputError, pair_tensor, read_view
from stereocodec.store import load_default
from stereocodec.weights import load_weights

IDENTITY = Path(__file__).parent / "data" / "identity"


def test_a_level_between_two_takes_the_log_domain_blend_of_their_lambdas() -> None:
    lambdas = (42, 105, 262, 655, 1638, 4096)
    assert level_lambda(lambdas, 2) == pytest.approx(262) and level_lambda(lambdas, 5) == pytest.approx(4096)
    assert level_lambda(lambdas, 4.5) == pytest.approx(math.sqrt(1638 * 4096))


def test_refinement_lowers_the_real_loss_deterministically_and_the_file_decodes_better() -> None:
    weights = load_default("bisic-fast")
    left, right = read_view(IDENTITY / "left.png"), read_view(IDENTITY / "right.png")
    plain, refined = Codec(weights), Codec(weights, refine_steps=20)
    a, b = plain.encode(left, right, 5), refined.encode(left, right, 5)
    assert b.refinement is not None and b.refinement.steps == 20
    assert b.refinement.loss_after < 0.95 * b.refinement.loss_before
    assert refined.encode(left, right, 5).data == b.data  # the same file every time
    da, db = plain.decode(a.data), plain.decode(b.data)  # any decoder: the plain codec reads it
    mean_psnr = lambda d: (psnr(left.pixels, d.left) + psnr(right.pixels, d.right)) / 2  # noqa: E731
    assert mean_psnr(db) > mean_psnr(da) + 0.3
    assert np.array_equal(db.left, b.left) and np.array_equal(db.right, b.right)  # the encoder's reconstruction


def test_refinement_keeps_the_plain_latent_when_no_step_improves_it() -> None:
    """A learning rate that only makes things worse: the start is returned as it was."""
    model = load_default("bisic-fast").model.eval()
    left, right = read_view(IDENTITY / "left.png"), read_view(IDENTITY / "right.png")
    x = pair_tensor(left.pixels, right.pixels)
    with torch.no_grad():
        y = model.analysis(x)
    result = refine_latent(model, x, y, 2, 262.0, steps=4, lr=50.0, check_every=2)
    assert result.loss_after == result.loss_before and torch.equal(result.y, y)
    assert not model.training


def test_single_rate_release_weights_refuse_refinement() -> None:
    codec = Codec(load_weights(need_shared("reference", "official_bisic_fast_n48.pth.tar")), refine_steps=5)
    left, right = read_view(IDENTITY / "left.png"), read_view(IDENTITY / "right.png")
    with pytest.raises(InputError, match="variable-rate"):
        codec.encode(left, right)


def test_encode_refine_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "pair.sbic"
    proc = run_cli("encode", IDENTITY / "left.png", IDENTITY / "right.png", "-o", out, "-q", "4", "--refine", "10",
                   check=True)
    assert "refined in 10 steps" in proc.stdout
    run_cli("decode", out, "-o", tmp_path / "back", check=True)
    assert (tmp_path / "back_left.png").exists()
    target = run_cli("encode", IDENTITY / "left.png", IDENTITY / "right.png", "-o", tmp_path / "t.sbic",
                     "--bpp", "0.5", "--refine", "10")
    assert target.returncode == 1 and "--refine goes with --quality" in target.stderr
    assert "Traceback" not in target.stderr and not (tmp_path / "t.sbic").exists()


def test_report_codes_sbic_with_refinement(tmp_path: Path) -> None:
    stereo = need_shared("data", "stereo")
    results = {}
    for steps in ("0", "10"):
        path = tmp_path / f"rd{steps}.json"
        run_cli("report", stereo, "--codecs", "sbic", "--anchor", "sbic", "--max-side", "64", "--qualities", "sbic=5",
                "--refine", steps, "--json", path, env={"OMP_NUM_THREADS": "1"}, check=True)
        results[steps] = json.loads(path.read_text())["points"]
    plain, refined = (sum(p["psnr"] for p in results[s]) / 3 for s in ("0", "10"))
    assert len(results["10"]) == 3 and refined > plain + 0.2
    proc = run_cli("report", stereo, "--codecs", "sbic,jpeg", "--bpp", "0.5", "--refine", "5")
    assert proc.returncode == 1 and "--refine codes sbic at its levels" in proc.stderr


def test_bisic_refines_too_and_its_file_decodes_to_the_encoders_reconstruction() -> None:
    codec = Codec(load_default("bisic"), refine_steps=10)
    left, right = read_view(IDENTITY / "left.png"), read_view(IDENTITY / "right.png")
    encoded = codec.encode(left, right, 5)
    assert encoded.refinement.loss_after < encoded.refinement.loss_before
    decoded = Codec(load_default("bisic")).decode(encoded.data)
    assert np.array_equal(decoded.left, encoded.left) and np.array_equal(decoded.right, encoded.right)
