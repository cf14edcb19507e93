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

The tree is walked once, depth first in name order, and each folder's pairs are given as
the walk reaches it (`walk_folders`, `iter_pairs`), so that a million pairs are listed in the
memory of a few folders: the first three layouts pair a folder with a twin folder elsewhere,
and both ends decide locally by looking at the twin directly (the left folder takes the
twin's files; the twin works out which of its files the left folders take). Hidden files and
folders are skipped. A folder reached through a symbolic link is walked unless the link leads
back up the way down (a loop) or into a visible folder of the tree itself, which the walk
reaches at its own path: so a pair's name never depends on which of two paths came first.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
ROOT = PurePosixPath(".")


@dataclass(frozen=True)
class PairPaths:
    """One stereo pair; `name` identifies it relative to the searched root (POSIX, no extension)."""

    left: Path
    right: Path
    name: str


@dataclass(frozen=True)
class Folder:
    """One folder as the walk reaches it: its files, the pairs decided there (those whose left
    view is here, and the one-folder layouts), and its images that no pair anywhere uses."""

    rel: PurePosixPath  # relative to the root
    files: list[Path]  # every file that is not a folder, hidden ones included, sorted by name
    pairs: list[PairPaths]
    unpaired: list[Path]


def is_image(path: Path) -> bool:
    """True for a visible file with one of the image extensions we decode."""
    return path.suffix.lower() in IMAGE_EXTS and not path.name.startswith(".")


@dataclass(frozen=True)
class _Dir:
    rel: PurePosixPath
    path: Path
    links: tuple[str, ...] | None  # once a link is passed, the real paths of the folders on the way down


def _join(rel: PurePosixPath, stem: str) -> str:
    return (rel / stem).as_posix()


class _Tree:
    """The folders of the tree as the walk sees them, looked up by their path relative to the root;
    the last few listings are kept, as the two ends of a twin layout list each other."""

    CACHED = 16  # listings kept

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real = os.path.realpath(root)
        self.root_name = root.resolve().name or "root"
        self.listings: OrderedDict[PurePosixPath, tuple[list[str], list[Path]] | None] = OrderedDict()

    def enter(self, parent: _Dir, name: str) -> _Dir | None:
        """The child folder `name` of `parent` if the walk goes into it (see the module's docstring)."""
        if name.startswith("."):
            return None
        path, rel = parent.path / name, parent.rel / name
        if parent.links is None and not os.path.islink(path):
            return _Dir(rel, path, None)
        real = os.path.realpath(path)
        inside = os.path.relpath(real, self.real).split(os.sep)  # ".." when outside, "." for the root
        if inside == ["."] or not any(part.startswith(".") for part in inside):
            return None  # the tree's own visible folder, walked where it is
        if real in (parent.links or ()):
            return None  # a loop
        return _Dir(rel, path, (*(parent.links or ()), real))

    def folder(self, rel: PurePosixPath) -> _Dir | None:
        """`rel` as the walk reaches it, or None when the walk does not go there."""
        here: _Dir | None = _Dir(ROOT, self.root, None)
        for name in rel.parts:
            assert here is not None
            if not os.path.isdir(here.path / name) or (here := self.enter(here, name)) is None:
                return None
        return here

    def listing(self, rel: PurePosixPath) -> tuple[list[str], list[Path]] | None:
        """(its sub-folder names, its files), both sorted, of a folder the walk reaches; None otherwise."""
        if rel in self.listings:
            self.listings.move_to_end(rel)
            return self.listings[rel]
        here = self.folder(rel)
        return self.remember(rel, None if here is None else _list(here.path))

    def remember(self, rel: PurePosixPath, listed: tuple[list[str], list[Path]] | None) -> tuple[list[str], list[Path]] | None:
        self.listings[rel] = listed
        if len(self.listings) > self.CACHED:
            self.listings.popitem(last=False)
        return listed

    def images(self, rel: PurePosixPath) -> list[Path]:
        listed = self.listing(rel)
        return [] if listed is None else [f for f in listed[1] if is_image(f)]

    def subfolders(self, rel: PurePosixPath, named: Callable[[str], bool]) -> list[PurePosixPath]:
        """The sub-folders of `rel` whose name is `named` that the walk goes into, in walk order."""
        listed = self.listing(rel)
        return [] if listed is None else [rel / d for d in listed[0] if named(d) and self.folder(rel / d) is not None]


def _list(path: Path) -> tuple[list[str], list[Path]] | None:
    """A folder's entries as `os.walk` sorts them: folders (links to folders too) and the rest."""
    dirs, files = [], []
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (dirs if is_dir else files).append(entry.name)
    except OSError:  # unreadable: skipped, as os.walk does
        return None
    return sorted(dirs), sorted(path / f for f in files)


def _walk(tree: _Tree, top: PurePosixPath = ROOT, depth: int | None = None) -> Iterator[tuple[PurePosixPath, list[Path]]]:
    """Every folder the walk reaches at or under `top` (at most `depth` levels down), depth first
    in name order, with its files."""
    start = tree.folder(top)
    stack = [] if start is None else [(start, 0)]
    while stack:
        here, level = stack.pop()
        listed = tree.remember(here.rel, _list(here.path))
        if listed is None:
            continue
        dirs, files = listed
        yield here.rel, files
        if depth is None or level < depth:
            stack.extend(reversed([(c, level + 1) for c in (tree.enter(here, d) for d in dirs) if c is not None]))


@dataclass(frozen=True)
class _Cityscapes:
    """``.../leftImg8bit/...`` folders with the ``rightImg8bit`` twin at the same place."""

    LEFT, RIGHT = "leftImg8bit", "rightImg8bit"

    def twin(self, tree: _Tree, rel: PurePosixPath) -> PurePosixPath | None:
        parts = rel.parts
        if self.LEFT not in parts:
            return None
        i = len(parts) - 1 - parts[::-1].index(self.LEFT)
        return PurePosixPath(*parts[:i], self.RIGHT, *parts[i + 1 :])

    def lefts(self, tree: _Tree, rel: PurePosixPath) -> list[PurePosixPath]:
        """The left folders whose twin is `rel`: one per ``rightImg8bit`` with no ``leftImg8bit`` after it."""
        parts = rel.parts
        found = [PurePosixPath(*parts[:i], self.LEFT, *parts[i + 1 :]) for i, p in enumerate(parts)
                 if p == self.RIGHT and self.LEFT not in parts[i + 1 :]]  # fmt: skip
        return sorted((f for f in found if tree.folder(f) is not None), key=lambda f: f.parts)

    def match(self, rel: PurePosixPath, f: Path) -> tuple[str, str] | None:
        """(the right view's stem, the pair's name) for a left view, None for a file that is not one."""
        if not f.stem.endswith("_leftImg8bit"):
            return None
        parts = rel.parts
        i = len(parts) - 1 - parts[::-1].index(self.LEFT)
        base = f.stem[: -len("_leftImg8bit")]
        return base + "_rightImg8bit", _join(PurePosixPath(*parts[:i], *parts[i + 1 :]), base)


@dataclass(frozen=True)
class _Siblings:
    """A folder named `left` with a sibling named `right` (the first such, in walk order)."""

    left: str
    right: str
    ignore_case: bool

    def _is(self, name: str, side: str) -> bool:
        return (name.lower() if self.ignore_case else name) == side

    def twin(self, tree: _Tree, rel: PurePosixPath) -> PurePosixPath | None:
        if rel == ROOT or not self._is(rel.name, self.left):
            return None
        return next(iter(tree.subfolders(rel.parent, lambda d: self._is(d, self.right))), None)

    def lefts(self, tree: _Tree, rel: PurePosixPath) -> list[PurePosixPath]:
        if rel == ROOT or not self._is(rel.name, self.right):
            return []
        if tree.subfolders(rel.parent, lambda d: self._is(d, self.right))[:1] != [rel]:
            return []  # the left folders pair with an earlier sibling
        return tree.subfolders(rel.parent, lambda d: self._is(d, self.left))

    def match(self, rel: PurePosixPath, f: Path) -> tuple[str, str] | None:
        return f.stem, _join(rel.parent, f.stem)


# the layouts across two folders, in their order of precedence
_TWINS = (_Cityscapes(), _Siblings("image_2", "image_3", ignore_case=False), _Siblings("left", "right", ignore_case=True))


class _Pairing:
    """The pairs of one folder of the walk, by the rules applied in order as if to the whole tree.

    A file is offered to a rule only if no earlier rule took it anywhere; for the twin rules
    that is decided by looking at the few folders involved, memoised for one folder's visit.
    """

    def __init__(self, tree: _Tree) -> None:
        self.tree = tree
        self.memo: dict[tuple[str, int, PurePosixPath], object] = {}

    def claims(self, k: int, twin: PurePosixPath) -> dict[PurePosixPath, list[PairPaths]]:
        """Twin rule k's pairs whose right view is in `twin`, by left folder, taken in walk order."""
        key = ("claims", k, twin)
        if key not in self.memo:
            rule, found = _TWINS[k], {}
            lefts = rule.lefts(self.tree, twin)
            rights: dict[str, Path] = {}
            for f in self.tree.images(twin) if lefts else []:  # several extensions of one stem: the first by name
                rights.setdefault(f.stem, f)
            taken = set(self.used(twin, k)) if rights else set()
            for left in lefts if rights else []:
                used, pairs = self.used(left, k), []
                for f in self.tree.images(left):
                    hit = None if f in used else rule.match(left, f)
                    right = None if hit is None else rights.get(hit[0])
                    if right is not None and right not in taken:
                        taken.add(right)
                        pairs.append(PairPaths(f, right, hit[1]))
                found[left] = pairs
            self.memo[key] = found
        return self.memo[key]  # type: ignore[return-value]

    def lefts_here(self, k: int, rel: PurePosixPath) -> list[PairPaths]:
        """Twin rule k's pairs whose left view is in `rel`."""
        twin = _TWINS[k].twin(self.tree, rel)
        return [] if twin is None else self.claims(k, twin).get(rel, [])

    def used(self, rel: PurePosixPath, k: int) -> frozenset[Path]:
        """The files of `rel` that the twin rules before k take, as a left or as a right view."""
        key = ("used", k, rel)
        if key not in self.memo:
            taken: set[Path] = set()
            for j in range(k):
                taken.update(p.left for p in self.lefts_here(j, rel))
                taken.update(p.right for pairs in self.claims(j, rel).values() for p in pairs)
            self.memo[key] = frozenset(taken)
        return self.memo[key]  # type: ignore[return-value]

    def folder(self, rel: PurePosixPath, files: list[Path]) -> Folder:
        self.memo.clear()
        pairs = [p for k in range(len(_TWINS)) for p in self.lefts_here(k, rel)]
        used = set(self.used(rel, len(_TWINS)))
        images = [f for f in files if is_image(f)]
        name = self.tree.root_name if rel == ROOT else rel.as_posix()
        for left, right in (("left", "right"), ("im0", "im1")):
            pairs += _stem_pair(images, used, left, right, name)
        pairs += _suffixed(images, used, rel)
        return Folder(rel, files, pairs, [f for f in images if f not in used])


def _stem_pair(images: list[Path], used: set[Path], left: str, right: str, name: str) -> list[PairPaths]:
    """`left.*` with `right.*` (any case): the first of each, by name."""
    lefts = [f for f in images if f not in used and f.stem.lower() == left]
    rights = [f for f in images if f not in used and f.stem.lower() == right]
    if not (lefts and rights):
        return []
    used.update((lefts[0], rights[0]))
    return [PairPaths(lefts[0], rights[0], name)]


# `_left`/`_right` in any case; `_L`/`_R` upper-case only, as `_l`/`_r` often mean something else
_SUFFIX = re.compile(r"^(?P<base>.+?)(?:_(?i:(?P<word>left|right))|_(?P<letter>[LR]))$")


def _suffixed(images: list[Path], used: set[Path], rel: PurePosixPath) -> list[PairPaths]:
    sides: dict[tuple[str, str], dict[str, Path]] = {}
    for f in images:
        hit = None if f in used else _SUFFIX.match(f.stem)
        if hit is None:
            continue
        word = hit["word"]
        side = word.lower()[0].upper() if word else hit["letter"]
        sides.setdefault((hit["base"], "word" if word else "letter"), {}).setdefault(side, f)
    pairs = [PairPaths(found["L"], found["R"], _join(rel, base))
             for (base, _), found in sorted(sides.items()) if "L" in found and "R" in found]  # fmt: skip
    used.update(f for p in pairs for f in (p.left, p.right))
    return pairs


def walk_folders(root: Path, top: PurePosixPath = ROOT, depth: int | None = None) -> Iterator[Folder]:
    """Every folder under `root` in walk order, each with the pairs decided there; memory stays
    that of the few folders around the walk's position, whatever the number of pairs. `top` and
    `depth` walk only that part of the tree (its pairs as the whole walk decides them), so that a
    caller can look at a few folders again. Names are not checked for clashes here (`find_pairs`
    does, and `batch.sources` as it streams)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    tree = _Tree(root)
    pairing = _Pairing(tree)
    for rel, files in _walk(tree, top, depth):
        yield pairing.folder(rel, files)


def iter_pairs(root: Path) -> Iterator[PairPaths]:
    """The stereo pairs under `root`, in walk order, each as soon as it is decided."""
    for folder in walk_folders(root):
        yield from folder.pairs


def find_pairs(root: Path) -> list[PairPaths]:
    """All stereo pairs under `root`, sorted by name; files that pair with nothing are ignored.
    Two pairs of one name are refused (they would make one output)."""
    pairs = sorted(iter_pairs(root), key=lambda p: p.name)
    for a, b in zip(pairs, pairs[1:]):
        if a.name == b.name:
            raise ValueError(f"two stereo pairs map to the name {a.name!r}: {a.left} and {b.left}")
    return pairs
