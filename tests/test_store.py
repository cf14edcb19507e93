"""The weights store: files outlive weights (stereocodec.store, `ship-weights`, package data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_clean_error, run_cli
from test_codec import tiny_weights
from stereocodec.codec import Codec
from stereocodec.container import Container
from stereocodec.store import MANIFEST, add_version, default_entry, find, load_for, load_stored, manifest
from stereocodec.weights import WeightsError, load_weights, save_weights

FIXTURES = ROOT / "tests" / "data" / "store"
STORE = ROOT / "stereocodec" / "weights_store"


def assert_same_pixels(stem: str, left: np.ndarray, right: np.ndarray) -> None:
    """The views a fixture decoded to when it was made. The latents are exact (decode checks the
    file's symbol checksum); the synthesis transform's float sums may round a few values in 10^4
    one level apart on another CPU or thread count. Other weights differ by tens of levels."""
    for side, got in (("left", left), ("right", right)):
        want = np.asarray(Image.open(FIXTURES / f"{stem}-{side}.png")).astype(int)
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (stem, side, diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: e.file)
def test_every_stored_version_decodes_its_fixture(entry) -> None:
    """tests/data/store holds a file made with each stored version (make_fixtures.py writes missing
    ones); the weights found by the file's fingerprint give the same pixels, whatever the default."""
    stem = Path(entry.file).stem
    data = (FIXTURES / f"{stem}.sbic").read_bytes()
    header = Container.from_bytes(data)
    assert find(header.weights_fingerprint) == entry
    loaded = load_for(header.variant, header.weights_fingerprint)
    assert loaded.fingerprint.hex() == entry.fingerprint and loaded.name == entry.name
    decoded = Codec(loaded).decode(data)
    assert_same_pixels(stem, decoded.left, decoded.right)


def test_manifest_is_consistent() -> None:
    entries = manifest()
    assert len({e.fingerprint for e in entries}) == len({e.file for e in entries}) == len(entries)
    for variant in ("bisic-fast", "bisic"):
        assert default_entry(variant).variant == variant
    assert default_entry("bisic-fast").training_steps >= 25451 and default_entry("bisic").training_steps >= 20920
    for entry in entries:
        assert (STORE / entry.file).is_file()


def test_shipped_defaults_load_and_match_the_manifest() -> None:
    for variant in ("bisic-fast", "bisic"):
        entry = default_entry(variant)
        loaded = load_stored(entry)
        assert loaded.model.variant == variant and loaded.metadata["training_steps"] == entry.training_steps


def copy_package(dest: Path) -> Path:
    """A runnable copy of the package (its store included) under `dest`, for PYTHONPATH."""
    shutil.copytree(ROOT / "stereocodec", dest / "stereocodec", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run_from(pythonpath: Path, cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """`python -m stereocodec ...` importing the package under `pythonpath`, from `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    env.pop("STEREOCODEC_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "stereocodec", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def imported_from(pythonpath: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    code = "import stereocodec; print(stereocodec.__file__)"
    return Path(subprocess.run([sys.executable, "-c", code], env=env, cwd=pythonpath, capture_output=True, text=True, check=True).stdout.strip())


def test_files_decode_after_new_weights_ship(tmp_path) -> None:
    """Ship new default weights into a copy of the package: files made with every earlier version
    still decode, by the CLI with no --weights, to the same pixels; encode uses the new weights."""
    pkg = copy_package(tmp_path / "pkg")
    new = tmp_path / "new.safetensors"
    save_weights(tiny_weights("bisic-fast").model, new, {"name": "tiny next release", "training_steps": 99999, "date": "2030-01-01"})
    before = manifest()
    entry = add_version(new, pkg / "stereocodec" / "weights_store")
    entries = json.loads((pkg / "stereocodec" / "weights_store" / MANIFEST).read_text())
    assert [e["file"] for e in entries] == [e.file for e in before] + ["bisic-fast-step99999.safetensors"]
    fast = [e["default"] for e in entries if e["variant"] == "bisic-fast"]
    assert fast == [False] * (len(fast) - 1) + [True]
    assert [e["default"] for e in entries if e["variant"] == "bisic"] == [e.default for e in before if e.variant == "bisic"]
    assert entry.default and entry.name == "tiny next release"
    with pytest.raises(WeightsError, match="already in the store"):
        add_version(new, pkg / "stereocodec" / "weights_store")
    assert imported_from(pkg) == pkg / "stereocodec" / "__init__.py"
    work = tmp_path / "work"
    work.mkdir()
    for old in before:
        stem = Path(old.file).stem
        proc = run_from(pkg, work, "decode", FIXTURES / f"{stem}.sbic", "-o", work / stem)
        assert proc.returncode == 0, proc.stderr
        assert_same_pixels(stem, *(np.asarray(Image.open(work / f"{stem}_{side}.png")) for side in ("left", "right")))
    proc = run_from(pkg, work, "encode", FIXTURES / f"{stem}-left.png", FIXTURES / f"{stem}-right.png", "-o", work / "n.sbic")
    assert proc.returncode == 0, proc.stderr
    assert Container.from_bytes((work / "n.sbic").read_bytes()).weights_name == "tiny next release"


def test_wheel_carries_the_store(tmp_path) -> None:
    """A wheel, unpacked elsewhere, encodes and decodes the example pair with no --weights."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    copy_package(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", src],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("stereo_codec-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert {f"stereocodec/weights_store/{e.file}" for e in manifest()} <= set(names)
        z.extractall(site)
    assert imported_from(site) == site / "stereocodec" / "__init__.py"
    work = tmp_path / "elsewhere"
    work.mkdir()
    examples = ROOT / "examples"
    proc = run_from(site, work, "encode", examples / "left.png", examples / "right.png", "-o", "pair.sbic")
    assert proc.returncode == 0, proc.stderr
    proc = run_from(site, work, "decode", "pair.sbic")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(work / "pair_left.png").size == Image.open(examples / "left.png").size


def test_estimate_defaults_to_the_shipped_weights_and_env_points_elsewhere(tmp_path) -> None:
    stem = Path(manifest()[0].file).stem
    views = FIXTURES / f"{stem}-left.png", FIXTURES / f"{stem}-right.png"
    report = json.loads(run_cli("estimate", *views, "--json", check=True).stdout)
    assert report["weights"] == default_entry("bisic-fast").name
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights\n")
    proc = run_cli("estimate", *views, env={"STEREOCODEC_WEIGHTS": str(text)})
    assert_clean_error(proc)
    assert "notes.safetensors" in proc.stderr


def test_an_int8_delta_ships_only_after_its_base(tmp_path) -> None:
    """An int8-delta export names the whole file it counts from: shipping refuses it until that file is
    in the store, then the stored file loads (its base beside it) to the export's exact values."""
    store = tmp_path / "store"
    store.mkdir()
    (store / MANIFEST).write_text("[]\n")
    base = tmp_path / "bisic-fast-step10.safetensors"  # the name the store gives it, which the delta records
    save_weights(tiny_weights("bisic-fast").model, base, {"name": "tiny base", "training_steps": 10})
    model = tiny_weights("bisic-fast", seed=1).model  # other values: every tensor differs from the base
    delta = tmp_path / "delta.safetensors"
    save_weights(model, delta, {"name": "tiny delta", "training_steps": 20}, encoding="int8-delta", reference=base)
    with pytest.raises(WeightsError, match="which is not in the store; ship that first"):
        add_version(delta, store)
    assert add_version(base, store).file == base.name
    entry = add_version(delta, store)
    assert entry.file == "bisic-fast-step20.safetensors" and entry.default
    stored = load_weights(store / entry.file)
    assert stored.fingerprint.hex() == entry.fingerprint == load_weights(delta, search=(store,)).fingerprint.hex()
