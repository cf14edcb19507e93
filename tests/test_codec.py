"""Real bitstreams: encode -> .sbic -> decode, on real files, with real constriction coding."""

from __future__ import annotations

import dataclasses
import importlib.util
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_clean_error, need_shared, run_cli
from stereocodec.codec import Codec
from stereocodec.coding.range_coding import GAUSSIAN_BOUND, CodingError, SymbolDecoder, SymbolEncoder, categorical_tables
from stereocodec.container import Container, ContainerError
from stereocodec.io.images import View, read_view
from stereocodec.nn.models import build_model
from stereocodec.train.loop import preset_config
from stereocodec.weights import LoadedWeights, fingerprint, load_weights, save_weights

VARIANTS = ("bisic", "bisic-fast")


def tiny_weights(variant: str, seed: int = 0) -> LoadedWeights:
    """A small seeded network with six quality levels (random weights, real structure)."""
    torch.manual_seed(seed)
    model = build_model(variant, preset_config("tiny", variant)).eval()
    with torch.no_grad():  # distinct gains per level, as trained weights have
        model.gain.copy_(torch.linspace(0.5, 3.0, 6)[:, None].expand_as(model.gain))
        model.inv_gain.copy_(1 / model.gain)
    return LoadedWeights(model, f"tiny {variant} seed {seed}", fingerprint(model), {})


@pytest.fixture(scope="module", params=VARIANTS)
def codec(request) -> Codec:
    return Codec(tiny_weights(request.param))


def crop_view(path, h: int, w: int, top: int = 0, left: int = 0) -> View:
    view = read_view(path)
    return View(np.ascontiguousarray(view.pixels[top:top + h, left:left + w]), view.mode)


def roundtrip(codec: Codec, left: View, right: View, quality=None):
    enc = codec.encode(left, right, quality)
    dec = codec.decode(enc.data)
    assert np.array_equal(dec.left, enc.left) and np.array_equal(dec.right, enc.right)
    assert dec.left.shape == left.pixels.shape
    return enc, dec


@pytest.mark.parametrize("size", [(97, 131), (1, 64), (64, 1), (1, 1), (70, 200)])
def test_roundtrip_odd_sizes(codec: Codec, size) -> None:
    pair = need_shared("data", "stereo", "mb_playtable")
    left, right = crop_view(pair / "left.png", *size, 300, 400), crop_view(pair / "right.png", *size, 300, 400)
    enc, dec = roundtrip(codec, left, right, quality=2)
    c = dec.container
    assert (c.views[0].height, c.views[0].width) == size
    assert c.quality == 2 and c.variant == codec.model.variant


def test_all_quality_levels_roundtrip_and_differ(codec: Codec) -> None:
    pair = need_shared("data", "stereo", "foundation")
    left, right = crop_view(pair / "left.png", 64, 96, 200, 300), crop_view(pair / "right.png", 64, 96, 200, 300)
    sizes = [len(roundtrip(codec, left, right, q)[0].data) for q in range(6)]
    assert len(set(sizes)) > 1


# crops large enough that the range coder's final words (< 64 bits per stream) stay under 1%
@pytest.mark.parametrize("fixture,side", [("official_bisic_n48", 128), ("official_bisic_fast_n48", 320)])
def test_release_fixture_roundtrip_and_payload_matches_information(fixture: str, side: int) -> None:
    codec = Codec(load_weights(need_shared("reference", fixture + ".pth.tar")))
    pair = need_shared("data", "stereo", "aloe")
    left, right = crop_view(pair / "left.jpg", side, side, 400, 500), crop_view(pair / "right.jpg", side, side, 400, 500)
    enc, _ = roundtrip(codec, left, right)
    payload_bits = 8 * sum(len(s.data) for s in enc.container.streams)
    assert len(enc.data) == enc.container.header_size() + payload_bits // 8
    assert abs(payload_bits - enc.information_bits) <= 0.01 * enc.information_bits, (payload_bits, enc.information_bits)


def test_modes_come_back(tmp_path) -> None:
    codec = Codec(tiny_weights("bisic-fast"))
    rgb = np.random.default_rng(0).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    gray = Image.fromarray(rgb[:, :, 0], "L")
    rgba = Image.fromarray(np.dstack([rgb, np.full((33, 47), 255, np.uint8)]), "RGBA")
    gray.save(tmp_path / "g.png")
    rgba.save(tmp_path / "a.png")
    lv, rv = read_view(tmp_path / "g.png"), read_view(tmp_path / "a.png")
    assert lv.mode == "L" and rv.mode == "RGBA" and lv.notices and rv.notices
    enc, dec = roundtrip(codec, lv, rv)
    assert [v.mode for v in dec.container.views] == ["L", "RGBA"]


def test_escape_symbols_roundtrip_exactly() -> None:
    rng = np.random.default_rng(1)
    g = np.concatenate([rng.integers(-3, 4, 50), [GAUSSIAN_BOUND, -GAUSSIAN_BOUND - 7, 2**31 - 1, -(2**31)]])
    idx = rng.integers(0, 64, len(g))
    pmfs = np.array([[0.2, 0.6, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
    lengths, minima = np.array([3, 4]), np.array([1, 2])
    tables = categorical_tables(pmfs, lengths)
    cat = np.array([0, 1, -1, 5, -100, 99999, 1, -2])
    rows = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    enc = SymbolEncoder()
    enc.gaussian(g, idx)
    enc.categorical(cat, rows, tables, minima, lengths)
    dec = SymbolDecoder(enc.finish())
    assert np.array_equal(dec.gaussian(idx), g)
    assert np.array_equal(dec.categorical(rows, tables, minima, lengths), cat)
    assert dec.crc == enc.crc


def test_every_byte_flip_and_truncation_is_caught(codec: Codec) -> None:
    pair = need_shared("data", "stereo", "foundation")
    enc = codec.encode(crop_view(pair / "left.png", 20, 30), crop_view(pair / "right.png", 20, 30))
    data = enc.data
    for i in range(len(data)):
        for mask in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises((ContainerError, CodingError)):
                codec.decode(bytes(bad))
    for n in range(len(data)):
        with pytest.raises((ContainerError, CodingError)):
            codec.decode(data[:n])


def test_corrupted_payload_with_valid_crc_never_crashes(codec: Codec) -> None:
    """Damage the container cannot see (CRCs recomputed): a clean error or an image of the right size."""
    pair = need_shared("data", "stereo", "foundation")
    enc = codec.encode(crop_view(pair / "left.png", 40, 50), crop_view(pair / "right.png", 40, 50))
    c = enc.container
    rng = np.random.default_rng(0)
    outcomes = set()
    for trial in range(12):
        streams = []
        for s in c.streams:
            b = bytearray(s.data)
            b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
            streams.append(type(s)(s.name, bytes(b)))
        from dataclasses import replace

        forged = replace(c, streams=tuple(streams)).to_bytes()
        try:
            dec = codec.decode(forged)
            assert dec.left.shape == (40, 50, 3)
            outcomes.add("image")
        except CodingError as e:
            assert "\n" not in str(e)
            outcomes.add("error")
    assert "error" in outcomes  # the symbol checksum catches damaged streams


def test_other_weights_are_refused(codec: Codec) -> None:
    other = Codec(tiny_weights(codec.model.variant, seed=1))
    pair = need_shared("data", "stereo", "foundation")
    enc = codec.encode(crop_view(pair / "left.png", 16, 16), crop_view(pair / "right.png", 16, 16))
    with pytest.raises(ContainerError) as e:
        other.decode(enc.data)
    assert "seed 0" in str(e.value) and "seed 1" in str(e.value)


def test_a_file_from_earlier_shipped_weights_says_where_they_are() -> None:
    """weights/history.json: the BiSIC-Fast weights of commit f3806fe wrote this fingerprint."""
    pair = need_shared("data", "stereo", "foundation")
    codec = Codec(tiny_weights("bisic-fast"))
    enc = codec.encode(crop_view(pair / "left.png", 16, 16), crop_view(pair / "right.png", 16, 16))
    old = bytes.fromhex("bb4f95dbd8a286b928a25a6b55beaa7040bbc15eaa62946f4818ce3ef167462e")
    data = dataclasses.replace(enc.container, weights_fingerprint=old).to_bytes()
    with pytest.raises(ContainerError) as e:
        codec.decode(data)
    assert "git show f3806fe:weights/bisic-fast.safetensors > old.safetensors" in str(e.value)


LEGACY = Path(__file__).parent / "data" / "legacy"


def test_files_from_before_the_bounds_left_the_weights_still_decode(tmp_path) -> None:
    """tests/data/legacy: a file and its decoded views made by commit f3806fe, whose fingerprints
    hashed the constant bounds (float16 in its weights files). Same weights, same pixels today."""
    spec = importlib.util.spec_from_file_location("make_fixture", LEGACY / "make_fixture.py")
    make_fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_fixture)
    save_weights(make_fixture.fixture_model(), tmp_path / "w.safetensors", {"name": "legacy fixture"})
    weights = load_weights(tmp_path / "w.safetensors")
    data = (LEGACY / "pair.sbic").read_bytes()
    assert Container.from_bytes(data).weights_fingerprint != weights.fingerprint
    decoded = Codec(weights).decode(data)
    for side, pixels in (("left", decoded.left), ("right", decoded.right)):
        assert_same_pixels(pixels, np.asarray(Image.open(LEGACY / f"{side}-decoded.png")))


def assert_same_pixels(got: np.ndarray, expected: np.ndarray) -> None:
    """The latents decode exactly; the synthesis transform is float arithmetic whose summation
    order follows the thread count (the fixture was made with two threads, tests run one), so
    a rare pixel may round the other way: at most 1 level on at most 0.1 % of the values."""
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert got.shape == expected.shape and diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (diff.max(), (diff > 0).mean())


def test_newer_format_version_refused(codec: Codec) -> None:
    pair = need_shared("data", "stereo", "foundation")
    data = bytearray(codec.encode(crop_view(pair / "left.png", 8, 8), crop_view(pair / "right.png", 8, 8)).data)
    data[4:6] = (7).to_bytes(2, "little")
    header_len = int.from_bytes(data[6:10], "little")
    data[header_len:header_len + 4] = zlib.crc32(bytes(data[:header_len])).to_bytes(4, "little")
    with pytest.raises(ContainerError, match="version 7"):
        codec.decode(bytes(data))


# ---- the command line, as real subprocesses -------------------------------------------------

@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny-fast.safetensors"
    save_weights(tiny_weights("bisic-fast").model, path, {"name": "tiny fast for tests"})
    return path


@pytest.fixture(scope="module")
def small_pair(tmp_path_factory):
    src = need_shared("data", "stereo", "mb_playtable")
    d = tmp_path_factory.mktemp("pair")
    for v in ("left", "right"):
        Image.open(src / f"{v}.png").convert("RGB").crop((500, 300, 597, 397)).save(d / f"{v}.png")
    return d / "left.png", d / "right.png"


def test_cli_encode_decode_info(tmp_path, weights_file, small_pair) -> None:
    out = tmp_path / "pair.sbic"
    run_cli("encode", *small_pair, "-o", out, "--weights", weights_file, "-q", "4", check=True)
    info = run_cli("info", out, "--json", check=True)
    import json

    report = json.loads(info.stdout)
    assert report["quality"] == 4 and report["width"] == 97 and [s["name"] for s in report["streams"]] == ["z", "y"]
    run_cli("decode", out, "--weights", weights_file, "--left", tmp_path / "l.png", "--right", tmp_path / "r.png", check=True)
    assert Image.open(tmp_path / "l.png").size == (97, 97)
    # no overwrite without --force, and nothing half-written
    assert_clean_error(run_cli("encode", *small_pair, "-o", out, "--weights", weights_file))
    assert_clean_error(run_cli("decode", out, "--weights", weights_file, "--left", tmp_path / "l.png", "--right", tmp_path / "r2.png"))
    assert not (tmp_path / "r2.png").exists()
    run_cli("decode", out, "--weights", weights_file, "-o", tmp_path / "again", check=True)
    assert (tmp_path / "again_left.png").exists() and (tmp_path / "again_right.png").exists()


def test_cli_same_bytes_with_one_and_two_threads(tmp_path, weights_file, small_pair) -> None:
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.sbic"
        run_cli("encode", *small_pair, "-o", out, "--weights", weights_file,
                env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}, check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_cli_bad_inputs(tmp_path, weights_file, small_pair) -> None:
    left, right = small_pair
    sbic = tmp_path / "x.sbic"
    Image.new("RGB", (50, 40)).save(tmp_path / "small.png")
    Image.fromarray(np.full((97, 97), 40000, np.uint16)).save(tmp_path / "deep.png")
    Image.new("RGBA", (97, 97), (1, 2, 3, 100)).save(tmp_path / "alpha.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    for args in (
        (left, tmp_path / "small.png"),
        (left, tmp_path / "deep.png"),
        (left, tmp_path / "alpha.png"),
        (left, tmp_path / "junk.png"),
        (left, tmp_path / "missing.png"),
    ):
        proc = run_cli("encode", *args, "-o", sbic, "--weights", weights_file)
        assert_clean_error(proc)
        assert not sbic.exists()
    run_cli("encode", left, right, "-o", sbic, "--weights", weights_file, check=True)
    data = sbic.read_bytes()
    for i, bad in enumerate((data[:-3], data[:10], b"", data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])):
        path = tmp_path / f"bad{i}.sbic"
        path.write_bytes(bad)
        assert_clean_error(run_cli("decode", path, "--weights", weights_file, "-o", tmp_path / f"d{i}"))
        assert_clean_error(run_cli("info", path))
        assert not (tmp_path / f"d{i}_left.png").exists()
