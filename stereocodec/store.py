"""The weights store: every weights file stereo-codec has shipped as a default, by fingerprint.

A .sbic file names its weights by fingerprint. Decoding looks that fingerprint up in the manifest,
so a file written with any weights a release shipped decodes with every later release: shipping new
weights adds a version (`add_version`, `stereo-codec ship-weights`), never replaces one.

The manifest lists every version, but the package carries only what encoding and decoding with
today's defaults need (`package_files`: each variant's default and the whole file an int8-delta
default counts from), so that its wheel fits a package index. Every other version is package data of
the companion distribution in a clone's `archive/` folder (`pip install --no-build-isolation ./archive`);
a file whose weights are there, when it is not installed, is refused in one line naming that step.
Files from development weights that predate the store (history.json) get a message naming the
commit that holds their weights.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import asdict, dataclass
from functools import cache
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Sequence

import torch

from .io.images import atomic_write
from .weights import BASE_KEY, LoadedWeights, WeightsError, file_sha256, load_weights, read_metadata

STORE = "weights_store"  # folder of package data beside this module
MANIFEST = "manifest.json"
HISTORY = "history.json"  # development weights shipped before the store, with their commits
ARCHIVE_PACKAGE = "stereocodec_weights_archive"  # the companion distribution holding the other versions
ARCHIVE_FOLDER = "archive"  # where that distribution lives in a clone, beside the stereocodec package
INSTALL_ARCHIVE = f"`pip install --no-build-isolation ./{ARCHIVE_FOLDER}` in a clone of stereo-codec (offline)"


class WeightsNotInstalled(WeightsError):
    """Stored weights whose file is in the weights archive, which this installation lacks; the one-line
    message names the weights and the step that brings them."""


@dataclass(frozen=True)
class StoredWeights:
    """One manifest entry: a weights file kept in the store for good."""

    file: str
    variant: str
    name: str
    fingerprint: str  # hex sha256, as .sbic files record it
    training_steps: int | None
    date: str | None
    default: bool  # what encode uses for this variant when no --weights is given


def store_root() -> Traversable:
    """The store folder inside the installed package (a wheel carries it as package data)."""
    return files(__package__).joinpath(STORE)


def archive_root() -> Traversable | None:
    """The installed weights archive (the companion distribution of a clone's archive/ folder), if any."""
    return files(ARCHIVE_PACKAGE) if importlib.util.find_spec(ARCHIVE_PACKAGE) is not None else None


@cache
def manifest() -> tuple[StoredWeights, ...]:
    """Every stored version, oldest first; read once."""
    try:
        entries = json.loads(store_root().joinpath(MANIFEST).read_text())
        return tuple(StoredWeights(**e) for e in entries)
    except (OSError, ValueError, TypeError) as e:
        raise WeightsError(f"the weights store's {MANIFEST} is unreadable ({e}); reinstall stereo-codec or pass --weights") from None


def _default_of(entries: Sequence[StoredWeights], variant: str) -> StoredWeights | None:
    found = [e for e in entries if e.variant == variant and e.default]
    return found[-1] if found else None


def default_entry(variant: str) -> StoredWeights:
    """The stored weights encode uses for `variant`: the newest marked default."""
    entry = _default_of(manifest(), variant)
    if entry is None:
        raise WeightsError(f"no shipped weights for {variant} in this installation; pass --weights")
    return entry


def find(fp: bytes) -> StoredWeights | None:
    """The stored weights that wrote a file carrying this fingerprint, if any."""
    return next((e for e in manifest() if e.fingerprint == fp.hex()), None)


def locate(entry: StoredWeights) -> Traversable:
    """The file of a stored version: in the package's store, else in the installed weights archive.
    A version in neither is refused in one line saying which step brings it."""
    archive = archive_root()
    for root in (store_root(), archive):
        if root is not None and root.joinpath(entry.file).is_file():
            return root.joinpath(entry.file)
    if entry == _default_of(manifest(), entry.variant):
        raise WeightsError(f"the weights store lacks {entry.file} ({entry.name}); reinstall stereo-codec or pass --weights")
    where = "which is not installed" if archive is None else "but the installed archive is older than this stereo-codec"
    raise WeightsNotInstalled(f"weights '{entry.name}' (fingerprint {entry.fingerprint[:12]}...) are in the stereo-codec "
                              f"weights archive, {where}: {INSTALL_ARCHIVE} brings them")


def load_stored(entry: StoredWeights, device: str | torch.device = "cpu") -> LoadedWeights:
    """Load one stored version, checking it is still the file the manifest describes."""
    with as_file(locate(entry)) as path:
        loaded = load_weights(path, entry.variant, device, search=_search_dirs())
    if loaded.fingerprint.hex() != entry.fingerprint:
        raise WeightsError(f"the weights store's {entry.file} does not match its manifest fingerprint; reinstall stereo-codec")
    return loaded


def load_default(variant: str, device: str | torch.device = "cpu") -> LoadedWeights:
    """The shipped default weights of `variant`."""
    return load_stored(default_entry(variant), device)


def load_for(variant: str, fp: bytes, device: str | torch.device = "cpu") -> LoadedWeights:
    """The weights that decode a file: the stored version its fingerprint names, else the default
    of its variant (whose mismatch message then says where older weights are)."""
    entry = find(fp)
    return load_stored(entry, device) if entry is not None else load_default(variant, device)


def load_chosen(path: Path | None, variant: str | None, fp: bytes | None = None,
                device: str | torch.device = "cpu") -> LoadedWeights:
    """The weights a command runs on: the file `path` when given (--weights); else the stored
    weights that wrote a file (fingerprint `fp`), or the shipped default of `variant`."""
    if path is not None:
        return load_weights(path, variant, device, search=_search_dirs())
    if variant is None:
        raise WeightsError("no weights: pass --weights or --variant")
    return load_for(variant, fp, device) if fp is not None else load_default(variant, device)


def _store_dir() -> Path:
    """The store as a folder (package data is installed as files, never zipped)."""
    return Path(str(store_root()))


def _search_dirs() -> tuple[Path, ...]:
    """Where an int8-delta file's base is looked for after its own folder: the store, then the archive."""
    archive = archive_root()
    return (_store_dir(),) if archive is None else (_store_dir(), Path(str(archive)))


def default_weights_path(variant: str) -> Path:
    """File system path of the default weights of `variant` (for tools that open files themselves)."""
    return Path(str(locate(default_entry(variant))))


@cache
def _history() -> tuple[dict, ...]:
    try:
        return tuple(json.loads(store_root().joinpath(HISTORY).read_text()))
    except (OSError, ValueError):
        return ()


def shipped_before(fp: bytes) -> dict | None:
    """The development weights (variant, name, commit) that wrote this fingerprint before the store
    existed: a file they made can then say where its weights are."""
    return next((entry for entry in _history() if fp.hex() in entry["fingerprints"]), None)


def package_files(entries: Sequence[StoredWeights], folders: Sequence[Path]) -> set[str]:
    """The files the package's own store holds: each variant's default and the whole file an int8-delta
    default counts from (read from the default file, found in the first of `folders` that has it).
    Every other version the manifest lists belongs in the weights archive."""
    keep = set()
    for variant in dict.fromkeys(e.variant for e in entries):
        entry = _default_of(entries, variant)
        if entry is None:
            continue
        path = next((Path(d) / entry.file for d in folders if (Path(d) / entry.file).is_file()), None)
        if path is None:
            raise WeightsError(f"the default {variant} weights {entry.file} are in none of {', '.join(map(str, folders))}")
        keep.add(entry.file)
        base = read_metadata(path).get(BASE_KEY)
        if base is not None:
            keep.add(base["file"])
    return keep


def checkout_archive(store: Path) -> Path:
    """The weights archive's package folder of the clone whose store folder is `store`."""
    return Path(store).resolve().parents[1] / ARCHIVE_FOLDER / ARCHIVE_PACKAGE


def arrange(store: Path, archive: Path) -> None:
    """Move each manifest version to where `package_files` says (the package's store, else the
    archive), so the wheel never carries weights no default needs."""
    store, archive = Path(store), Path(archive)
    entries = [StoredWeights(**e) for e in json.loads((store / MANIFEST).read_text())]
    keep = package_files(entries, (store, archive))
    for entry in entries:
        src, dst = (archive, store) if entry.file in keep else (store, archive)
        if (src / entry.file).is_file() and not (dst / entry.file).exists():
            shutil.move(src / entry.file, dst / entry.file)


def add_version(weights: Path, store_dir: Path | None = None, default: bool = True,
                archive_dir: Path | None = None) -> StoredWeights:
    """Ship new weights: copy a .safetensors file (from `stereo-codec export`) into the store and
    list it in the manifest, as the new default of its variant unless `default` is False; then move
    the versions no default needs any more into the weights archive (`arrange`).

    `store_dir` is the store folder of a source checkout (default: the one this package runs
    from), `archive_dir` the archive's package folder (default: the same checkout's). Earlier
    versions stay listed, so every file they wrote keeps decoding; commit both folders.
    """
    store = Path(store_dir) if store_dir is not None else _store_dir()
    archive = Path(archive_dir) if archive_dir is not None else checkout_archive(store)
    if not archive.is_dir():
        raise WeightsError(f"no weights archive folder at {archive} (shipping moves the versions no default needs there); "
                           "ship from a clone or pass --archive")
    weights = Path(weights)
    if weights.suffix != ".safetensors":
        raise WeightsError(f"{weights}: only .safetensors files from `stereo-codec export` are shipped")
    loaded = load_weights(weights, search=(store, archive))
    base = loaded.metadata.get(BASE_KEY)
    if base is not None and not any((d / base["file"]).is_file() and file_sha256(d / base["file"]) == base["sha256"]
                                    for d in (store, archive)):
        raise WeightsError(f"{weights}: its int8 steps count from {base['file']}, which is not in the store; ship that first")
    fp = loaded.fingerprint.hex()
    entries = json.loads((store / MANIFEST).read_text())
    if any(e["fingerprint"] == fp for e in entries):
        raise WeightsError(f"{weights}: these weights are already in the store")
    variant, steps = loaded.model.variant, loaded.metadata.get("training_steps")
    name = f"{variant}-step{steps}.safetensors" if steps is not None else f"{variant}-{fp[:12]}.safetensors"
    if (store / name).exists() or (archive / name).exists():
        name = f"{variant}-{fp[:12]}.safetensors"
    entry = StoredWeights(name, variant, loaded.name, fp, steps, loaded.metadata.get("date"), default)
    if default:
        entries = [{**e, "default": False} if e["variant"] == variant else e for e in entries]
    shutil.copyfile(weights, store / name)
    atomic_write(store / MANIFEST, lambda f: f.write((json.dumps([*entries, asdict(entry)], indent=1) + "\n").encode()))
    manifest.cache_clear()
    arrange(store, archive)
    return entry
