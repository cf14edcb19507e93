"""The networks against the release: tensor names/shapes and numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, need_shared, run_cli
from stereocodec.nn.models import build_model
from stereocodec.weights import WeightsError, load_weights

FIXTURES = {"bisic": "official_bisic_n48", "bisic-fast": "official_bisic_fast_n48"}


@pytest.mark.parametrize("variant,key", [("bisic", "bisic"), ("bisic-fast", "bisic_fast")])
def test_official_preset_matches_manifest(variant: str, key: str) -> None:
    manifest = json.loads(need_shared("reference", "official_state_dict_manifest.json").read_text())[key]
    net = build_model(variant)
    names = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert names == manifest["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == manifest["parameters"]


@pytest.mark.parametrize("variant", FIXTURES)
def test_release_checkpoint_parity(variant: str) -> None:
    ckpt = need_shared("reference", FIXTURES[variant] + ".pth.tar")
    expected = np.load(need_shared("reference", FIXTURES[variant] + "_expected.npz"))
    loaded = load_weights(ckpt)
    assert loaded.model.variant == variant and loaded.model.config.N == 48
    x = torch.from_numpy(np.stack([expected["left"], expected["right"]])).permute(3, 0, 1, 2)[None].float() / 255
    with torch.no_grad():
        out = loaded.model.eval()(x)
    got = {"x_hat": out["x_hat"], "y_likelihoods": out["likelihoods"]["y"], "z_likelihoods": out["likelihoods"]["z"], "y_hat": out["y_hat"]}
    for name, t in got.items():
        for v, view in enumerate(("left", "right")):
            ref = expected[f"{name}_{view}"]
            assert t[:, :, v].shape == ref.shape
            np.testing.assert_allclose(t[:, :, v].numpy(), ref, rtol=0, atol=1e-4, err_msg=f"{name}_{view}")


def test_train_mode_forward_runs_and_backpropagates() -> None:
    ckpt = need_shared("reference", FIXTURES["bisic-fast"] + ".pth.tar")
    net = load_weights(ckpt).model.train()
    x = torch.rand(1, 3, 2, 64, 64)
    out = net(x)
    bpp = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()) / (2 * 64 * 64)
    loss = 256 * torch.mean((out["x_hat"] - x) ** 2) + bpp
    loss.backward()
    assert net.Conv3DEncoder_A[0].weight.grad.abs().sum() > 0
    assert net.context_prediction_CKBD_list[0].weight.grad.abs().sum() > 0


def _save(sd: dict, path) -> None:
    torch.save({"state_dict": sd}, path)


@pytest.fixture(scope="module")
def release_sd() -> dict:
    return torch.load(need_shared("reference", FIXTURES["bisic-fast"] + ".pth.tar"), weights_only=True)["state_dict"]


def test_factorized_prior_naming_variants(release_sd: dict) -> None:
    ref = load_weights(need_shared("reference", FIXTURES["bisic-fast"] + ".pth.tar")).fingerprint
    from stereocodec.weights import fingerprint, model_from_state_dict

    for style in ("{}.{}", "_{}.{}"):
        sd = {}
        for k, v in release_sd.items():
            for old, new in (("_matrix", "matrices"), ("_bias", "biases"), ("_factor", "factors")):
                if ".entropy_bottleneck." + old in k:
                    i = k.rsplit(old, 1)[1]
                    k = k.rsplit(old, 1)[0] + style.format(new, i)
            sd[k] = v
        assert fingerprint(model_from_state_dict(sd, None, "x")) == ref


@pytest.mark.parametrize("damage", ["missing", "extra", "shape"])
def test_bad_tensors_refused(release_sd: dict, tmp_path, damage: str) -> None:
    sd = dict(release_sd)
    name = "En_Transfer_B.rb1.conv2.weight"
    if damage == "missing":
        del sd[name]
    elif damage == "extra":
        sd["bogus.weight"] = torch.zeros(3)
    else:
        sd[name] = torch.zeros(2, 2)
    path = tmp_path / "bad.pth.tar"
    _save(sd, path)
    with pytest.raises(WeightsError) as e:
        load_weights(path)
    assert ("bogus.weight" if damage == "extra" else name) in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_estimate_json_and_table() -> None:
    pair = need_shared("data", "stereo", "foundation")
    for variant, fixture in FIXTURES.items():
        proc = run_cli("estimate", pair / "left.png", pair / "right.png", "--weights",
                       need_shared("reference", fixture + ".pth.tar"), "--json", check=True)
        report = json.loads(proc.stdout)
        for key in ("bpp", "bpp_left", "bpp_right", "psnr_left", "psnr_right", "ms_ssim_left", "ms_ssim_right", "height", "width"):
            assert key in report
        assert (report["height"], report["width"]) == (540, 960)
        assert report["variant"] == variant
        assert report["bpp"] == pytest.approx((report["bpp_left"] + report["bpp_right"]) / 2)
        assert report["bpp_left"] > 0
    proc = run_cli("estimate", pair / "left.png", pair / "right.png", "--weights",
                   need_shared("reference", FIXTURES["bisic"] + ".pth.tar"), check=True)
    assert "PSNR" in proc.stdout and "pair" in proc.stdout


def test_cli_refuses_bad_checkpoints(release_sd: dict, tmp_path) -> None:
    pair = need_shared("data", "stereo", "foundation")
    ckpt = need_shared("reference", FIXTURES["bisic-fast"] + ".pth.tar")
    truncated = tmp_path / "trunc.pth.tar"
    truncated.write_bytes(ckpt.read_bytes()[:100_000])
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a checkpoint\n")
    missing = dict(release_sd)
    del missing["hyperprior.entropy_bottleneck.quantiles"]
    missing_path = tmp_path / "missing.pth.tar"
    _save(missing, missing_path)
    for bad in (truncated, text, missing_path, tmp_path / "absent.pth"):
        proc = run_cli("estimate", pair / "left.png", pair / "right.png", "--weights", bad)
        assert_clean_error(proc)
    proc = run_cli("estimate", pair / "left.png", pair / "right.png", "--weights", ckpt, "--variant", "bisic")
    assert_clean_error(proc)
    assert "bisic-fast" in proc.stderr
