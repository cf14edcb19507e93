"""The streaming listing (stereocodec.io.pairs): one walk, each folder's pairs as it is reached, the
same pairs as the whole-tree matcher it replaced (kept here, and only here, as the oracle), but for
the symbolic links that test_links_into_the_tree_are_walked_at_their_own_path describes."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stereocodec.io import pairs as listing
from stereocodec.io.pairs import PairPaths, find_pairs, is_image, iter_pairs, walk_folders


# ---- the oracle: find_pairs as it was before the listing streamed (git show 90b14fd:stereocodec/io/pairs.py)

def _old_walk(root: Path, pick: Callable[[Path], bool] = is_image) -> Iterator[tuple[PurePosixPath, list[Path]]]:
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames.clear()
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        yield PurePosixPath(here.relative_to(root).as_posix()), sorted(here / f for f in filenames if pick(here / f))


class _OldMatcher:
    def __init__(self, root: Path) -> None:
        self.root_name = root.resolve().name or "root"
        self.folders: dict[PurePosixPath, list[Path]] = {}
        self.children: dict[PurePosixPath, list[PurePosixPath]] = {}
        self.by_stem: dict[tuple[PurePosixPath, str], Path] = {}
        for rel, files in _old_walk(root):
            self.folders[rel] = files
            if rel != PurePosixPath("."):
                self.children.setdefault(rel.parent, []).append(rel)
            for f in files:
                self.by_stem.setdefault((rel, f.stem), f)
        self.used: set[Path] = set()
        self.pairs: dict[str, PairPaths] = {}

    def add(self, left: Path | None, right: Path | None, name: str) -> None:
        if left is None or right is None or left in self.used or right in self.used:
            return
        if name in self.pairs:
            raise ValueError(name)
        self.used.update((left, right))
        self.pairs[name] = PairPaths(left=left, right=right, name=name)

    def unused(self, rel: PurePosixPath, pick: Callable[[Path], bool]) -> list[Path]:
        return [f for f in self.folders.get(rel, []) if f not in self.used and pick(f)]


def old_find_pairs(root: Path) -> list[PairPaths]:
    m = _OldMatcher(root)
    join = lambda rel, stem: (rel / stem).as_posix()  # noqa: E731
    for rel in list(m.folders):
        parts = rel.parts
        if "leftImg8bit" in parts:
            i = len(parts) - 1 - parts[::-1].index("leftImg8bit")
            other = PurePosixPath(*parts[:i], "rightImg8bit", *parts[i + 1 :])
            for f in m.unused(rel, lambda f: f.stem.endswith("_leftImg8bit")):
                base = f.stem[: -len("_leftImg8bit")]
                m.add(f, m.by_stem.get((other, base + "_rightImg8bit")), join(PurePosixPath(*parts[:i], *parts[i + 1 :]), base))
    for left_dir, right_dir, fold in (("image_2", "image_3", False), ("left", "right", True)):
        name = (lambda d: d.name.lower()) if fold else (lambda d: d.name)
        for rel in list(m.folders):
            if rel == PurePosixPath(".") or name(rel) != left_dir:
                continue
            twins = [d for d in m.children.get(rel.parent, []) if name(d) == right_dir]
            for f in m.unused(rel, lambda f: True) if twins else []:
                m.add(f, m.by_stem.get((twins[0], f.stem)), join(rel.parent, f.stem))
    for left_stem, right_stem in (("left", "right"), ("im0", "im1")):
        for rel in list(m.folders):
            lefts = m.unused(rel, lambda f: f.stem.lower() == left_stem)
            rights = m.unused(rel, lambda f: f.stem.lower() == right_stem)
            if lefts and rights:
                m.add(lefts[0], rights[0], m.root_name if rel == PurePosixPath(".") else rel.as_posix())
    for rel in list(m.folders):
        sides: dict[tuple[str, str], dict[str, Path]] = {}
        for f in m.unused(rel, lambda f: True):
            hit = listing._SUFFIX.match(f.stem)
            if hit is not None:
                word = hit["word"]
                side = word.lower()[0].upper() if word else hit["letter"]
                sides.setdefault((hit["base"], "word" if word else "letter"), {}).setdefault(side, f)
        for (base, _), found in sorted(sides.items()):
            m.add(found.get("L"), found.get("R"), join(rel, base))
    return sorted(m.pairs.values(), key=lambda p: p.name)


# ---- random trees mixing every layout

FOLDERS = ["leftImg8bit", "rightImg8bit", "image_2", "image_3", "left", "Left", "right", "RIGHT", "a", "val", ".hid"]
STEMS = ["left", "Right", "right", "im0", "im1", "im1E", "x_left", "x_right", "x_L", "x_R", "x_Left", "x_l", "x",
         "a", "b", "a_leftImg8bit", "a_rightImg8bit", "b_leftImg8bit", "b_rightImg8bit", ".h_left", ".h_right"]
EXTS = [".png", ".jpg", ".PNG", ".txt"]

folder = st.lists(st.sampled_from(FOLDERS), max_size=3).map(lambda parts: PurePosixPath(*parts))
near = st.lists(st.sampled_from(["a", "image_2", "left", "leftImg8bit", "right"]), max_size=2).map(lambda parts: PurePosixPath(*parts))
TWINS = {  # a layout across two folders: where its left and right views go, from two folders and a stem
    "cityscapes": (lambda a, b, s: a / "leftImg8bit" / b / f"{s}_leftImg8bit", lambda a, b, s: a / "rightImg8bit" / b / f"{s}_rightImg8bit"),
    "kitti": (lambda a, b, s: a / "image_2" / s, lambda a, b, s: a / "image_3" / s),
    "left-right": (lambda a, b, s: a / "left" / s, lambda a, b, s: a / "right" / s),
    "Left-RIGHT": (lambda a, b, s: a / "Left" / s, lambda a, b, s: a / "RIGHT" / s),
}


@st.composite
def files(draw) -> list[PurePosixPath]:
    """A few places, and files there: one in a folder, or the left and/or right view of a twin layout."""
    places = draw(st.lists(st.one_of(near, folder), min_size=1, max_size=3))
    found = []
    for _ in range(draw(st.integers(1, 25))):
        a, b = draw(st.sampled_from(places)), draw(st.sampled_from(places))
        stem = draw(st.sampled_from(STEMS[:12]) | st.sampled_from(STEMS))
        layout = draw(st.sampled_from(["one folder", "one folder", *TWINS]))
        if layout == "one folder":
            found.append(draw(st.sampled_from([a, a / "left", a / "image_2"])) / (stem + draw(st.sampled_from(EXTS))))
            continue
        for side in draw(st.sampled_from([(0,), (1,), (0, 1), (0, 1), (0, 1)])):
            path = TWINS[layout][side](a, b, stem)
            found.append(path.with_name(path.name + draw(st.sampled_from(EXTS))))
    return found


# links: to a file of the tree; to an ancestor (a loop, skipped by both walks); to a folder outside the root
link = st.tuples(folder, st.sampled_from(["lnk", "zz", "image_3", "right"]), st.sampled_from(["file", "loop", "outside"]), st.integers(0, 99))
tree_spec = st.tuples(files(), st.lists(link, max_size=4))


def build(base: Path, files: list[PurePosixPath], links: list[tuple]) -> Path:
    root = base / "root"
    root.mkdir()
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_bytes(b"")
    for n, (where, name, kind, pick) in enumerate(links):
        at = root / where / (name + ".png" if kind == "file" else name)
        if at.exists() or at.is_symlink() or any(p.is_symlink() for p in at.parents):
            continue
        at.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            at.symlink_to(root / files[pick % len(files)])
        elif kind == "loop":
            at.symlink_to(root / where.parents[pick % len(where.parents)] if where.parts else root)
        else:  # a folder outside the root, linked once, holding a pair of its own
            outside = base / f"outside{n}"
            for f in files[pick % len(files) :][:6] + [PurePosixPath("p_left.png"), PurePosixPath("p_right.png")]:
                (outside / f).parent.mkdir(parents=True, exist_ok=True)
                (outside / f).write_bytes(b"")
            at.symlink_to(outside, target_is_directory=True)
    return root


def outcome(find: Callable[[Path], list[PairPaths]], root: Path) -> list[tuple[str, str, str]] | str:
    try:
        return [(p.name, p.left.relative_to(root).as_posix(), p.right.relative_to(root).as_posix()) for p in find(root)]
    except ValueError:
        return "name clash"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_spec)
def test_the_streaming_listing_finds_the_pairs_the_whole_tree_matcher_found(spec) -> None:
    files, links = spec
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp), files, links)
        assert outcome(find_pairs, root) == outcome(old_find_pairs, root)


@settings(max_examples=30, deadline=None)
@given(tree_spec)
def test_every_image_is_in_one_pair_or_unpaired_and_files_are_walked_once(spec) -> None:
    files, links = spec
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp), files, links)
        folders = list(walk_folders(root))
        paired = [f for d in folders for p in d.pairs for f in (p.left, p.right)]
        unpaired = [f for d in folders for f in d.unpaired]
        images = [f for d in folders for f in d.files if is_image(f)]
        assert len(paired) == len(set(paired)) and sorted(paired + unpaired) == sorted(images)
        assert [d.rel for d in folders] == sorted((d.rel for d in folders), key=lambda r: r.parts)  # depth first, by name


# ---- hand-written trees

def touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return root


def names(root: Path) -> list[tuple[str, str, str]]:
    return [(p.name, p.left.relative_to(root).as_posix(), p.right.relative_to(root).as_posix()) for p in find_pairs(root)]


def test_every_layout_mixed_in_one_tree_with_hidden_files_links_and_unpaired_images(tmp_path: Path) -> None:
    root = touch(tmp_path / "data",
                 "leftImg8bit/train/aachen/a_000019_leftImg8bit.png", "rightImg8bit/train/aachen/a_000019_rightImg8bit.png",
                 "kitti/training/image_2/000000_10.png", "kitti/training/image_3/000000_10.png",
                 "kitti/training/image_2/000001_10.png",  # no image_3 twin: unpaired
                 "seq/left/0001.jpg", "seq/right/0001.jpg", "seq/left/.0002.jpg", "seq/right/.0002.jpg",  # hidden: skipped
                 "instereo/000123/left.png", "instereo/000123/right.png",
                 "middlebury/Adirondack/im0.png", "middlebury/Adirondack/im1.png", "middlebury/Adirondack/im1E.png",
                 "own/shot_left.JPG", "own/shot_right.jpg", "own/cam_L.png", "own/cam_R.png", "own/cam_l.png", "own/notes.txt",
                 "left.png", "right.TIF",  # a pair in the root: named after the root
                 ".cache/x/left.png", ".cache/x/right.png", "lonely.png")  # fmt: skip
    outside = touch(tmp_path / "elsewhere", "day/left.png", "day/right.png")
    (root / "linked").symlink_to(outside)  # a folder outside the tree: walked as if it were here
    (root / "seq" / "loop").symlink_to(root)  # a loop: not walked
    (root / "own" / "alias_left.png").symlink_to(root / "lonely.png")  # a link to a file: a file
    assert names(root) == [
        ("data", "left.png", "right.TIF"),
        ("instereo/000123", "instereo/000123/left.png", "instereo/000123/right.png"),
        ("kitti/training/000000_10", "kitti/training/image_2/000000_10.png", "kitti/training/image_3/000000_10.png"),
        ("linked/day", "linked/day/left.png", "linked/day/right.png"),
        ("middlebury/Adirondack", "middlebury/Adirondack/im0.png", "middlebury/Adirondack/im1.png"),
        ("own/cam", "own/cam_L.png", "own/cam_R.png"),
        ("own/shot", "own/shot_left.JPG", "own/shot_right.jpg"),
        ("seq/0001", "seq/left/0001.jpg", "seq/right/0001.jpg"),
        ("train/aachen/a_000019", "leftImg8bit/train/aachen/a_000019_leftImg8bit.png", "rightImg8bit/train/aachen/a_000019_rightImg8bit.png"),
    ]
    assert names(root) == outcome(old_find_pairs, root)  # as before the listing streamed
    unpaired = sorted(f.relative_to(root).as_posix() for d in walk_folders(root) for f in d.unpaired)
    assert unpaired == ["kitti/training/image_2/000001_10.png", "lonely.png", "middlebury/Adirondack/im1E.png",
                        "own/alias_left.png", "own/cam_l.png"]  # fmt: skip


def test_twin_layouts_decide_at_either_end_with_precedence(tmp_path: Path) -> None:
    touch(tmp_path,
          # a right folder that sorts before its left twin ("RIGHT" < "left"); "Left" takes right/a first
          "s/Left/a.png", "s/left/a.png", "s/left/b.png", "s/RIGHT/a.png", "s/RIGHT/b.jpg", "s/RIGHT/b.png", "s/right/a.png",
          # Cityscapes files inside KITTI folders: Cityscapes first, then KITTI takes what is left
          "k/leftImg8bit/image_2/c_leftImg8bit.png", "k/rightImg8bit/image_2/c_rightImg8bit.png",
          "k/leftImg8bit/image_2/d.png", "k/leftImg8bit/image_3/d.png", "k/leftImg8bit/image_3/c_leftImg8bit.png",
          # a file that a twin layout takes is not offered to left.* + right.*
          "m/left/left.png", "m/right/left.png", "m/right/right.png")  # fmt: skip
    assert names(tmp_path) == [
        ("k/image_2/c", "k/leftImg8bit/image_2/c_leftImg8bit.png", "k/rightImg8bit/image_2/c_rightImg8bit.png"),
        ("k/leftImg8bit/d", "k/leftImg8bit/image_2/d.png", "k/leftImg8bit/image_3/d.png"),
        ("m/left", "m/left/left.png", "m/right/left.png"),
        ("s/a", "s/Left/a.png", "s/RIGHT/a.png"),
        ("s/b", "s/left/b.png", "s/RIGHT/b.jpg"),
    ]
    unpaired = {f.relative_to(tmp_path).as_posix() for d in walk_folders(tmp_path) for f in d.unpaired}
    assert unpaired == {"s/left/a.png", "s/RIGHT/b.png", "s/right/a.png", "k/leftImg8bit/image_3/c_leftImg8bit.png", "m/right/right.png"}


def test_links_into_the_tree_are_walked_at_their_own_path(tmp_path: Path) -> None:
    """Was: a link that sorted first took the folder's pairs under its own name (and the real folder was skipped)."""
    root = touch(tmp_path / "root", "z_real/left.png", "z_real/right.png", ".store/q/left.png", ".store/q/right.png")
    (root / "a_link").symlink_to(root / "z_real")  # into the tree: skipped, z_real is walked where it is
    (root / "z_real" / "up").symlink_to(root)  # a loop
    (root / "q").symlink_to(root / ".store" / "q")  # into a hidden folder, which the walk does not reach
    outside = touch(tmp_path / "outside", "o/left.png", "o/right.png")
    (root / "ext1").symlink_to(outside)
    (root / "ext2").symlink_to(outside)  # the same folder through two links: listed under both
    assert [p.name for p in find_pairs(root)] == ["ext1/o", "ext2/o", "q", "z_real"]


def test_iter_pairs_streams_as_the_walk_goes(tmp_path: Path) -> None:
    touch(tmp_path, "a/left.png", "a/right.png", "b/x_L.png", "b/x_R.png")
    stream = iter_pairs(tmp_path)
    assert next(stream).name == "a"
    (tmp_path / "b" / "x_R.png").unlink()  # b is reached after a's pair was given
    assert list(stream) == []


def test_two_pairs_of_one_name_are_refused_naming_both(tmp_path: Path) -> None:
    touch(tmp_path, "v/s/left.png", "v/s/right.png", "leftImg8bit/v/s_leftImg8bit.png", "rightImg8bit/v/s_rightImg8bit.png")
    with pytest.raises(ValueError, match=re.escape(f"'v/s': {tmp_path / 'leftImg8bit/v/s_leftImg8bit.png'} and {tmp_path / 'v/s/left.png'}")):
        find_pairs(tmp_path)
