"""Size limits before work: declared and input sizes, free memory, plausible stream lengths."""

from __future__ import annotations

import dataclasses
import time

import pytest

from conftest import ROOT, assert_clean_error, need_archive, run_cli
from stereocodec.codec import Codec
from stereocodec.container import Container, ContainerError, ViewInfo
from stereocodec.io.images import InputError, padded_size
from stereocodec.limits import BYTES_PER_PIXEL, DEFAULT_MAX_PIXELS, check_size, free_memory, min_y_bytes
from stereocodec.store import load_stored, manifest

FIXTURE = ROOT / "tests" / "data" / "store" / "bisic-fast-step25451.sbic"  # its weights are in the weights archive


def declaring(size: tuple[int, int]) -> bytes:
    """The fixture with its header edited to declare views of `size` (h, w), CRCs recomputed."""
    c = Container.from_bytes(FIXTURE.read_bytes())
    ph, pw = padded_size(*size)
    views = tuple(ViewInfo(*size, v.mode) for v in c.views)
    return dataclasses.replace(c, views=views, padded_height=ph, padded_width=pw).to_bytes()


def test_decompression_bomb_refused_before_any_work(tmp_path) -> None:
    need_archive()
    bomb = tmp_path / "bomb.sbic"
    bomb.write_bytes(declaring((65000, 65000)))
    start = time.perf_counter()
    proc = run_cli("decode", bomb)
    assert_clean_error(proc)
    assert proc.returncode == 1 and "65000x65000" in proc.stderr and "--max-pixels" in proc.stderr
    assert time.perf_counter() - start < 30  # was: 10 s of network, then internal error (MemoryError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.sbic"]


@pytest.fixture(scope="module")
def codec() -> Codec:
    need_archive()
    made_it = next(e for e in manifest() if e.file == FIXTURE.with_suffix(".safetensors").name)  # the fixture's weights
    return Codec(load_stored(made_it), max_pixels=65535 * 65535)


@pytest.mark.parametrize("size", [(20000, 20000), (65000, 65000), (4096, 4096)])
def test_streams_too_short_for_the_declared_size(codec: Codec, size: tuple[int, int]) -> None:
    """With the pixel limit raised, a 350-byte file still cannot hold 4096x4096 views."""
    with pytest.raises(ContainerError, match="fewer than the .* any .* pair needs"):
        codec.decode(declaring(size))


def test_real_files_are_far_above_the_stream_bound() -> None:
    c = Container.from_bytes(FIXTURE.read_bytes())
    assert 0 < min_y_bytes(4096, 4096, 48) < 1000 and min_y_bytes(c.padded_height, c.padded_width, 48) <= len(c.streams[1].data)


def test_default_pixel_limit_and_memory() -> None:
    with pytest.raises(InputError, match=r"20000x20000 \(400.0 MP each\) exceed .*--max-pixels 400000000"):
        check_size(20000, 20000, "bisic-fast", "cpu", None)
    check_size(20000, 20000, "bisic-fast", "cpu", 400_000_000)  # the user's choice: no memory check
    free = free_memory()
    assert free is None or free > 0
    side = int((free or 0) / BYTES_PER_PIXEL["bisic"]) ** 0.5 + 64 if free else 0
    if not free or side * side > DEFAULT_MAX_PIXELS:
        pytest.skip("this machine's free memory holds any view within the default pixel limit")
    with pytest.raises(InputError, match="GiB of memory for bisic, more than the .* free; --max-pixels"):
        check_size(int(side), int(side), "bisic", "cpu", None)


def test_encode_refuses_a_large_input(tmp_path) -> None:
    views = [ROOT / "tests" / "data" / "store" / f"bisic-fast-step25451-{s}.png" for s in ("left", "right")]
    proc = run_cli("encode", *views, "-o", tmp_path / "x.sbic", "--max-pixels", "4000")
    assert_clean_error(proc)
    assert "64x64" in proc.stderr and "--max-pixels 4096" in proc.stderr
    assert not (tmp_path / "x.sbic").exists()
