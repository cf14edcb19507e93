"""MPO files and side-by-side images (stereocodec.io.stereo_formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import join_sbs, write_mpo
from stereocodec.io.images import InputError, View, read_view
from stereocodec.io.stereo_formats import read_mpo, split_sbs


def smooth_view(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth colour image (JPEG keeps it within a few levels), distinct per seed."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 6.28, 3)
    channels = [127 + 100 * np.sin(x / 9 + y / 13 + p) for p in phases]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def mean_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_pillow_made_mpo_reads_as_left_and_right(tmp_path: Path) -> None:
    left, right = smooth_view(0), smooth_view(1)
    path = tmp_path / "camera.mpo"
    Image.fromarray(left).save(path, "MPO", save_all=True, append_images=[Image.fromarray(right)], quality=95)
    lv, rv = read_mpo(path)
    assert lv.pixels.shape == rv.pixels.shape == left.shape and lv.mode == rv.mode == "RGB"
    assert mean_error(lv.pixels, left) < 3 and mean_error(rv.pixels, right) < 3
    assert mean_error(lv.pixels, right) > 20  # the frames are not swapped


def test_camera_style_mpo_reads_as_left_and_right(tmp_path: Path) -> None:
    left, right = smooth_view(2), smooth_view(3)
    path = tmp_path / "pair.mpo"
    write_mpo(path, Image.fromarray(left), Image.fromarray(right))
    lv, rv = read_mpo(path)
    assert mean_error(lv.pixels, left) < 3 and mean_error(rv.pixels, right) < 3


@pytest.mark.parametrize("content", ["one-frame", "garbage", "missing"])
def test_unusable_mpo_is_a_one_line_input_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.mpo"
    if content == "one-frame":
        Image.fromarray(smooth_view(4)).save(path, "JPEG")
    elif content == "garbage":
        path.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError) as info:
        read_mpo(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    if content == "one-frame":
        assert "single image" in message


def test_split_sbs_parallel_and_cross_and_join_back(tmp_path: Path) -> None:
    left, right = smooth_view(5), smooth_view(6)
    path = tmp_path / "sbs.png"
    Image.fromarray(join_sbs(left, right)).save(path)
    whole = read_view(path)
    lv, rv = split_sbs(whole)
    assert np.array_equal(lv.pixels, left) and np.array_equal(rv.pixels, right)
    assert lv.pixels.flags.c_contiguous and rv.pixels.flags.c_contiguous
    cl, cr = split_sbs(whole, cross=True)
    assert np.array_equal(cl.pixels, right) and np.array_equal(cr.pixels, left)
    assert np.array_equal(join_sbs(lv.pixels, rv.pixels), whole.pixels)


def test_split_sbs_keeps_mode_and_refuses_odd_widths() -> None:
    gray = View(np.zeros((4, 10, 3), np.uint8), "L", ("grayscale note",))
    lv, rv = split_sbs(gray)
    assert (lv.mode, rv.mode) == ("L", "L") and lv.notices == ("grayscale note",) and rv.notices == ()
    with pytest.raises(InputError, match="odd width"):
        split_sbs(View(np.zeros((4, 11, 3), np.uint8), "RGB"), label="x.png")
