"""The listing: every stereo input under a folder, each with its layout, streamed as the walk goes.

Nothing is held per input: two inputs that would write one output are refused by looking only
where a clash can be (`_Scopes`), and a shard is a hash of the name, so no global order is needed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from ..io.images import InputError, View, check_pair, read_view
from ..io.pairs import Folder, walk_folders
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


def shard_of(name: str, n: int) -> int:
    """The shard (1-based, of `n`) that holds `name`: the CRC-32 of its UTF-8 bytes modulo `n`, so that
    an input always lands in the same shard whatever else is in the tree or the order of the walk."""
    return zlib.crc32(name.encode()) % n + 1


def _clash(first: Source, second: Source) -> InputError:
    return InputError(f"{first.paths[0]} and {second.paths[0]} both map to the name {second.name!r}; rename one")


class _Scopes:
    """The names given so far that a later input could still repeat, by the folder they are under.

    Every layout but Cityscapes names an input ``D/s`` after a file of folder D (``D/s.mpo``,
    ``D/s_left.png``, ``D/s.sbic``) or after a child of D (``D/s/left.png``, ``D/left/s.png``,
    ``D/image_2/s.png``; the root's own pair is named after the root, under it). The walk is depth
    first, so once it has left D no later input can be named under D, and D's names are dropped:
    what is held is the names under the folders on the way down to the walk's position, at most a
    folder's and its children's. A Cityscapes pair (``X/leftImg8bit/Y/s_leftImg8bit.png`` is
    ``X/Y/s``) is named under a folder elsewhere in the tree: `Listing` checks it by looking there.
    """

    def __init__(self) -> None:
        self.stack: list[tuple[PurePosixPath, dict[str, Source]]] = []

    def enter(self, rel: PurePosixPath) -> None:
        """The walk reaches folder `rel`: drop the names under the folders it has left."""
        while self.stack and self.stack[-1][0] not in rel.parents:
            self.stack.pop()
        self.stack.append((rel, {}))

    def add(self, source: Source) -> bool:
        """Refuse `source` if an input of its name was given; False when it is named under a
        folder other than the walk's (or its parent): a Cityscapes pair, checked elsewhere."""
        under = PurePosixPath(source.name).parent
        for rel, names in self.stack[-2:]:
            if rel == under:
                if source.name in names:
                    raise _clash(names[source.name], source)
                names[source.name] = source
                return True
        return False


@dataclass
class Survey:
    """One pass over a listing, holding no source: what a plan needs to know before any work."""

    everywhere: int = 0  # sources in every shard
    here: int = 0  # sources in this shard
    unpaired: int = 0  # images no source uses (encoding without --sbs)
    examples: list[Path] = field(default_factory=list)  # the first few of them, for the note

    EXAMPLES = 10


@dataclass(frozen=True)
class Listing:
    """The stereo inputs under `root` for one shard, streamed in walk order each time it is iterated.

    Encoding: pairs of files in any layout `io.pairs` knows, `.mpo` files, and with
    ``sbs="parallel"`` or ``"cross"`` every image no pair uses as a side-by-side pair.
    ``decode=True``: the .sbic files. An input of a name already given (in any shard) is refused
    (InputError naming both files) before it is given, so two inputs never write one output.
    """

    root: Path
    sbs: str | None = None
    decode: bool = False
    shard: tuple[int, int] | None = None  # (K, N), 1-based

    def __post_init__(self) -> None:
        if not Path(self.root).is_dir():
            raise InputError(f"{self.root}: not a directory")
        if self.sbs not in (None, "parallel", "cross"):
            raise ValueError(f"sbs must be None, 'parallel' or 'cross', not {self.sbs!r}")

    def __iter__(self) -> Iterator[Source]:
        return filter(self._here, self._checked())

    def survey(self) -> Survey:
        """Count the sources (in every shard and in this one) and the unpaired images, checking the names."""
        survey = Survey()
        for source in self._checked(survey):
            survey.everywhere += 1
            survey.here += self._here(source)
        return survey

    def _here(self, source: Source) -> bool:
        return self.shard is None or shard_of(source.name, self.shard[1]) == self.shard[0]

    def _sources(self, folder: Folder) -> Iterator[Source]:
        """The sources that `folder` gives (names unchecked)."""
        root = Path(self.root)
        if self.decode:
            yield from (Source(_relative_name(root, f), DECODE_LAYOUT, (f,)) for f in folder.files
                        if f.suffix.lower() == ".sbic" and not f.name.startswith("."))  # fmt: skip
            return
        yield from (Source(p.name, "pair", (p.left, p.right)) for p in folder.pairs)
        yield from (Source(_relative_name(root, f), "mpo", (f,)) for f in folder.files if is_mpo(f))
        if self.sbs:
            layout: Layout = "sbs" if self.sbs == "parallel" else "sbs-cross"
            yield from (Source(_relative_name(root, f), layout, (f,)) for f in folder.unpaired)

    def _checked(self, survey: Survey | None = None) -> Iterator[Source]:
        """Every shard's sources in walk order, each refused if it repeats a name; `survey` counts
        the images no source uses."""
        scopes, elsewhere = _Scopes(), _Elsewhere(self)
        for folder in walk_folders(Path(self.root)):
            scopes.enter(folder.rel)
            for source in self._sources(folder):
                if not scopes.add(source):
                    elsewhere.check(source)
                yield source
            if survey is not None and not (self.decode or self.sbs):
                survey.unpaired += len(folder.unpaired)
                survey.examples += folder.unpaired[: Survey.EXAMPLES - len(survey.examples)]


class _Elsewhere:
    """The inputs named under a folder D that is not where the walk is (a Cityscapes pair's): those
    of D and its children, and of the other ``leftImg8bit`` folders that name into D, listed again
    (for the last D asked about: a Cityscapes folder's pairs all name into one)."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        self.under: PurePosixPath | None = None
        self.names: dict[str, list[Source]] = {}

    def check(self, source: Source) -> None:
        under = PurePosixPath(source.name).parent
        if under != self.under:
            self.under, self.names = under, {}
            for folder in self._folders(under):
                for s in self.listing._sources(folder):
                    if PurePosixPath(s.name).parent == under:
                        self.names.setdefault(s.name, []).append(s)
        other = next((s for s in self.names.get(source.name, []) if s.paths != source.paths), None)
        if other is not None:
            raise _clash(other, source)

    def _folders(self, under: PurePosixPath) -> Iterator[Folder]:
        root, parts = Path(self.listing.root), under.parts
        yield from walk_folders(root, under, depth=1)
        for i in range(len(parts)):  # X/leftImg8bit/Y names into X/Y (the last leftImg8bit; X/Y/leftImg8bit is a child, above)
            if "leftImg8bit" not in parts[i:]:
                yield from walk_folders(root, PurePosixPath(*parts[:i], "leftImg8bit", *parts[i:]), depth=0)


def find_sources(root: Path, sbs: str | None = None) -> list[Source]:
    """Every stereo input under `root` (a `Listing`), sorted by name: for the few pairs a report compares."""
    return sorted(Listing(Path(root), sbs), key=lambda s: s.name)


def find_sbic(root: Path) -> list[Source]:
    """Every .sbic file under `root`, as decode sources sorted by name."""
    return sorted(Listing(Path(root), decode=True), key=lambda s: s.name)
