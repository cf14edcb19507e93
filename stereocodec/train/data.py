"""Training data: crops of real stereo pairs, and stereo pairs synthesised from single photos.

Both datasets return float32 tensors of shape (3, 2, crop, crop) in [0, 1], depth index 0
the left view and 1 the right view, the layout the BiSIC networks take. Every random choice
of an item comes from a generator seeded with (seed, index, epoch), so an item can be
reproduced from those three numbers whatever the worker or the order it was drawn in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from torch.utils.data import Dataset

from ..io.pairs import PairPaths, is_image

DEPTH_MODELS = ("mixed", "layered", "planar")
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def photo_paths(root: Path) -> list[Path]:
    """Image files under `root` (recursively, hidden ones skipped), sorted, to feed the synthetic set."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"not a directory: {root}")
    found = (
        p
        for p in root.rglob("*")
        if is_image(p) and p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _split_key(item: object, seed: int) -> float:
    name = item.name if isinstance(item, (PairPaths, Path)) else str(item)
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_train_val(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Split by a hash of each item's name, so that adding files never moves the others.

    Items are PairPaths (keyed by their relative name), Paths (keyed by file name, so that
    moving the data set keeps the split) or anything else (keyed by str). The validation
    share is `val_fraction` on average; when the hash picks none from two or more items,
    the item with the lowest hash is held out so that validation is never empty.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = [_split_key(item, seed) for item in items]
    is_val = [k < val_fraction for k in keys]
    if val_fraction > 0 and len(items) > 1 and not any(is_val):
        is_val[int(np.argmin(keys))] = True
    train = [item for item, v in zip(items, is_val) if not v]
    val = [item for item, v in zip(items, is_val) if v]
    return train, val


def _rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit grayscale is scaled down rather than clipped as convert() would."""
    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _to_tensor(left: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Stack two float CHW views in [0, 1] into (3, 2, H, W) float32, after the flip-swap augmentation.

    Mirroring a stereo pair left-right turns the left view into a right view of the mirrored
    scene and vice versa, so a flip must also exchange the views to remain a valid pair.
    """
    if rng.random() < 0.5:
        left, right = right[..., ::-1], left[..., ::-1]
    return torch.from_numpy(np.stack([left, right], axis=1).astype(np.float32, copy=False))


def _chw(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))


class _EpochSeeded(Dataset):
    """Per-item generators from (seed, index, epoch); the trainer calls set_epoch each epoch."""

    def __init__(self, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New crops each epoch, yet reproducible: the same (seed, index, epoch) gives the same item."""
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index, self.epoch])


class StereoPairDataset(_EpochSeeded):
    """Random crops of real stereo pairs: one crop box for both views, then the flip-swap."""

    def __init__(self, pairs: Sequence[PairPaths], crop: int, seed: int = 0) -> None:
        super().__init__(seed)
        self.pairs = list(pairs)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self.rng(index)
        pair = self.pairs[index]
        with Image.open(pair.left) as left_im, Image.open(pair.right) as right_im:
            left_im, right_im = ImageOps.exif_transpose(left_im), ImageOps.exif_transpose(right_im)
            # views of unequal size (should not happen) are cut to their common top-left part
            w, h = min(left_im.width, right_im.width), min(left_im.height, right_im.height)
            cw, ch = min(w, self.crop), min(h, self.crop)
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x0, y0, x0 + cw, y0 + ch)
            views = [_chw(_rgb(im.crop(box))) for im in (left_im, right_im)]
        pad = ((0, 0), (0, self.crop - ch), (0, self.crop - cw))
        left, right = (np.pad(v, pad, mode="edge").astype(np.float32) / 255.0 for v in views)
        return _to_tensor(left, right, rng)


def render_right(
    src: np.ndarray, fill: np.ndarray, disparity: np.ndarray, width: int, pad: int, dy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Render the right view of a scene whose left view is `src[:, pad:H - pad, pad:pad + width]`.

    `src` (C, H, W) float32 is the textured scene seen from the left and `disparity` (H, W)
    its left disparity in pixels (>= 0; a surface at left column x shows at right column
    x - d), wide enough to hold what the right camera sees beyond the left crop.
    Occlusion: every source pixel is splatted to the right columns floor(x - d) and
    ceil(x - d) with a z-buffer that keeps the largest disparity, the nearest surface.
    Disocclusion: right pixels that no source pixel reaches take the disparity of the
    farther neighbouring surface and their texture from `fill` (C, H, W), so that they show
    content the left view does not. `dy` (|dy| <= pad) shifts the right camera vertically,
    sub-pixel. Returns the right view (C, H - 2 pad, width) and its (H - 2 pad, width) hole mask.
    """
    h, w = disparity.shape
    xr = np.arange(w, dtype=np.float32) - pad - disparity
    row = np.arange(h, dtype=np.intp)[:, None] * width
    zbuf = np.full(h * width, -1.0, dtype=np.float32)
    for col in (np.floor(xr).astype(np.intp), np.ceil(xr).astype(np.intp)):
        ok = (col >= 0) & (col < width)
        np.maximum.at(zbuf, (row + col)[ok], disparity[ok])
    rows, r0 = h - 2 * pad, int(round(pad + dy))
    d_right = zbuf.reshape(h, width)[r0 : r0 + rows]
    holes = d_right < 0

    # splatting to whole columns is 1 px coarse; on smooth surfaces refine d by a fixed point
    # of d = disparity(x + d), keeping the old value where that jumps to another surface
    src_rows = disparity[r0 : r0 + rows]
    cols = np.arange(width, dtype=np.float32)
    for _ in range(2):
        x = np.clip(pad + cols + d_right, 0, w - 1.001)
        xi = x.astype(np.intp)
        fx = x - xi
        d_new = np.take_along_axis(src_rows, xi, 1) * (1 - fx) + np.take_along_axis(src_rows, xi + 1, 1) * fx
        d_right = np.where(~holes & (np.abs(d_new - d_right) < 0.5), d_new, d_right)

    if holes.any():
        idx = np.broadcast_to(np.arange(width), holes.shape)
        nxt = np.minimum.accumulate(np.where(holes, width, idx)[:, ::-1], axis=1)[:, ::-1]
        prv = np.maximum.accumulate(np.where(holes, -1, idx), axis=1)
        padded = np.concatenate([d_right, np.full((rows, 1), np.inf, np.float32)], axis=1)
        d_next = np.take_along_axis(padded, nxt, 1)
        d_prev = np.take_along_axis(padded, np.where(prv < 0, width, prv), 1)
        d_bg = np.minimum(d_next, d_prev)
        d_right = np.where(holes, np.where(np.isfinite(d_bg), d_bg, 0.0), d_right)

    # one bilinear gather from src and fill side by side; hole pixels read the fill half
    both = torch.from_numpy(np.concatenate([src, fill], axis=2).astype(np.float32, copy=False))
    xs = np.clip(pad + cols + d_right, 0, w - 1) + np.where(holes, w, 0)
    ys = np.broadcast_to(np.clip(pad + dy + np.arange(rows, dtype=np.float32)[:, None], 0, h - 1), xs.shape)
    grid = np.stack([xs / (2 * w - 1), ys / (h - 1)], axis=-1) * 2 - 1
    right = F.grid_sample(both[None], torch.from_numpy(grid.astype(np.float32))[None], align_corners=True)
    return right[0].numpy(), holes


def _planar(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, low: float, high: float) -> np.ndarray:
    """A slanted plane whose disparity runs from `low` to `high` across the grid in a random direction."""
    theta = rng.uniform(0, 2 * math.pi)
    proj = math.cos(theta) * xs + math.sin(theta) * ys
    proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    return (low + (high - low) * proj).astype(np.float32)


def _shape_mask(rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, size: float) -> np.ndarray:
    """A random ellipse, rotated rectangle or star-shaped polygon of roughly `size` pixels radius."""
    h, w = ys.shape[0], xs.shape[1]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    angle = rng.uniform(0, math.pi)
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
    ru, rv = size * rng.uniform(0.5, 1.5, size=2)
    kind = rng.integers(3)
    if kind == 0:
        return (u / ru) ** 2 + (v / rv) ** 2 <= 1
    if kind == 1:
        return (np.abs(u) <= ru) & (np.abs(v) <= rv)
    n = int(rng.integers(5, 10))
    vertex_angles = np.sort(rng.uniform(-math.pi, math.pi, n))
    radii = size * rng.uniform(0.5, 1.3, n)
    period_angles = np.concatenate([vertex_angles - 2 * math.pi, vertex_angles, vertex_angles + 2 * math.pi])
    boundary = np.interp(np.arctan2(v, u), period_angles, np.tile(radii, 3))
    return np.hypot(u, v) <= boundary


def segment_mask(rng: np.random.Generator, image: np.ndarray, min_share: float = 0.03,
                 max_share: float = 0.5, tries: int = 4) -> np.ndarray | None:
    """A region of similar colour around a random seed pixel of `image` (8-bit CHW), or None.

    Foreground objects in real scenes are bounded by image edges; a depth layer cut along a
    colour segment gives occlusion boundaries where the picture has them, not seams through
    flat texture. The region is a flood fill (Pillow) on a blurred half-size copy, kept when it
    covers between `min_share` and `max_share` of the frame, and closed (max then min filter).
    """
    h, w = image.shape[1:]
    small = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).resize((max(1, w // 2), max(1, h // 2)))
    small = small.filter(ImageFilter.GaussianBlur(1.5))
    for _ in range(tries):
        filled = small.copy()
        seed = (int(rng.integers(filled.width)), int(rng.integers(filled.height)))
        marker = (1, 254, 3) if filled.getpixel(seed) != (1, 254, 3) else (254, 1, 252)
        ImageDraw.floodfill(filled, seed, marker, thresh=float(rng.uniform(12, 40)))
        region = np.all(np.asarray(filled) == marker, axis=2) & np.any(np.asarray(small) != marker, axis=2)
        if min_share <= region.mean() <= max_share:
            # a closing fills the specks that texture leaves inside a segment, so layers stay solid
            mask = Image.fromarray(region.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
            mask = mask.filter(ImageFilter.MinFilter(5)).resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(mask) > 127
    return None


def random_disparity(
    rng: np.random.Generator, shape: tuple[int, int], max_disparity: float, model: str,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """A random left disparity map (float32, in [0, max_disparity]) of a plausible scene.

    'planar': one slanted plane (no occlusions inside the frame). 'layered': a slanted
    background plus 1-3 fronto-parallel layers in front of it (2-4 layers), nearer layers
    with larger disparity, so that the right view has occlusions and disocclusions. With the
    scene's `image` (8-bit CHW, of `shape`), layers follow its colour segments where one of a
    useful size is found (`segment_mask`), else random shapes. 'mixed': layered three times
    out of four, planar otherwise.
    """
    if model not in DEPTH_MODELS:
        raise ValueError(f"unknown depth model {model!r}; expected one of {DEPTH_MODELS}")
    ys = np.arange(shape[0], dtype=np.float32)[:, None]
    xs = np.arange(shape[1], dtype=np.float32)[None, :]
    if model == "planar" or (model == "mixed" and rng.random() < 0.25):
        low, high = np.sort(rng.uniform(0, max_disparity, 2))
        return _planar(rng, ys, xs, low, high)
    background_top = rng.uniform(0, 0.4) * max_disparity
    disparity = _planar(rng, ys, xs, 0.0, background_top)
    layers = np.sort(rng.uniform(background_top, max_disparity, int(rng.integers(1, 4))))
    short_side = min(shape)
    for d in layers:  # far to near, so that nearer layers overwrite farther ones
        mask = segment_mask(rng, image) if image is not None else None
        if mask is None:
            mask = _shape_mask(rng, ys, xs, short_side * rng.uniform(0.1, 0.3))
        disparity[mask] = d
    return disparity


def _photometric(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The gain, bias, gamma and tint by which two real cameras differ.

    `view` is 8-bit CHW, so all four are one 256-entry table per channel. No per-view sensor
    noise: it is incompressible, and a codec trained to spend bits on it wastes them on real pairs.
    """
    gamma = math.exp(rng.uniform(-0.1, 0.1))
    gain = rng.uniform(0.92, 1.08) * rng.uniform(0.97, 1.03, 3)
    bias = rng.uniform(-0.03, 0.03)
    levels = (np.arange(256) / 255.0) ** gamma
    lut = (gain[:, None] * levels + bias).astype(np.float32)
    return _quantize(np.stack([lut[c][view[c]] for c in range(view.shape[0])]))


def _quantize(view: np.ndarray) -> np.ndarray:
    """Round to the 8-bit levels that real images, and the codec's inputs, have."""
    return np.rint(np.clip(view, 0.0, 1.0) * 255.0) / np.float32(255.0)


class SyntheticStereoDataset(_EpochSeeded):
    """Stereo pairs made on the fly from single photos, for training beyond the few real pairs.

    Per item: a random region of a photo at a random scale is the left view (plus a margin
    that the right camera sees beyond the left frame); a random depth scene (see
    `random_disparity`, or a constant `fixed_disparity`) gives the disparity; the right view
    is rendered with z-buffered occlusions and disocclusions filled from another, mirrored
    region of the photo (`render_right`); then a sub-pixel vertical offset of the right
    camera (up to `max_vertical_shift` px), per-view photometric differences (`photometric`)
    and the flip-swap. Both views are 8-bit valued like real images. Photos are decoded per
    item (JPEG at reduced size when the scale allows), so memory stays flat with many workers.
    """

    def __init__(
        self,
        photos: Sequence[Path],
        crop: int,
        seed: int = 0,
        max_disparity: float | None = None,
        depth_model: str = "mixed",
        fixed_disparity: float | None = None,
        scale_range: tuple[float, float] = (0.5, 1.0),
        max_vertical_shift: float = 1.0,
        photometric: bool = True,
    ) -> None:
        super().__init__(seed)
        if depth_model not in DEPTH_MODELS:
            raise ValueError(f"unknown depth model {depth_model!r}; expected one of {DEPTH_MODELS}")
        self.photos = list(photos)
        self.crop = crop
        # real rectified pairs reach about a quarter of a crop's width (near objects at 128-256 px)
        self.max_disparity = crop / 4 if max_disparity is None else float(max_disparity)
        if fixed_disparity is not None and not 0 <= fixed_disparity <= self.max_disparity:
            raise ValueError(f"fixed_disparity must be in [0, {self.max_disparity}], got {fixed_disparity}")
        self.depth_model = depth_model
        self.fixed_disparity = fixed_disparity
        self.scale_range = scale_range
        self.max_vertical_shift = max_vertical_shift
        self.photometric = photometric
        self.pad = int(math.ceil(max_vertical_shift)) + 1

    def __len__(self) -> int:
        return len(self.photos)

    def _regions(self, path: Path, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Two 8-bit (3, h, w) regions of the photo at one random scale: the scene and the mirrored fill."""
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(0x0112, 1) in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            lo, hi = self.scale_range
            scale = max(math.exp(rng.uniform(math.log(lo), math.log(hi))), h / height, w / width)
            im.draft("RGB", (math.ceil(im.width * scale), math.ceil(im.height * scale)))
            image = ImageOps.exif_transpose(_rgb(im))
        scale *= width / image.width  # output pixels per decoded pixel, after any JPEG draft
        rw, rh = min(w / scale, image.width), min(h / scale, image.height)
        regions = []
        for _ in range(2):
            x0, y0 = rng.uniform(0, image.width - rw), rng.uniform(0, image.height - rh)
            regions.append(image.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + rw, y0 + rh)))
        return _chw(regions[0]), _chw(regions[1].transpose(Image.Transpose.FLIP_LEFT_RIGHT))

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = self.rng(index)
        crop, pad = self.crop, self.pad
        h, w = crop + 2 * pad, crop + int(math.ceil(self.max_disparity)) + 2 * pad
        src_u8, fill_u8 = self._regions(self.photos[index], rng, h, w)
        src = src_u8.astype(np.float32)
        # match the fill's colour statistics to the scene's (on a subsample: it is only a tint)
        s_stats, f_stats = (v[:, ::4, ::4].reshape(3, -1) for v in (src, fill_u8.astype(np.float32)))
        scale = (s_stats.std(1) + 1.0) / (f_stats.std(1) + 1.0)
        fill = (fill_u8 - f_stats.mean(1)[:, None, None]) * scale[:, None, None] + s_stats.mean(1)[:, None, None]
        if self.fixed_disparity is not None:
            disparity = np.full((h, w), self.fixed_disparity, dtype=np.float32)
        else:
            disparity = random_disparity(rng, (h, w), self.max_disparity, self.depth_model, image=src_u8)
        dy = rng.uniform(-self.max_vertical_shift, self.max_vertical_shift)
        right, _ = render_right(src, np.clip(fill, 0, 255).astype(np.float32), disparity, crop, pad, dy)
        right_u8 = np.rint(right).astype(np.uint8)
        left_u8 = src_u8[:, pad : pad + crop, pad : pad + crop]
        if self.photometric:
            left, right = _photometric(left_u8, rng), _photometric(right_u8, rng)
        else:
            left, right = left_u8 / np.float32(255.0), right_u8 / np.float32(255.0)
        return _to_tensor(left, right, rng)
