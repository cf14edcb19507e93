"""The weights store: every weights file stereo-codec has shipped as a default, kept as package data.

A .sbic file names its weights by fingerprint. Decoding looks that fingerprint up here, so a file
written with any weights a release shipped decodes with every later release: shipping new weights
adds a version to the store (`add_version`, `stereo-codec ship-weights`), never replaces one.
Files from development weights that predate the store (history.json) get a message naming the
commit that holds their weights.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from functools import cache
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path

import torch

from .io.images import atomic_write
from .weights import BASE_KEY, LoadedWeights, WeightsError, file_sha256, load_weights

STORE = "weights_store"  # folder of package data beside this module
MANIFEST = "manifest.json"
HISTORY = "history.json"  # development weights shipped before the store, with their commits


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


@cache
def manifest() -> tuple[StoredWeights, ...]:
    """Every stored version, oldest first; read once."""
    try:
        entries = json.loads(store_root().joinpath(MANIFEST).read_text())
        return tuple(StoredWeights(**e) for e in entries)
    except (OSError, ValueError, TypeError) as e:
        raise WeightsError(f"the weights store's {MANIFEST} is unreadable ({e}); reinstall stereo-codec or pass --weights") from None


def default_entry(variant: str) -> StoredWeights:
    """The stored weights encode uses for `variant`: the newest marked default."""
    found = [e for e in manifest() if e.variant == variant and e.default]
    if not found:
        raise WeightsError(f"no shipped weights for {variant} in this installation; pass --weights")
    return found[-1]


def find(fp: bytes) -> StoredWeights | None:
    """The stored weights that wrote a file carrying this fingerprint, if any."""
    return next((e for e in manifest() if e.fingerprint == fp.hex()), None)


def load_stored(entry: StoredWeights, device: str | torch.device = "cpu") -> LoadedWeights:
    """Load one stored version, checking it is still the file the manifest describes."""
    resource = store_root().joinpath(entry.file)
    if not resource.is_file():
        raise WeightsError(f"the weights store lacks {entry.file} ({entry.name}); reinstall stereo-codec or pass --weights")
    with as_file(resource) as path:
        loaded = load_weights(path, entry.variant, device, search=(_store_dir(),))
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
        return load_weights(path, variant, device, search=(_store_dir(),))
    if variant is None:
        raise WeightsError("no weights: pass --weights or --variant")
    return load_for(variant, fp, device) if fp is not None else load_default(variant, device)


def _store_dir() -> Path:
    """The store as a folder: where an int8-delta file's base is looked for after its own folder."""
    return Path(str(store_root()))


def default_weights_path(variant: str) -> Path:
    """File system path of the default weights of `variant` (for tools that open files themselves)."""
    return Path(str(store_root().joinpath(default_entry(variant).file)))


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


def add_version(weights: Path, store_dir: Path | None = None, default: bool = True) -> StoredWeights:
    """Ship new weights: copy a .safetensors file (from `stereo-codec export`) into the store and
    list it in the manifest, as the new default of its variant unless `default` is False.

    `store_dir` is the store folder of a source checkout (default: the one this package runs
    from). Earlier versions stay, so every file they wrote keeps decoding; commit the new file
    and manifest.json.
    """
    store = Path(store_dir) if store_dir is not None else Path(str(store_root()))
    weights = Path(weights)
    if weights.suffix != ".safetensors":
        raise WeightsError(f"{weights}: only .safetensors files from `stereo-codec export` are shipped")
    loaded = load_weights(weights, search=(store,))
    base = loaded.metadata.get(BASE_KEY)
    if base is not None and not ((store / base["file"]).is_file() and file_sha256(store / base["file"]) == base["sha256"]):
        raise WeightsError(f"{weights}: its int8 steps count from {base['file']}, which is not in the store; ship that first")
    fp = loaded.fingerprint.hex()
    entries = json.loads((store / MANIFEST).read_text())
    if any(e["fingerprint"] == fp for e in entries):
        raise WeightsError(f"{weights}: these weights are already in the store")
    variant, steps = loaded.model.variant, loaded.metadata.get("training_steps")
    name = f"{variant}-step{steps}.safetensors" if steps is not None else f"{variant}-{fp[:12]}.safetensors"
    if (store / name).exists():
        name = f"{variant}-{fp[:12]}.safetensors"
    entry = StoredWeights(name, variant, loaded.name, fp, steps, loaded.metadata.get("date"), default)
    if default:
        entries = [{**e, "default": False} if e["variant"] == variant else e for e in entries]
    shutil.copyfile(weights, store / name)
    atomic_write(store / MANIFEST, lambda f: f.write((json.dumps([*entries, asdict(entry)], indent=1) + "\n").encode()))
    manifest.cache_clear()
    return entry
