"""Batch checks before work: stale outputs redone, options and output folder checked once,
unpaired images noted, --sbs suggested."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_clean_error, run_cli
from test_batch import ONE_THREAD, statuses, tree, weights_file  # noqa: F401  (a fixture)
from test_codec import tiny_weights
from stereocodec.batch import CodecSpec, check_writable_dir, plan_batch, unpaired_note
from stereocodec.container import Container
from stereocodec.io.images import InputError
from stereocodec.weights import save_weights
from test_outputs import unwritable_dir


def test_outputs_made_otherwise_are_redone(tmp_path: Path, weights_file: Path) -> None:  # noqa: F811
    """Was: a rerun at another quality, variant or weights kept every old file, 'skipped'."""
    src, out = tree(tmp_path / "in", ["a"]), tmp_path / "out"
    assert statuses(plan_batch(src, out), CodecSpec(weights_file), quality=3) == {"a": "done"}
    assert statuses(plan_batch(src, out), CodecSpec(weights_file), quality=3) == {"a": "skipped"}
    assert statuses(plan_batch(src, out), CodecSpec(weights_file), quality=0) == {"a": "done"}
    assert Container.from_bytes((out / "a.sbic").read_bytes()).quality == 0
    other = tmp_path / "other.safetensors"
    save_weights(tiny_weights("bisic-fast", seed=1).model, other, {"name": "other tiny weights"})
    assert statuses(plan_batch(src, out), CodecSpec(other), quality=0) == {"a": "done"}
    assert Container.from_bytes((out / "a.sbic").read_bytes()).weights_name == "other tiny weights"
    bisic = tmp_path / "bisic.safetensors"
    save_weights(tiny_weights("bisic").model, bisic, {"name": "tiny bisic"})
    assert statuses(plan_batch(src, out), CodecSpec(bisic), quality=0) == {"a": "done"}
    assert Container.from_bytes((out / "a.sbic").read_bytes()).variant == "bisic"


def test_unpaired_images_are_named_and_sbs_suggested(tmp_path: Path) -> None:
    src = tree(tmp_path / "in", ["a"])
    Image.new("RGB", (40, 30)).save(src / "lonely.png")
    assert plan_batch(src, tmp_path / "o").note == f"1 image(s) under {src} are in no stereo pair and are not coded (e.g. lonely.png)"
    wide = tmp_path / "wide"
    wide.mkdir()
    Image.new("RGB", (80, 30)).save(wide / "tv.png")
    assert "add --sbs" in unpaired_note(wide, 1, [wide / "tv.png"], False)
    assert "add --sbs" not in unpaired_note(src, 1, [src / "lonely.png"], False)
    with pytest.raises(InputError, match="cannot write there"):
        check_writable_dir(unwritable_dir(tmp_path) / "out")


def test_batch_cli_checks_before_work(tmp_path: Path, weights_file: Path) -> None:  # noqa: F811
    src = tree(tmp_path / "in", ["a", "b"])
    Image.new("RGB", (40, 30)).save(src / "lonely.png")
    proc = run_cli("batch", src, "-o", tmp_path / "o", "--weights", weights_file, "-q", "9", env=ONE_THREAD)
    assert_clean_error(proc)  # was: one failure per pair
    assert "quality must be between 0 and 5" in proc.stderr and not (tmp_path / "o").exists()
    proc = run_cli("batch", src, "-o", unwritable_dir(tmp_path) / "o", "--weights", weights_file, env=ONE_THREAD)
    assert_clean_error(proc)  # was: found after every pair was encoded
    assert "cannot write there" in proc.stderr
    wide = tmp_path / "wide"
    wide.mkdir()
    Image.new("RGB", (80, 30)).save(wide / "tv.png")
    proc = run_cli("batch", wide, "-o", tmp_path / "o2", env=ONE_THREAD)
    assert_clean_error(proc)
    assert "look like side-by-side pairs: add --sbs" in proc.stderr
    proc = run_cli("batch", src, "-o", tmp_path / "o3", "--weights", weights_file, env=ONE_THREAD, check=True)
    assert "1 image(s) under" in proc.stderr and "lonely.png" in proc.stderr
