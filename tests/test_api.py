"""The public Python API: the CLI's bytes and pixels, every input form, one error family, threads.

Real encodes with the shipped weights on a 96x64 crop of a shared pair; the CLI runs as a real
subprocess. The full-size pairs are benchmarks/api_parity.py (too slow for the suite).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stereocodec
from conftest import need_shared, run_cli

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the CLI beside the test process on a 2-core machine
CROP = (400, 300, 496, 364)  # 96 x 64, a textured part of mb_playtable


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """The crop's two views as PNG files."""
    src = need_shared("data", "stereo", "mb_playtable")
    folder = tmp_path_factory.mktemp("pair")
    for side in ("left", "right"):
        Image.open(src / f"{side}.png").convert("RGB").crop(CROP).save(folder / f"{side}.png")
    return folder / "left.png", folder / "right.png"


@pytest.fixture(scope="module")
def arrays(pair) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(Image.open(pair[0])), np.asarray(Image.open(pair[1]))


@pytest.fixture(scope="module")
def codec() -> stereocodec.Codec:
    return stereocodec.Codec()


def cli_encode(out: Path, *args: str | Path) -> bytes:
    run_cli("encode", *args, "-o", out, "--force", env=ONE_THREAD, check=True)
    return out.read_bytes()


def cli_decode(sbic: Path, prefix: Path) -> tuple[np.ndarray, np.ndarray]:
    run_cli("decode", sbic, "-o", prefix, "--force", env=ONE_THREAD, check=True)
    return tuple(np.asarray(Image.open(f"{prefix}_{side}.png")) for side in ("left", "right"))


@pytest.mark.parametrize("variant", ["bisic-fast", "bisic"])
@pytest.mark.parametrize("quality", [0, 2.5, 5])
def test_api_bytes_are_the_cli_bytes_and_decode_its_pixels(tmp_path, pair, variant: str, quality: float) -> None:
    cli = cli_encode(tmp_path / "cli.sbic", *pair, "--variant", variant, "-q", str(quality))
    data = stereocodec.encode(*pair, quality=quality, variant=variant)
    assert data == cli
    assert stereocodec.info(data).quality == quality and stereocodec.info(data).variant == variant
    if quality == 2.5:  # one CLI decode per variant keeps the suite short
        left, right = stereocodec.decode(tmp_path / "cli.sbic")
        cli_left, cli_right = cli_decode(tmp_path / "cli.sbic", tmp_path / "dec")
        assert np.array_equal(left, cli_left) and np.array_equal(right, cli_right)
        assert left.shape == (64, 96, 3) and left.dtype == np.uint8


def test_arrays_images_and_paths_give_the_same_bytes(codec, pair, arrays) -> None:
    from_paths = codec.encode(*pair, quality=1)
    assert codec.encode(str(pair[0]), str(pair[1]), quality=1) == from_paths
    assert codec.encode(*arrays, quality=1) == from_paths
    assert codec.encode(Image.open(pair[0]), Image.open(pair[1]), quality=1) == from_paths
    strided = np.zeros((64, 192, 3), np.uint8)
    strided[:, ::2] = arrays[0]
    assert codec.encode(strided[:, ::2], arrays[1], quality=1) == from_paths  # a non-contiguous view of an array


def test_grayscale_and_rgba_inputs_are_the_cli_bytes_and_come_back_in_their_modes(tmp_path, pair, arrays) -> None:
    gray = np.asarray(Image.fromarray(arrays[0]).convert("L"))
    rgba = np.dstack([arrays[1], np.full(arrays[1].shape[:2], 255, np.uint8)])
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    cli = cli_encode(tmp_path / "cli.sbic", tmp_path / "gray.png", tmp_path / "rgba.png", "-q", "3")
    with pytest.warns(stereocodec.Notice) as notes:
        data = stereocodec.encode(gray, rgba, quality=3)
    assert data == cli
    assert [str(n.message) for n in notes] == ["left: grayscale, coded as RGB and returned as grayscale",
                                                "right: opaque alpha channel dropped for coding, restored on decode"]
    assert stereocodec.info(data).modes == ("L", "RGBA")
    left, right = stereocodec.decode(data)
    assert left.shape == (64, 96) and right.shape == (64, 96, 4) and (right[..., 3] == 255).all()
    cli_left, cli_right = cli_decode(tmp_path / "cli.sbic", tmp_path / "dec")
    assert np.array_equal(left, cli_left) and np.array_equal(right, cli_right)


def test_info_is_what_the_cli_prints(tmp_path, codec, pair) -> None:
    path = tmp_path / "pair.sbic"
    path.write_bytes(codec.encode(*pair, quality=2.25))
    printed = json.loads(run_cli("info", path, "--json", env=ONE_THREAD, check=True).stdout)
    assert json.loads(json.dumps(asdict(stereocodec.info(path)))) == printed
    assert stereocodec.info(path.read_bytes()).file is None and stereocodec.info(path).file == str(path)


def test_budgets_and_targets(codec, pair) -> None:
    best = codec.encode(*pair, quality=5)
    assert codec.encode(*pair, size=100_000_000) == best == codec.encode(*pair, bpp=20)  # a ceiling the best file is under
    data = codec.encode(*pair, size=1000)
    assert 970 <= len(data) <= 1000 and data == stereocodec.encode(*pair, size=1000)


def test_one_codec_codes_many_pairs_with_one_network(codec, pair, arrays) -> None:
    other = tuple(np.ascontiguousarray(np.rot90(a)[:80, :50]) for a in arrays)  # another size and content
    files = [codec.encode(*pair, quality=q) for q in (0, 4)] + [codec.encode(*other, quality=2)]
    assert files[2] == stereocodec.encode(*other, quality=2)
    assert np.array_equal(codec.decode(files[2])[0], stereocodec.decode(files[2])[0])
    assert codec.decode(files[2])[0].shape == (80, 50, 3) and codec.decode(files[0])[0].shape == (64, 96, 3)
    assert len(codec._engines) == 1  # its own files decode with the network that encoded them


def test_one_codec_from_several_threads_gives_the_serial_results(codec, arrays) -> None:
    """Plain encodes and decodes run at once; a refined encode waits for them and runs alone."""
    crops = [tuple(np.ascontiguousarray(a[:, i * 8:i * 8 + 64]) for a in arrays) for i in range(4)]
    serial = [codec.encode(*crop, quality=i) for i, crop in enumerate(crops)]
    refined = codec.encode(*crops[0], quality=3, refine=3)
    decoded = [codec.decode(data) for data in serial]
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def work(name: str, call) -> None:
        try:
            results[name] = call()
        except BaseException as e:  # reported below: a failing thread must fail the test
            errors.append(e)

    jobs = {f"encode {i}": (lambda i=i: codec.encode(*crops[i], quality=i)) for i in range(4)}
    jobs |= {f"decode {i}": (lambda i=i: codec.decode(serial[i])) for i in range(4)}
    jobs["refine"] = lambda: codec.encode(*crops[0], quality=3, refine=3)
    threads = [threading.Thread(target=work, args=job) for job in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [results[f"encode {i}"] for i in range(4)] == serial and results["refine"] == refined
    for i in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(results[f"decode {i}"], decoded[i]))


def test_every_user_error_is_one_line_of_the_error_family(tmp_path, capfd, codec, pair, arrays) -> None:
    """Never SystemExit, never a print: an `Error` subclass with a one-line message."""
    left, right = arrays
    data = codec.encode(*pair, quality=0)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    (tmp_path / "folder.sbic").mkdir()
    transparent = np.dstack([left, np.full(left.shape[:2], 100, np.uint8)])
    cases = [
        (lambda: codec.encode(left, right, quality=7), stereocodec.InputError, "between 0 and 5"),
        (lambda: codec.encode(left, right, quality=-0.5), stereocodec.InputError, "between 0 and 5"),
        (lambda: codec.encode(left, right, quality="3"), stereocodec.InputError, "must be a number"),
        (lambda: codec.encode(left, right, quality=float("nan")), stereocodec.InputError, "must be a number"),
        (lambda: codec.encode(left.astype(np.uint16), right), stereocodec.InputError, "uint16 pixels"),
        (lambda: codec.encode(left / 255, right), stereocodec.InputError, "float64 pixels"),
        (lambda: codec.encode(left[..., :2], right), stereocodec.InputError, "shape (64, 96, 2)"),
        (lambda: codec.encode(left[None], right), stereocodec.InputError, "shape (1, 64, 96, 3)"),
        (lambda: codec.encode(left[:0], right), stereocodec.InputError, "empty view"),
        (lambda: codec.encode(left, b"not a view"), stereocodec.InputError, "not bytes"),
        (lambda: codec.encode(left, right[:32]), stereocodec.InputError, "must have the same size"),
        (lambda: codec.encode(transparent, right), stereocodec.InputError, "transparent pixels"),
        (lambda: codec.encode(tmp_path / "missing.png", right), stereocodec.InputError, "no such file"),
        (lambda: codec.encode(left, right, size=1000, psnr=30), stereocodec.InputError, "give one target"),
        (lambda: codec.encode(left, right, quality=2, size=1000), stereocodec.InputError, "either --quality or a target"),
        (lambda: codec.encode(left, right, size=0), stereocodec.InputError, "must be positive"),
        (lambda: codec.encode(left, right, size=1000.5), stereocodec.InputError, "whole number of bytes"),
        (lambda: codec.encode(left, right, size=1000, refine=10), stereocodec.InputError, "--refine goes with --quality"),
        (lambda: codec.encode(left, right, size=10), stereocodec.TargetError, "the smallest file"),
        (lambda: codec.encode(left, right, psnr=90), stereocodec.TargetError, "the highest quality (5) reaches"),
        (lambda: stereocodec.encode(left, right, max_pixels=1000), stereocodec.InputError, "exceed the limit"),
        (lambda: stereocodec.encode(left, right, variant="bisic-slow"), stereocodec.InputError, "unknown variant"),
        (lambda: stereocodec.encode(left, right, device="tpu"), stereocodec.InputError, "unknown device"),
        (lambda: stereocodec.encode(left, right, weights=tmp_path / "none.safetensors"), stereocodec.WeightsError, "not found"),
        (lambda: stereocodec.decode(bytes(flipped)), stereocodec.ContainerError, "CRC"),
        (lambda: stereocodec.decode(data[:-3]), stereocodec.ContainerError, "truncated"),
        (lambda: stereocodec.decode(data[:10]), stereocodec.ContainerError, "truncated"),
        (lambda: stereocodec.decode(b""), stereocodec.ContainerError, ""),
        (lambda: stereocodec.decode(data, max_pixels=1000), stereocodec.InputError, "exceed the limit"),
        (lambda: stereocodec.decode(tmp_path / "missing.sbic"), stereocodec.InputError, "no such file"),
        (lambda: stereocodec.decode(tmp_path / "folder.sbic"), stereocodec.InputError, "is a directory"),
        (lambda: stereocodec.decode(12), stereocodec.InputError, "bytes or a path"),
        (lambda: stereocodec.info(data[:-3]), stereocodec.ContainerError, "truncated"),
        (lambda: stereocodec.info(tmp_path / "missing.sbic"), stereocodec.InputError, "no such file"),
    ]
    for call, kind, said in cases:
        with pytest.raises(stereocodec.Error) as caught:
            call()
        message = str(caught.value)
        assert isinstance(caught.value, kind), (said, type(caught.value), message)
        assert said in message and message.strip() and "\n" not in message, (said, message)
    assert stereocodec.Error is stereocodec.StereoCodecError and issubclass(stereocodec.Error, ValueError)
    assert capfd.readouterr() == ("", "")


def test_import_loads_no_torch_and_info_needs_none(pair, tmp_path) -> None:
    """`import stereocodec` and `info` in a fresh process, which has not imported torch."""
    path = tmp_path / "pair.sbic"
    path.write_bytes(stereocodec.encode(*pair, quality=0))
    script = ("import sys, stereocodec; print('torch' in sys.modules); "
              f"print(stereocodec.info({str(path)!r}).width, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.split() == ["False", "96", "False"]
    assert {"encode", "decode", "info", "Codec", "Error", "InputError"} <= set(dir(stereocodec))


def test_notices_are_warnings_that_can_be_silenced(codec, arrays) -> None:
    gray = np.ascontiguousarray(arrays[0][..., 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", stereocodec.Notice)
        with pytest.raises(stereocodec.Notice, match="left: grayscale"):
            codec.encode(gray, gray)
        warnings.simplefilter("ignore", stereocodec.Notice)
        assert stereocodec.info(codec.encode(gray, gray, quality=0)).modes == ("L", "L")
