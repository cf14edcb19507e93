"""Reading and writing the two views: modes, padding, atomic output files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, first_line

PAD_MULTIPLE = 64


@dataclass(frozen=True)
class View:
    pixels: np.ndarray  # uint8 (H, W, 3) RGB, what the network codes
    mode: str  # the input's mode that decode restores: "RGB", "L" or "RGBA"
    notices: tuple[str, ...] = ()


def to_view(img: Image.Image, label: str) -> View:
    """Convert a Pillow image to 8-bit RGB, refusing what cannot be kept faithfully."""
    notices = []
    oriented = ImageOps.exif_transpose(img)
    if oriented is not img and oriented.size != img.size:
        notices.append(f"{label}: rotated by its EXIF orientation")
    img = oriented
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F") or img.info.get("bitdepth", 8) > 8:
        raise InputError(f"{label}: {mode} images ({'16-bit' if mode.startswith('I;16') else 'high bit depth'}) are not supported; convert to 8-bit first")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("LA", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        alpha = np.asarray(img.getchannel("A"))
        if alpha.min() < 255:
            raise InputError(f"{label}: has transparent pixels; stereo-codec codes opaque images only (flatten the alpha first)")
        notices.append(f"{label}: opaque alpha channel dropped for coding, restored on decode")
        return View(np.asarray(img.convert("RGB")), "RGBA", tuple(notices))
    if mode == "L":
        notices.append(f"{label}: grayscale, coded as RGB and returned as grayscale")
        return View(np.asarray(img.convert("RGB")), "L", tuple(notices))
    if mode == "1":
        notices.append(f"{label}: 1-bit image coded as 8-bit grayscale")
        return View(np.asarray(img.convert("RGB")), "L", tuple(notices))
    if mode != "RGB":
        notices.append(f"{label}: {mode} converted to RGB")
        img = img.convert("RGB")
    return View(np.asarray(img), "RGB", tuple(notices))


def read_view(path: str | Path, label: str | None = None) -> View:
    """One view from an image file, as RGB (with notices of any conversion); `label` names it in messages."""
    path = Path(path)
    label = label or path.name
    try:
        with Image.open(path) as img:
            img.load()
            return to_view(img, label)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: not a readable image ({first_line(e)})") from None


def check_pair(left: View, right: View) -> None:
    """Refuse views that cannot form a pair: unequal sizes, or sides the container cannot record."""
    if left.pixels.shape != right.pixels.shape:
        (hl, wl), (hr, wr) = left.pixels.shape[:2], right.pixels.shape[:2]
        raise InputError(f"left is {wl}x{hl} but right is {wr}x{hr}; the views of a pair must have the same size")
    h, w = left.pixels.shape[:2]
    if h > 65535 or w > 65535:
        raise InputError(f"views of {w}x{h} are too large (65535 px per side at most)")


def padded_size(h: int, w: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    """(h, w) rounded up to `multiple`, the size the networks see (the views are edge-padded to it)."""
    return -(-h // multiple) * multiple, -(-w // multiple) * multiple


def pair_tensor(left: np.ndarray, right: np.ndarray, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """(1, 3, 2, H', W') float32 in [0, 1], edge-replicated to a multiple of `multiple`."""
    h, w = left.shape[:2]
    ph, pw = padded_size(h, w, multiple)
    views = [np.pad(v, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge") for v in (left, right)]
    x = torch.from_numpy(np.stack(views)).permute(3, 0, 1, 2)[None]
    return x.float() / 255.0


def to_uint8(x_hat: torch.Tensor, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction (1, 3, 2, H', W') -> two uint8 HWC views cropped to h x w (clamped, rounded)."""
    x = (x_hat[0, :, :, :h, :w].clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return x[:, 0].permute(1, 2, 0).numpy(), x[:, 1].permute(1, 2, 0).numpy()


def restore_mode(pixels: np.ndarray, mode: str) -> Image.Image:
    """A decoded RGB view back in the pixel mode its file recorded (L, RGBA: alpha opaque)."""
    img = Image.fromarray(pixels, "RGB")
    return img if mode == "RGB" else img.convert(mode)


def check_output(path: Path, force: bool) -> None:
    """Refuse, before any work, an output that exists (without `force`), is a folder or has no folder."""
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise InputError(f"{path} is a directory")
    if not path.parent.exists():
        raise InputError(f"{path.parent}: no such directory")


def write_temp(path: Path, write: Callable[[BinaryIO], object]) -> str:
    """Write to a temporary file beside `path`, so that one rename completes it; a permission or
    disk error is a one-line InputError and leaves nothing behind."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
        raise
    return tmp


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None


def write_bytes(path: Path, data: bytes, force: bool = False) -> None:
    """Write a file whole or not at all (`atomic_write`), after `check_output`."""
    check_output(path, force)
    atomic_write(path, lambda f: f.write(data))


def image_format(path: Path) -> str:
    """Pillow's format name for an output's extension."""
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown image extension {path.suffix!r} (use .png)")
    return fmt


def write_image(path: Path, img: Image.Image, force: bool = False) -> None:
    """Write an image in the format its extension names, whole or not at all."""
    check_output(path, force)
    fmt = image_format(path)
    atomic_write(path, lambda f: img.save(f, format=fmt))
