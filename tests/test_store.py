"""The weights store: files outlive weights (stereocodec.store, `ship-weights`, package data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, assert_clean_error, need_archive, run_cli
from test_codec import tiny_weights
from stereocodec.codec import Codec
from stereocodec.container import Container
from stereocodec.store import (ARCHIVE_FOLDER, ARCHIVE_PACKAGE, MANIFEST, StoredWeights, add_version, default_entry, find,
                               load_for, load_stored, manifest, package_files)
from stereocodec.weights import WeightsError, load_weights, save_weights

FIXTURES = ROOT / "tests" / "data" / "store"
STORE = ROOT / "stereocodec" / "weights_store"
ARCHIVE = ROOT / ARCHIVE_FOLDER / ARCHIVE_PACKAGE
WHEEL_LIMIT = 60 * 10**6  # bytes: what a package index takes without asking (100 MB), with room for the next default


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
    if not (STORE / entry.file).is_file():
        need_archive()
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
        assert (STORE / entry.file).is_file() != (ARCHIVE / entry.file).is_file(), entry.file


def stored(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.safetensors")}


def test_the_package_carries_only_the_defaults_and_their_bases() -> None:
    """The rule that keeps the wheel small: the package's store holds each variant's default and the
    whole file it counts from, the archive every other version the manifest lists, nothing else anywhere."""
    keep = package_files(manifest(), (STORE,))
    assert {default_entry(v).file for v in ("bisic-fast", "bisic")} <= keep
    assert stored(STORE) == keep, "run stereocodec.store.arrange(STORE, ARCHIVE) (ship-weights does)"
    assert stored(ARCHIVE) == {e.file for e in manifest()} - keep


def test_shipped_defaults_load_and_match_the_manifest() -> None:
    for variant in ("bisic-fast", "bisic"):
        entry = default_entry(variant)
        loaded = load_stored(entry)
        assert loaded.model.variant == variant and loaded.metadata["training_steps"] == entry.training_steps


def copy_package(dest: Path) -> Path:
    """A runnable copy of the package (its store included) under `dest`, for PYTHONPATH."""
    shutil.copytree(ROOT / "stereocodec", dest / "stereocodec", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def copy_archive(dest: Path) -> Path:
    """A copy of the archive distribution's folder (pyproject.toml and package) at `dest`."""
    shutil.copytree(ROOT / ARCHIVE_FOLDER, dest, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    return dest


def run_from(pythonpath: Path | str, cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """`python -m stereocodec ...` importing the package under `pythonpath`, from `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}
    env.pop("STEREOCODEC_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "stereocodec", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def imported_from(pythonpath: Path | str, module: str = "stereocodec") -> Path:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    code = f"import {module}; print({module}.__file__)"
    return Path(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT / "tests", capture_output=True, text=True, check=True).stdout.strip())


def test_files_decode_after_new_weights_ship(tmp_path) -> None:
    """Ship new default weights into a copy of the checkout: the previous default, no longer needed,
    moves to the archive; files made with every earlier version still decode, by the CLI with no
    --weights, to the same pixels; encode uses the new weights."""
    pkg = copy_package(tmp_path / "pkg")
    archive = copy_archive(pkg / ARCHIVE_FOLDER)
    store = pkg / "stereocodec" / "weights_store"
    new = tmp_path / "new.safetensors"
    save_weights(tiny_weights("bisic-fast").model, new, {"name": "tiny next release", "training_steps": 99999, "date": "2030-01-01"})
    before = manifest()
    entry = add_version(new, store)  # the archive beside it, as in a clone
    entries = json.loads((store / MANIFEST).read_text())
    assert [e["file"] for e in entries] == [e.file for e in before] + ["bisic-fast-step99999.safetensors"]
    fast = [e["default"] for e in entries if e["variant"] == "bisic-fast"]
    assert fast == [False] * (len(fast) - 1) + [True]
    assert [e["default"] for e in entries if e["variant"] == "bisic"] == [e.default for e in before if e.variant == "bisic"]
    assert entry.default and entry.name == "tiny next release"
    bisic = package_files([e for e in before if e.variant == "bisic"], (STORE,))
    assert stored(store) == {entry.file} | bisic  # the tiny default counts from no base
    assert stored(archive / ARCHIVE_PACKAGE) == {e.file for e in before} - bisic
    with pytest.raises(WeightsError, match="already in the store"):
        add_version(new, store)
    path = f"{pkg}{os.pathsep}{archive}"
    assert imported_from(path) == pkg / "stereocodec" / "__init__.py"
    assert imported_from(path, ARCHIVE_PACKAGE) == archive / ARCHIVE_PACKAGE / "__init__.py"
    work = tmp_path / "work"
    work.mkdir()
    for old in before:
        stem = Path(old.file).stem
        proc = run_from(path, work, "decode", FIXTURES / f"{stem}.sbic", "-o", work / stem)
        assert proc.returncode == 0, proc.stderr
        assert_same_pixels(stem, *(np.asarray(Image.open(work / f"{stem}_{side}.png")) for side in ("left", "right")))
    proc = run_from(path, work, "encode", FIXTURES / f"{stem}-left.png", FIXTURES / f"{stem}-right.png", "-o", work / "n.sbic")
    assert proc.returncode == 0, proc.stderr
    assert Container.from_bytes((work / "n.sbic").read_bytes()).weights_name == "tiny next release"


def test_shipping_keeps_only_what_the_defaults_need_in_the_package(tmp_path) -> None:
    """Each ship rearranges the two folders: a default no longer needed moves to the archive, an archived
    whole file a new int8-delta default counts from moves back, an extra version goes to the archive."""
    store, archive = tmp_path / "store", tmp_path / "archive"
    store.mkdir()
    archive.mkdir()
    (store / MANIFEST).write_text("[]\n")
    exported = tmp_path / "exported"
    exported.mkdir()

    def ship(variant: str, seed: int, steps: int, default: bool = True, **delta) -> StoredWeights:
        path = exported / f"{variant}-step{steps}.safetensors"  # the name the store gives it, which a delta records
        save_weights(tiny_weights(variant, seed=seed).model, path, {"name": f"tiny {steps}", "training_steps": steps}, **delta)
        return add_version(path, store, default=default, archive_dir=archive)

    ship("bisic-fast", 0, 10)
    ship("bisic", 0, 11)
    assert stored(store) == {"bisic-fast-step10.safetensors", "bisic-step11.safetensors"} and not stored(archive)
    ship("bisic-fast", 1, 20)
    assert stored(store) == {"bisic-fast-step20.safetensors", "bisic-step11.safetensors"}
    assert stored(archive) == {"bisic-fast-step10.safetensors"}
    ship("bisic-fast", 2, 30, encoding="int8-delta", reference=exported / "bisic-fast-step10.safetensors")
    assert stored(store) == {"bisic-fast-step30.safetensors", "bisic-fast-step10.safetensors", "bisic-step11.safetensors"}
    assert stored(archive) == {"bisic-fast-step20.safetensors"}
    ship("bisic", 1, 40, default=False)
    assert stored(archive) == {"bisic-fast-step20.safetensors", "bisic-step40.safetensors"}
    entries = [StoredWeights(**e) for e in json.loads((store / MANIFEST).read_text())]
    assert stored(store) == package_files(entries, (store,))
    for entry in entries:  # every version still loads, whichever folder holds it (a delta's base found in the store)
        folder = store if (store / entry.file).is_file() else archive
        assert load_weights(folder / entry.file, search=(store, archive)).fingerprint.hex() == entry.fingerprint


def test_shipping_needs_the_archive_folder(tmp_path) -> None:
    store = tmp_path / "pkg" / "stereocodec" / "weights_store"
    store.mkdir(parents=True)
    (store / MANIFEST).write_text("[]\n")
    new = tmp_path / "new.safetensors"
    save_weights(tiny_weights("bisic-fast").model, new, {"name": "tiny", "training_steps": 5})
    proc = run_cli("ship-weights", new, "--store", store)
    assert_clean_error(proc)
    assert str(tmp_path / "pkg" / ARCHIVE_FOLDER / ARCHIVE_PACKAGE) in proc.stderr and "--archive" in proc.stderr
    assert json.loads((store / MANIFEST).read_text()) == []
    (tmp_path / "pkg" / ARCHIVE_FOLDER / ARCHIVE_PACKAGE).mkdir(parents=True)
    proc = run_cli("ship-weights", new, "--store", store)
    assert proc.returncode == 0, proc.stderr
    assert stored(store) == {"bisic-fast-step5.safetensors"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The stereo-codec wheel, built from a copy of the checkout (`pip wheel .`, offline)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    copy_package(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp / "dist", src],
                   check=True, capture_output=True, timeout=600)
    (built,) = (tmp / "dist").glob("stereo_codec-*.whl")
    return built


def make_venv(dest: Path) -> Path:
    """A fresh virtual environment that sees this one's third-party packages (torch, pip, setuptools)
    but not stereo-codec or its weights archive, however they are installed here; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", dest], check=True, timeout=120)
    deps = dest / "deps"
    deps.mkdir()
    for item in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not item.name.startswith(("stereocodec", "stereo_codec", "__editable__")) and item.suffix != ".pth":
            (deps / item.name).symlink_to(item)
    python = dest / "bin" / "python"
    site = in_venv(python, dest, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(site) / "deps.pth").write_text(f"{deps}\n")
    return python


def in_venv(python: Path, cwd: Path, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python` with `args` (or, given "stereo-codec" first, the environment's command) from `cwd`,
    with nothing of this process's PYTHONPATH or weights choice."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STEREOCODEC_WEIGHTS")}
    cmd = [python.parent / "stereo-codec", *args[1:]] if args[0] == "stereo-codec" else [python, *args]
    proc = subprocess.run(list(map(str, cmd)), cwd=cwd, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc


def pip_install(python: Path, *args: str | Path) -> None:
    """`pip install` into the environment of `python`, offline."""
    in_venv(python, python.parent, "-m", "pip", "install", "--no-deps", "--no-index", "-q", *args)


# Decode every .sbic in argv[1] as `stereo-codec decode` picks weights (by the file's fingerprint), into argv[2].
DECODE_ALL = """
import sys
from pathlib import Path
import torch
from PIL import Image
from stereocodec.codec import Codec
from stereocodec.container import Container
from stereocodec.store import load_chosen
torch.set_num_threads(1)
for path in sorted(Path(sys.argv[1]).glob("*.sbic")):
    data = path.read_bytes()
    header = Container.from_bytes(data)
    decoded = Codec(load_chosen(None, header.variant, header.weights_fingerprint)).decode(data)
    for side, pixels in (("left", decoded.left), ("right", decoded.right)):
        Image.fromarray(pixels).save(Path(sys.argv[2]) / f"{path.stem}_{side}.png")
"""


def test_the_wheel_is_small_and_carries_what_the_defaults_need(wheel: Path) -> None:
    assert wheel.stat().st_size < WHEEL_LIMIT, f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB"
    with zipfile.ZipFile(wheel) as z:
        weights = {Path(n).name for n in z.namelist() if n.startswith("stereocodec/weights_store/")}
        assert not [n for n in z.namelist() if n.endswith(".safetensors") and not n.startswith("stereocodec/weights_store/")]
    assert weights == {MANIFEST, "history.json"} | package_files(manifest(), (STORE,))


def test_a_wheel_install_decodes_the_defaults_and_names_the_step_for_older_files(wheel: Path, tmp_path) -> None:
    """Installed from the wheel alone: encode and decode with the defaults, no --weights; a file made by
    archived weights is refused in one line that names them and the step; after that one step (the
    archive installed from a clone's folder, offline) every store fixture decodes to its pixels."""
    python = make_venv(tmp_path / "venv")
    pip_install(python, wheel)
    work = tmp_path / "work"
    work.mkdir()
    assert in_venv(python, work, "-c", "import stereocodec; print(stereocodec.__file__)").stdout.startswith(str(tmp_path / "venv"))
    examples = ROOT / "examples"
    in_venv(python, work, "stereo-codec", "encode", examples / "left.png", examples / "right.png", "-o", "pair.sbic")
    in_venv(python, work, "stereo-codec", "decode", "pair.sbic")
    assert Image.open(work / "pair_left.png").size == Image.open(examples / "left.png").size
    defaults = tmp_path / "defaults"
    defaults.mkdir()
    for variant in ("bisic-fast", "bisic"):
        shutil.copy(FIXTURES / f"{Path(default_entry(variant).file).stem}.sbic", defaults)
    in_venv(python, work, "-c", DECODE_ALL, defaults, defaults)
    for fixture in defaults.glob("*.sbic"):
        assert_same_pixels(fixture.stem, *(np.asarray(Image.open(defaults / f"{fixture.stem}_{side}.png")) for side in ("left", "right")))
    old = next(e for e in manifest() if not (STORE / e.file).is_file())
    proc = in_venv(python, work, "stereo-codec", "decode", FIXTURES / f"{Path(old.file).stem}.sbic", "-o", "old", check=False)
    assert_clean_error(proc)
    assert proc.returncode == 1 and f"'{old.name}'" in proc.stderr and old.fingerprint[:12] in proc.stderr
    assert "pip install --no-build-isolation ./archive" in proc.stderr and not list(work.glob("old*"))

    pip_install(python, "--no-build-isolation", copy_archive(tmp_path / "clone" / ARCHIVE_FOLDER))
    installed = Path(in_venv(python, work, "-c", f"import {ARCHIVE_PACKAGE} as a; print(a.__file__)").stdout.strip()).parent
    assert installed.is_relative_to(tmp_path / "venv") and stored(installed) == stored(ARCHIVE)
    decoded = tmp_path / "decoded"
    decoded.mkdir()
    in_venv(python, work, "-c", DECODE_ALL, FIXTURES, decoded)
    for entry in manifest():
        stem = Path(entry.file).stem
        assert_same_pixels(stem, *(np.asarray(Image.open(decoded / f"{stem}_{side}.png")) for side in ("left", "right")))


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
    store, archive = tmp_path / "store", tmp_path / "archive"
    store.mkdir()
    archive.mkdir()
    (store / MANIFEST).write_text("[]\n")
    base = tmp_path / "bisic-fast-step10.safetensors"  # the name the store gives it, which the delta records
    save_weights(tiny_weights("bisic-fast").model, base, {"name": "tiny base", "training_steps": 10})
    model = tiny_weights("bisic-fast", seed=1).model  # other values: every tensor differs from the base
    delta = tmp_path / "delta.safetensors"
    save_weights(model, delta, {"name": "tiny delta", "training_steps": 20}, encoding="int8-delta", reference=base)
    with pytest.raises(WeightsError, match="which is not in the store; ship that first"):
        add_version(delta, store, archive_dir=archive)
    assert add_version(base, store, archive_dir=archive).file == base.name
    entry = add_version(delta, store, archive_dir=archive)
    assert entry.file == "bisic-fast-step20.safetensors" and entry.default
    stored = load_weights(store / entry.file)
    assert stored.fingerprint.hex() == entry.fingerprint == load_weights(delta, search=(store,)).fingerprint.hex()
