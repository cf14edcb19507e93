"""Tests of pair discovery (stereocodec.io.pairs) and the training datasets (stereocodec.train.data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stereocodec.io.pairs import PairPaths, find_pairs
from stereocodec.train.data import (
    StereoPairDataset,
    SyntheticStereoDataset,
    photo_paths,
    random_disparity,
    render_right,
    split_train_val,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_dir(sub: str) -> Path:
    """A folder of the read-only shared data; skipped in a user clone, an error under CI."""
    path = SHARED / sub
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing but CI is set: the shared data must be mounted in CI")
        pytest.skip(f"../shared not present (a user clone): {path}")
    return path


def write_image(path: Path, array: np.ndarray | None = None, size: tuple[int, int] = (8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array is None:
        array = np.zeros((size[1], size[0], 3), np.uint8)
    Image.fromarray(array).save(path)
    return path


def touch_all(root: Path, names: list[str]) -> None:
    for name in names:
        if name.endswith(".txt"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("not an image")
        else:
            write_image(root / name)


def pairs_as_tuples(root: Path) -> list[tuple[str, str, str]]:
    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return [(p.name, rel(p.left), rel(p.right)) for p in find_pairs(root)]


LAYOUTS = {
    "instereo2k": (
        ["train/000001/left.png", "train/000001/right.png", "train/000002/left.png", "train/000002/right.png"],
        [
            ("train/000001", "train/000001/left.png", "train/000001/right.png"),
            ("train/000002", "train/000002/left.png", "train/000002/right.png"),
        ],
    ),
    "middlebury": (
        ["Adirondack-perfect/im0.png", "Adirondack-perfect/im1.png", "Adirondack-perfect/im1E.png"],
        [("Adirondack-perfect", "Adirondack-perfect/im0.png", "Adirondack-perfect/im1.png")],
    ),
    "kitti": (
        ["training/image_2/000000_10.png", "training/image_3/000000_10.png", "training/image_2/000001_10.png",
         "training/image_3/000001_10.png"],
        [
            ("training/000000_10", "training/image_2/000000_10.png", "training/image_3/000000_10.png"),
            ("training/000001_10", "training/image_2/000001_10.png", "training/image_3/000001_10.png"),
        ],
    ),
    "cityscapes": (
        ["leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png",
         "rightImg8bit/val/lindau/lindau_000000_000019_rightImg8bit.png"],
        [("val/lindau/lindau_000000_000019", "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png",
          "rightImg8bit/val/lindau/lindau_000000_000019_rightImg8bit.png")],
    ),
    "sibling_folders": (
        ["seq1/left/0001.png", "seq1/right/0001.jpg", "seq1/left/0002.png", "seq1/right/0002.png"],
        [("seq1/0001", "seq1/left/0001.png", "seq1/right/0001.jpg"),
         ("seq1/0002", "seq1/left/0002.png", "seq1/right/0002.png")],
    ),
    "suffix_words": (
        ["shots/cat_left.jpg", "shots/cat_right.jpg", "shots/dog_Left.PNG", "shots/dog_Right.png"],
        [("shots/cat", "shots/cat_left.jpg", "shots/cat_right.jpg"),
         ("shots/dog", "shots/dog_Left.PNG", "shots/dog_Right.png")],
    ),
    "suffix_letters": (
        ["img_0001_L.png", "img_0001_R.png"],
        [("img_0001", "img_0001_L.png", "img_0001_R.png")],
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_find_pairs_layouts(tmp_path: Path, layout: str) -> None:
    files, expected = LAYOUTS[layout]
    touch_all(tmp_path, files)
    assert pairs_as_tuples(tmp_path) == expected


def test_pair_in_the_root_is_named_after_the_root(tmp_path: Path) -> None:
    root = tmp_path / "aloe"
    touch_all(root, ["left.jpg", "right.jpg"])
    assert pairs_as_tuples(root) == [("aloe", "left.jpg", "right.jpg")]


def test_find_pairs_mixed_tree_ignores_unmatched_files(tmp_path: Path) -> None:
    matched = [
        "instereo/a/left.png", "instereo/a/right.png",
        "mb/Piano/im0.png", "mb/Piano/im1.png",
        "kitti/training/image_2/000005_10.png", "kitti/training/image_3/000005_10.png",
        "cs/leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png",
        "cs/rightImg8bit/train/aachen/aachen_000000_000019_rightImg8bit.png",
        "seq/left/f1.png", "seq/right/f1.png",
        "flat/p_left.png", "flat/p_right.png", "flat/q_L.bmp", "flat/q_R.bmp",
    ]
    unmatched = [
        "instereo/b/left.png",  # no right
        "mb/Piano/im1E.png", "mb/Lone/im0.png",  # exposure variant; im0 without im1
        "kitti/training/image_2/000006_10.png",  # no image_3 twin
        "kitti/training/disp_occ_0/000005_10.png",
        "cs/leftImg8bit/train/aachen/aachen_000000_000020_leftImg8bit.png",
        "seq/left/f2.png", "seq/right/f3.png",  # stems differ
        "flat/r_left.png", "flat/s_l.png", "flat/s_r.png",  # lower-case _l/_r are not sides
        "flat/notes.txt", "flat/.hidden_left.png", "flat/.hidden_right.png", ".cache/left.png", ".cache/right.png",
    ]
    touch_all(tmp_path, matched + unmatched)
    result = pairs_as_tuples(tmp_path)
    assert [name for name, _, _ in result] == [
        "cs/train/aachen/aachen_000000_000019",
        "flat/p",
        "flat/q",
        "instereo/a",
        "kitti/training/000005_10",
        "mb/Piano",
        "seq/f1",
    ]
    used = [f for _, left, right in result for f in (left, right)]
    assert sorted(used) == sorted(matched)
    assert pairs_as_tuples(tmp_path) == result  # deterministic


def test_a_file_belongs_to_one_pair_only(tmp_path: Path) -> None:
    # left/right folders of Middlebury-named files: im0/im1 in one folder must not pair again
    touch_all(tmp_path, ["x/left/im0.png", "x/right/im0.png", "x/left/im1.png", "x/right/im1.png"])
    assert pairs_as_tuples(tmp_path) == [
        ("x/im0", "x/left/im0.png", "x/right/im0.png"),
        ("x/im1", "x/left/im1.png", "x/right/im1.png"),
    ]


def test_find_pairs_rejects_non_directories_and_name_clashes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        find_pairs(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a directory"):
        find_pairs(write_image(tmp_path / "one.png"))
    touch_all(tmp_path / "clash", ["s/left.png", "s/right.png", "s_left.png", "s_right.png"])
    with pytest.raises(ValueError, match="'s'"):
        find_pairs(tmp_path / "clash")


def test_shared_stereo_pairs_are_found() -> None:
    root = shared_dir("data/stereo")
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["aloe", "foundation", "mb_playtable"]
    assert all(p.left.stem == "left" and p.right.stem == "right" for p in pairs)


def test_real_pairs_follow_the_disparity_convention() -> None:
    """Crops of real pairs, flipped or not, match right(x) = left(x + d) with d > 0."""
    ds = StereoPairDataset(find_pairs(shared_dir("data/stereo")), crop=256, seed=0)
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            assert best_shift(*views(ds[i]), max_shift=64, min_shift=-64) > 0


def test_photo_paths_lists_images_recursively_in_order(tmp_path: Path) -> None:
    touch_all(tmp_path, ["b.jpg", "a.PNG", "sub/c.webp", "notes.txt", ".hidden.png", ".git/x.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in photo_paths(tmp_path)] == ["a.PNG", "b.jpg", "sub/c.webp"]
    with pytest.raises(ValueError):
        photo_paths(tmp_path / "b.jpg")


def test_split_train_val_is_stable_under_additions() -> None:
    items = [Path(f"/data/photo_{i:04d}.jpg") for i in range(400)]
    train, val = split_train_val(items, 0.2, seed=0)
    assert sorted(train + val) == sorted(items) and not set(train) & set(val)
    assert 0.12 < len(val) / len(items) < 0.28
    assert split_train_val(items, 0.2, seed=0) == (train, val)
    assert split_train_val(items, 0.2, seed=1)[1] != val
    # a moved data set keeps its split (file names, not full paths, are hashed)
    moved = [Path("/elsewhere") / p.name for p in items]
    assert [p.name for p in split_train_val(moved, 0.2, seed=0)[1]] == [p.name for p in val]
    more = items + [Path(f"/data/new_{i}.jpg") for i in range(100)]
    train2, val2 = split_train_val(more, 0.2, seed=0)
    assert set(val) <= set(val2) and set(train) <= set(train2)
    pairs = [PairPaths(Path("l"), Path("r"), f"scene{i}") for i in range(3)]
    assert len(split_train_val(pairs, 0.01, seed=0)[1]) == 1  # never an empty validation set
    assert split_train_val(pairs, 0.0, seed=0) == (pairs, [])
    with pytest.raises(ValueError):
        split_train_val(pairs, 1.0, seed=0)


def marker_pair(root: Path, w: int = 24, h: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    left = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
    right = np.roll(left, -3, axis=1)
    left[4:8, 2:5] = (255, 0, 0)  # a marker only the left view has
    write_image(root / "left.png", left)
    write_image(root / "right.png", right)
    return left, right


def test_flip_swap_keeps_left_and_right_consistent(tmp_path: Path) -> None:
    left, right = marker_pair(tmp_path / "p")
    h, w = left.shape[:2]
    ds = StereoPairDataset(find_pairs(tmp_path), crop=w, seed=5)  # crop wider than high: padded
    plain = np.concatenate([left, np.repeat(left[-1:], w - h, 0)]) / 255.0
    plain_r = np.concatenate([right, np.repeat(right[-1:], w - h, 0)]) / 255.0
    seen = set()
    for epoch in range(16):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item.shape == (3, 2, w, w) and item.dtype == torch.float32
        view0, view1 = (item[:, i].permute(1, 2, 0).numpy() for i in (0, 1))
        flipped = bool(np.allclose(view1, plain[:, ::-1], atol=1e-6))
        if flipped:  # the mirrored left became the right view: the marker is there, mirrored
            np.testing.assert_allclose(view0, plain_r[:, ::-1], atol=1e-6)
            assert np.allclose(view1[4:8, w - 5 : w - 2], (1, 0, 0))
        else:
            np.testing.assert_allclose(view0, plain, atol=1e-6)
            np.testing.assert_allclose(view1, plain_r, atol=1e-6)
            assert np.allclose(view0[4:8, 2:5], (1, 0, 0))
        # either way the pair is valid: left(x + 3) == right(x), with disparity 3
        np.testing.assert_allclose(view0[:h, 3:][~np.isin(np.arange(h), range(4, 8))],
                                   view1[:h, :-3][~np.isin(np.arange(h), range(4, 8))], atol=1e-6)
        seen.add(flipped)
    assert seen == {True, False}


def test_stereo_pair_crops_are_reproducible_and_shared_by_both_views(tmp_path: Path) -> None:
    marker_pair(tmp_path / "p", w=64, h=48)
    ds = StereoPairDataset(find_pairs(tmp_path), crop=16, seed=1)
    a = ds[0]
    assert torch.equal(a, ds[0])
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0])
    assert torch.equal(a, StereoPairDataset(find_pairs(tmp_path), crop=16, seed=1)[0])


@pytest.fixture(scope="module")
def texture_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smooth, non-repeating random texture: every shift of it looks different."""
    rng = np.random.default_rng(7)
    coarse = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    fine = np.asarray(coarse.resize((512, 384), Image.Resampling.BICUBIC), dtype=np.float32)
    fine += rng.normal(0, 6, fine.shape)
    return write_image(tmp_path_factory.mktemp("photos") / "texture.png", np.clip(fine, 0, 255).astype(np.uint8))


def views(item: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return item[:, 0].numpy(), item[:, 1].numpy()


def test_synthetic_items_shape_range_and_determinism(texture_photo: Path) -> None:
    ds = SyntheticStereoDataset([texture_photo] * 3, crop=64, seed=2)
    item = ds[1]
    assert item.shape == (3, 2, 64, 64) and item.dtype == torch.float32
    assert 0.0 <= float(item.min()) and float(item.max()) <= 1.0
    assert torch.equal(item, SyntheticStereoDataset([texture_photo] * 3, crop=64, seed=2)[1])
    assert not torch.equal(item, ds[2])
    ds.set_epoch(3)
    assert not torch.equal(item, ds[1])
    left, right = views(item)
    assert np.abs(left - right).mean() > 0.01  # the views differ
    # 8-bit valued, like real images
    np.testing.assert_allclose(item.numpy() * 255, np.rint(item.numpy() * 255), atol=1e-3)


def best_shift(left: np.ndarray, right: np.ndarray, max_shift: int, min_shift: int = 0) -> int:
    """The integer d for which right(x) best matches left(x + d), by normalised correlation."""
    w, m = left.shape[-1], max(max_shift, -min_shift)
    shifts = range(min_shift, max_shift + 1)
    scores = [np.corrcoef(left[..., m + d : w - m + d].ravel(), right[..., m : w - m].ravel())[0, 1] for d in shifts]
    return shifts[int(np.argmax(scores))]


@pytest.mark.parametrize("disparity", [0, 3, 7])
def test_constant_disparity_right_view_is_a_shift_of_the_left(texture_photo: Path, disparity: int) -> None:
    ds = SyntheticStereoDataset([texture_photo], crop=64, seed=4, fixed_disparity=disparity)
    for epoch in range(4):  # flipped and unflipped items alike, with photometric changes and dy
        ds.set_epoch(epoch)
        assert best_shift(*views(ds[0]), max_shift=8) == disparity
    exact = SyntheticStereoDataset([texture_photo], crop=64, seed=4, fixed_disparity=disparity,
                                   max_vertical_shift=0.0, photometric=False)
    left, right = views(exact[0])
    np.testing.assert_allclose(right[..., : 64 - disparity], left[..., disparity:], atol=1e-6)


def test_render_right_occlusion_and_disocclusion() -> None:
    h, width, w = 20, 40, 50
    src = (np.arange(h)[:, None] * 100 + np.arange(w)[None, :]).astype(np.float32)[None]
    fill = np.full_like(src, -1.0)  # marks content the left view never shows
    disparity = np.full((h, w), 2.0, np.float32)
    disparity[5:15, 20:31] = 8.0  # a nearer square
    right, holes = render_right(src, fill, disparity, width, pad=0, dy=0.0)
    right = right[0]
    expected = src[0][:h, 2 : width + 2].copy()  # the background, seen 2 px to the left
    expected[5:15, 12:23] = src[0][5:15, 20:31]  # the square moves 8 px and hides background
    expected[5:15, 23:29] = -1.0  # background the square hid in the left view: 8 - 2 = 6 px
    np.testing.assert_allclose(right[:width], expected[:width], atol=1e-3)
    assert holes.sum() == 10 * 6 and holes[5:15, 23:29].all()


def test_render_right_subpixel_slanted_plane_has_no_holes() -> None:
    h, width, w = 12, 32, 44
    src = np.tile(np.sin(np.arange(w, dtype=np.float32) / 3.0), (3, h, 1))
    disparity = np.tile(2.0 + 0.15 * np.arange(w, dtype=np.float32), (h, 1))  # disparity rises to the right
    right, holes = render_right(src, np.zeros_like(src), disparity, width, pad=0, dy=0.0)
    assert not holes.any()
    # right(x) = left(x + d) with x + d - d(x + d) = x: solve for the source column
    src_x = (np.arange(width) + 2.0) / (1 - 0.15)
    np.testing.assert_allclose(right[0, 0], np.sin(src_x / 3.0), atol=0.02)


def unexplained_fraction(left: np.ndarray, right: np.ndarray, max_shift: int, tol: float) -> float:
    """Share of right pixels that no half-pixel shift of the left row reproduces within tol.

    Only columns whose every candidate lies inside the left view count: the right view's
    last columns see past the left frame, which is a disocclusion of its own.
    """
    n = left.shape[-1] - max_shift - 1
    errs = []
    for d2 in range(2 * max_shift + 1):
        d, half = divmod(d2, 2)
        cand = left[..., d : d + n] if not half else (left[..., d : d + n] + left[..., d + 1 : d + 1 + n]) / 2
        errs.append(np.abs(cand - right[..., :n]).max(axis=0))
    return float((np.min(errs, axis=0) > tol).mean())


def test_layered_scenes_have_disocclusions_that_planar_scenes_lack(texture_photo: Path) -> None:
    kwargs = dict(crop=96, seed=9, max_vertical_shift=0.0, photometric=False)
    layered = SyntheticStereoDataset([texture_photo] * 6, depth_model="layered", **kwargs)
    planar = SyntheticStereoDataset([texture_photo] * 6, depth_model="planar", **kwargs)
    shift = 96 // 4 + 1  # disparities reach a quarter of the crop
    lay = [unexplained_fraction(*views(layered[i]), max_shift=shift, tol=0.03) for i in range(6)]
    pla = [unexplained_fraction(*views(planar[i]), max_shift=shift, tol=0.03) for i in range(6)]
    assert max(pla) < 0.002  # a plane only shifts and stretches the left view
    # layers uncover what the left view hid (a small colour segment, or one near the edge, uncovers little)
    assert min(lay) > 0.001 and np.mean(lay) > 0.01


def test_random_disparity_ranges_and_layers() -> None:
    rng = np.random.default_rng(0)
    for model in ("planar", "layered", "mixed"):
        for _ in range(5):
            d = random_disparity(rng, (40, 60), 12.0, model)
            assert d.shape == (40, 60) and d.dtype == np.float32
            assert d.min() >= 0 and d.max() <= 12.0
    layered = random_disparity(np.random.default_rng(1), (64, 64), 16.0, "layered")
    assert np.abs(np.diff(layered, axis=1)).max() > 1.0  # depth edges
    with pytest.raises(ValueError):
        random_disparity(rng, (4, 4), 1.0, "spherical")


def test_synthetic_on_shared_photos() -> None:
    photos = photo_paths(shared_dir("data/photos"))
    assert len(photos) > 100
    ds = SyntheticStereoDataset(photos, crop=128, seed=0)
    for i in (0, len(photos) // 2, len(photos) - 1):
        item = ds[i]
        assert item.shape == (3, 2, 128, 128) and 0 <= float(item.min()) <= float(item.max()) <= 1


def test_views_differ_by_camera_effects_only_when_asked(texture_photo: Path) -> None:
    same = dict(crop=64, seed=3, fixed_disparity=0, max_vertical_shift=0.0)
    left, right = views(SyntheticStereoDataset([texture_photo], photometric=False, **same)[0])
    np.testing.assert_array_equal(left, right)
    left, right = views(SyntheticStereoDataset([texture_photo], photometric=True, **same)[0])
    assert np.abs(left - right).mean() > 0.003 and np.corrcoef(left.ravel(), right.ravel())[0, 1] > 0.95
    # a vertical offset alone: small, sub-pixel differences
    shifted = SyntheticStereoDataset([texture_photo], photometric=False, crop=64, seed=3, fixed_disparity=0)
    left, right = views(shifted[0])
    assert 0 < np.abs(left - right).mean() < 0.05
