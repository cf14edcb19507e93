"""Find the stereo pairs in a folder tree, so that the trainer and the batch command agree.

Recognised layouts (image extensions in `IMAGE_EXTS`, case-insensitive), tried in this
order; a file that one layout pairs is not offered to the later ones:

- Cityscapes: ``leftImg8bit/<split>/<city>/<id>_leftImg8bit.png`` with
  ``rightImg8bit/<split>/<city>/<id>_rightImg8bit.png``; name ``<split>/<city>/<id>``.
- KITTI: ``.../image_2/X.png`` with ``.../image_3/X.png``; name ``.../X``.
- sibling ``left/`` and ``right/`` folders holding files of the same stem; name ``.../stem``.
- InStereo2K and our own pairs: ``left.*`` with ``right.*`` in one folder; name = folder.
- Middlebury: ``im0.*`` with ``im1.*`` in one folder; name = folder.
- ``<base>_left.*`` with ``<base>_right.*`` (or ``_L``/``_R``) in one folder; name ``.../base``.

Names are POSIX paths relative to the root, without extension, so that outputs can mirror
the input tree; a pair that sits in the root itself is named after the root folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


@dataclass(frozen=True)
class PairPaths:
    """One stereo pair; `name` identifies it relative to the searched root (POSIX, no extension)."""

    left: Path
    right: Path
    name: str


def is_image(path: Path) -> bool:
    """True for a visible file with one of the image extensions we decode."""
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


def _walk_images(root: Path, pick: Callable[[Path], bool] = is_image) -> Iterator[tuple[PurePosixPath, list[Path]]]:
    """Yield (folder relative to root, its files that `pick` accepts, sorted by name), following links once."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop, or a folder reached twice
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        files = sorted(here / f for f in filenames if pick(here / f))
        yield PurePosixPath(here.relative_to(root).as_posix()), files


def list_files(root: Path, pick: Callable[[Path], bool] = is_image) -> list[Path]:
    """Files under `root` that `pick` accepts, walked as `find_pairs` walks (hidden skipped, links once)."""
    return [f for _, files in _walk_images(Path(root), pick) for f in files]


class _Matcher:
    """Index of the image files by (folder, stem) plus the set of files already paired."""

    def __init__(self, root: Path) -> None:
        self.root_name = root.resolve().name or "root"
        self.folders: dict[PurePosixPath, list[Path]] = {}
        self.children: dict[PurePosixPath, list[PurePosixPath]] = {}
        self.by_stem: dict[tuple[PurePosixPath, str], Path] = {}
        for rel, files in _walk_images(root):
            self.folders[rel] = files
            if rel != PurePosixPath("."):
                self.children.setdefault(rel.parent, []).append(rel)
            for f in files:  # several extensions of one stem: the first by name wins
                self.by_stem.setdefault((rel, f.stem), f)
        self.used: set[Path] = set()
        self.pairs: dict[str, PairPaths] = {}

    def folder_name(self, rel: PurePosixPath) -> str:
        return self.root_name if rel == PurePosixPath(".") else rel.as_posix()

    def add(self, left: Path | None, right: Path | None, name: str) -> None:
        if left is None or right is None or left in self.used or right in self.used:
            return
        if name in self.pairs:
            other = self.pairs[name]
            raise ValueError(f"two stereo pairs map to the name {name!r}: {other.left} and {left}")
        self.used.update((left, right))
        self.pairs[name] = PairPaths(left=left, right=right, name=name)

    def unused(self, rel: PurePosixPath, pick: Callable[[Path], bool]) -> list[Path]:
        return [f for f in self.folders.get(rel, []) if f not in self.used and pick(f)]


def _join(rel: PurePosixPath, stem: str) -> str:
    return (rel / stem).as_posix()


def _cityscapes(m: _Matcher) -> None:
    for rel in list(m.folders):
        parts = rel.parts
        if "leftImg8bit" not in parts:
            continue
        i = len(parts) - 1 - parts[::-1].index("leftImg8bit")
        other = PurePosixPath(*parts[:i], "rightImg8bit", *parts[i + 1 :])
        name_dir = PurePosixPath(*parts[:i], *parts[i + 1 :])
        for f in m.unused(rel, lambda f: f.stem.endswith("_leftImg8bit")):
            base = f.stem[: -len("_leftImg8bit")]
            m.add(f, m.by_stem.get((other, base + "_rightImg8bit")), _join(name_dir, base))


def _sibling_folders(m: _Matcher, left_dir: str, right_dir: str, ignore_case: bool) -> None:
    for rel in list(m.folders):
        last = rel.name.lower() if ignore_case else rel.name
        if rel == PurePosixPath(".") or last != left_dir:
            continue
        twins = [d for d in m.children.get(rel.parent, []) if (d.name.lower() if ignore_case else d.name) == right_dir]
        if not twins:
            continue
        for f in m.unused(rel, lambda f: True):
            m.add(f, m.by_stem.get((twins[0], f.stem)), _join(rel.parent, f.stem))


def _stem_pair(m: _Matcher, left_stem: str, right_stem: str) -> None:
    for rel in list(m.folders):
        lefts = m.unused(rel, lambda f: f.stem.lower() == left_stem)
        rights = m.unused(rel, lambda f: f.stem.lower() == right_stem)
        if lefts and rights:
            m.add(lefts[0], rights[0], m.folder_name(rel))


# `_left`/`_right` in any case; `_L`/`_R` upper-case only, as `_l`/`_r` often mean something else
_SUFFIX = re.compile(r"^(?P<base>.+?)(?:_(?i:(?P<word>left|right))|_(?P<letter>[LR]))$")


def _suffixed(m: _Matcher) -> None:
    for rel in list(m.folders):
        sides: dict[tuple[str, str], dict[str, Path]] = {}
        for f in m.unused(rel, lambda f: True):
            hit = _SUFFIX.match(f.stem)
            if hit is None:
                continue
            word = hit["word"]
            side = word.lower()[0].upper() if word else hit["letter"]
            style = "word" if word else "letter"
            sides.setdefault((hit["base"], style), {}).setdefault(side, f)
        for (base, _), found in sorted(sides.items()):
            m.add(found.get("L"), found.get("R"), _join(rel, base))


def find_pairs(root: Path) -> list[PairPaths]:
    """All stereo pairs under `root`, sorted by name; files that pair with nothing are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    m = _Matcher(root)
    _cityscapes(m)
    _sibling_folders(m, "image_2", "image_3", ignore_case=False)
    _sibling_folders(m, "left", "right", ignore_case=True)
    _stem_pair(m, "left", "right")
    _stem_pair(m, "im0", "im1")
    _suffixed(m)
    return sorted(m.pairs.values(), key=lambda p: p.name)
