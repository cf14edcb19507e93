"""Traditional-codec baselines and BD-rate maths (fast: small crops only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stereocodec.eval.baselines import (
    CODECS,
    AvifCodec,
    BaselineCodec,
    CodedPair,
    _run,
    chroma_note,
    rgb_to_yuv444,
    yuv444_to_rgb,
)
from stereocodec.eval.bdrate import bd_psnr, bd_rate
from stereocodec.metrics import psnr

PAIR_DIR = Path("/work/shared/data/stereo/foundation")
H, W = 64, 96

# A PSNR-like curve in the usual shape: quality grows roughly with log(rate).
RATES = [0.12, 0.25, 0.5, 0.9, 1.6]
QUALITY = [28.1, 31.0, 34.2, 37.0, 40.3]


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A real 64x96 stereo crop when the data is here, else a textured synthetic pair."""
    if (PAIR_DIR / "left.png").is_file():
        left, right = (np.asarray(Image.open(PAIR_DIR / f"{s}.png").convert("RGB")) for s in ("left", "right"))
        y, x = left.shape[0] // 2, left.shape[1] // 2
        crop = np.s_[y : y + H, x : x + W]
        return np.ascontiguousarray(left[crop]), np.ascontiguousarray(right[crop])
    yy, xx = np.mgrid[0:H, 0 : W + 4].astype(np.float64)
    base = np.stack([xx * 2, yy * 3, 128 + 60 * np.sin(xx / 5 + yy / 7)], axis=-1)
    scene = np.clip(base + np.random.default_rng(0).normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(scene[:, 4:]), np.ascontiguousarray(scene[:, :-4])


def mean_psnr(coded: CodedPair, left: np.ndarray, right: np.ndarray) -> float:
    return (psnr(left, coded.left) + psnr(right, coded.right)) / 2


# --- BD-rate ------------------------------------------------------------------


def test_bd_rate_of_curve_against_itself_is_zero() -> None:
    assert abs(bd_rate(RATES, QUALITY, RATES, QUALITY)) < 1e-9


def test_bd_rate_of_scaled_rates_is_the_scale() -> None:
    assert abs(bd_rate(RATES, QUALITY, [0.8 * r for r in RATES], QUALITY) - (-20.0)) < 1e-6
    assert abs(bd_rate(RATES, QUALITY, [1.25 * r for r in RATES], QUALITY) - 25.0) < 1e-6


def test_bd_rate_ignores_point_order() -> None:
    test_rates = [0.7 * r for r in RATES]
    test_quality = [q + 0.3 for q in QUALITY]
    expected = bd_rate(RATES, QUALITY, test_rates, test_quality)
    perm = [3, 0, 4, 2, 1]
    anchor_rates, anchor_quality = [RATES[i] for i in perm], [QUALITY[i] for i in perm]
    shuffled = bd_rate(anchor_rates, anchor_quality, test_rates[::-1], test_quality[::-1])
    assert expected < 0
    assert abs(shuffled - expected) < 1e-9


def test_bd_rate_matches_classic_polyfit_formula() -> None:
    """Same number as the textbook np.polyfit implementation of VCEG-M33."""
    r1, q1 = [686.76, 309.58, 157.11, 85.95], [40.28, 37.18, 34.24, 31.42]
    r2, q2 = [893.34, 407.8, 204.93, 112.75], [40.39, 37.21, 34.17, 31.24]
    lo, hi = max(min(q1), min(q2)), min(max(q1), max(q2))
    areas = []
    for r, q in ((r1, q1), (r2, q2)):
        p = np.polyint(np.polyfit(q, np.log(r), 3))
        areas.append(np.polyval(p, hi) - np.polyval(p, lo))
    classic = (np.exp((areas[1] - areas[0]) / (hi - lo)) - 1) * 100
    assert abs(bd_rate(r1, q1, r2, q2) - classic) < 1e-6


@pytest.mark.parametrize("n", [2, 3])
def test_bd_rate_with_few_points(n: int) -> None:
    rates, quality = RATES[:n], QUALITY[:n]
    assert abs(bd_rate(rates, quality, [0.5 * r for r in rates], quality) - (-50.0)) < 1e-6


def test_bd_psnr_of_shifted_quality() -> None:
    assert abs(bd_psnr(RATES, QUALITY, RATES, [q + 1.0 for q in QUALITY]) - 1.0) < 1e-9


def test_bd_rate_errors() -> None:
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(RATES, QUALITY, RATES, [q + 20 for q in QUALITY])
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate(RATES[:1], QUALITY[:1], RATES, QUALITY)
    with pytest.raises(ValueError):
        bd_rate(RATES, QUALITY[:-1], RATES, QUALITY)
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0.0, *RATES[1:]], QUALITY, RATES, QUALITY)


# --- codecs -------------------------------------------------------------------


def test_registry_and_notes() -> None:
    assert set(CODECS) == {"jpeg", "webp", "avif", "jxl", "hevc", "hevc-stereo"}
    for name, codec in CODECS.items():
        assert isinstance(codec, BaselineCodec)
        assert codec.name == name
        qs = codec.qualities()
        assert len(qs) >= 4 and len(set(qs)) == len(qs)
        assert codec.knob and codec.note
        assert name in chroma_note()
    assert "4:2:0" in CODECS["webp"].note


def test_yuv444_round_trip_is_near_lossless(pair: tuple[np.ndarray, np.ndarray]) -> None:
    planes = rgb_to_yuv444(pair[0])
    assert planes.shape == (3, H, W) and planes.dtype == np.uint8
    assert psnr(pair[0], yuv444_to_rgb(planes)) > 45


def test_avif_quality_maps_onto_quantizer() -> None:
    assert AvifCodec.quantizer(100) == 0
    assert AvifCodec.quantizer(0) == 63
    with pytest.raises(ValueError):
        AvifCodec.quantizer(101)


def test_tool_failures_are_one_line_runtime_errors() -> None:
    with pytest.raises(RuntimeError, match="no-such-codec-tool"):
        _run(["no-such-codec-tool", "--help"])
    with pytest.raises(RuntimeError, match=r"exit 1.*bad input") as info:
        _run(["python3", "-c", "import sys; print('first', file=sys.stderr); sys.exit('bad input')"])
    assert "\n" not in str(info.value)


def test_code_rejects_bad_input(pair: tuple[np.ndarray, np.ndarray]) -> None:
    left, right = pair
    with pytest.raises(ValueError):
        CODECS["jpeg"].code(left, right[:-8], 50)
    with pytest.raises(ValueError):
        CODECS["jpeg"].code(left.astype(np.float32), right, 50)


def require(name: str) -> BaselineCodec:
    codec = CODECS[name]
    reason = codec.available()
    if reason is not None:
        pytest.skip(f"{name}: {reason}")
    return codec


@pytest.mark.parametrize("name", sorted(CODECS))
def test_codec_round_trip(name: str, pair: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    codec = require(name)
    left, right = pair
    qs = codec.qualities()
    low, high = codec.code(left, right, qs[1]), codec.code(left, right, qs[-1])
    for coded in (low, high):
        for view in (coded.left, coded.right):
            assert view.shape == left.shape and view.dtype == np.uint8
        assert coded.nbytes == sum(len(s) for s in coded.streams) > 0
        assert len(coded.streams) == (1 if name == "hevc-stereo" else 2)
        assert coded.encode_seconds > 0 and coded.decode_seconds > 0
    assert mean_psnr(high, left, right) > 20
    assert high.nbytes > low.nbytes
    assert mean_psnr(high, left, right) > mean_psnr(low, left, right)

    # The bytes we charge for are complete files: decoding them alone gives the same views.
    expected = iter([high.left, high.right])
    views_per_stream = 2 if name == "hevc-stereo" else 1
    for i, stream in enumerate(high.streams):
        path = tmp_path / f"stream{i}"
        path.write_bytes(stream)
        decoded, _ = codec._decode(path, left.shape, views_per_stream, tmp_path)  # type: ignore[attr-defined]
        for view in decoded:
            np.testing.assert_array_equal(view, next(expected))


def test_hevc_stereo_predicts_right_from_left(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """One stream for both views, and inter-view prediction makes it cheaper than two intra streams."""
    stereo, intra = require("hevc-stereo"), require("hevc")
    left = pair[0]
    right = np.ascontiguousarray(np.roll(left, 4, axis=1))  # a pure disparity shift
    joint, separate = stereo.code(left, right, 30), intra.code(left, right, 30)
    assert len(joint.streams) == 1 and len(separate.streams) == 2
    assert joint.streams[0].startswith(b"\x00\x00\x00\x01")  # Annex-B start code
    assert mean_psnr(joint, left, right) > 25
    assert joint.nbytes < separate.nbytes


def test_missing_tools_are_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    for name in ("avif", "jxl", "hevc", "hevc-stereo"):
        reason = CODECS[name].available()
        assert reason is not None and "not found" in reason and "\n" not in reason
