"""The listing: every stereo input under a folder, sorted by name, each with its layout.

Sorted by name so that a shard (`plan.select_shard`) and a rerun see the same order; two inputs
that would write one output are refused before any work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ..io.images import InputError, View, check_pair, read_view
from ..io.pairs import find_pairs, is_image, list_files
from ..io.stereo_formats import is_mpo, read_mpo, split_sbs

# how a source holds its two views: two files, one MPO, one side-by-side image (parallel or cross-eyed)
# or, to decode, one .sbic file
Layout = Literal["pair", "mpo", "sbs", "sbs-cross", "sbic"]
DECODE_LAYOUT: Layout = "sbic"


@dataclass(frozen=True)
class Source:
    """One stereo input: a pair of files, an MPO, a side-by-side image, or (to decode) a .sbic file."""

    name: str  # POSIX path relative to the searched root, without extension
    layout: Layout
    paths: tuple[Path, ...]

    def read(self) -> tuple[View, View]:
        """The two views, checked to be a usable pair."""
        if self.layout == "pair":
            views = read_view(self.paths[0], "left"), read_view(self.paths[1], "right")
        elif self.layout == "mpo":
            views = read_mpo(self.paths[0])
        elif self.layout in ("sbs", "sbs-cross"):
            path = self.paths[0]
            views = split_sbs(read_view(path), cross=self.layout == "sbs-cross", label=str(path))
        else:
            raise ValueError(f"{self.name}: a {self.layout} source holds no views to read")
        check_pair(*views)
        return views

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


def _relative_name(root: Path, path: Path) -> str:
    """A one-file source's name: its path under `root`, POSIX, without extension."""
    return PurePosixPath(path.relative_to(root).as_posix()).with_suffix("").as_posix()


def _unique(sources: Iterable[Source]) -> list[Source]:
    """Sort by name, refusing two sources that would write the same output."""
    by_name: dict[str, Source] = {}
    for s in sources:
        if s.name in by_name:
            raise InputError(f"{by_name[s.name].paths[0]} and {s.paths[0]} both map to the name {s.name!r}; rename one")
        by_name[s.name] = s
    return [by_name[n] for n in sorted(by_name)]


def find_sources(root: Path, sbs: str | None = None) -> list[Source]:
    """Every stereo input under `root`, sorted by name.

    Pairs of files in any layout `pairs.find_pairs` knows, `.mpo` files, and with
    ``sbs="parallel"`` or ``"cross"`` every other image as a side-by-side pair.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    if sbs not in (None, "parallel", "cross"):
        raise ValueError(f"sbs must be None, 'parallel' or 'cross', not {sbs!r}")
    try:
        pairs = find_pairs(root)
    except ValueError as e:
        raise InputError(str(e)) from None
    sources = [Source(p.name, "pair", (p.left, p.right)) for p in pairs]
    sources += [Source(_relative_name(root, f), "mpo", (f,)) for f in list_files(root, is_mpo)]
    if sbs:
        paired = {f for p in pairs for f in (p.left, p.right)}
        layout: Layout = "sbs" if sbs == "parallel" else "sbs-cross"
        sources += [Source(_relative_name(root, f), layout, (f,)) for f in list_files(root, is_image) if f not in paired]
    return _unique(sources)


def find_sbic(root: Path) -> list[Source]:
    """Every .sbic file under `root`, as decode sources sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = list_files(root, lambda p: p.suffix.lower() == ".sbic" and not p.name.startswith("."))
    return _unique(Source(_relative_name(root, f), DECODE_LAYOUT, (f,)) for f in files)
