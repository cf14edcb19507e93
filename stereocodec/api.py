"""The public Python API: stereo pairs to .sbic bytes and back, from Python code.

    import stereocodec
    data = stereocodec.encode(left, right, quality=2.5)  # paths, PIL images or uint8 arrays
    left, right = stereocodec.decode(data)                # uint8 arrays in the file's pixel mode
    stereocodec.info(data).bpp                            # the header, without weights

The CLI's encode, decode and info commands are a layer over this module (argument parsing,
output files and presentation), so the same inputs and options give the same bytes. Importing
it does not import torch: `info` never needs it, and the networks load when a Codec first codes.
Every user error is a `stereocodec.Error` with a one-line message; what a conversion of an input
did is a `stereocodec.Notice` warning. docs/api.md shows it all with examples.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from .container import Container
from .errors import Error, InputError, Notice, first_line
from .io.files import read_file
from .nn.presets import DEFAULT_VARIANT, VARIANTS

if TYPE_CHECKING:
    from .codec import Codec as Engine
    from .codec import Encoded
    from .io.images import View
    from .rate_control import Reached, Target
    from .weights import LoadedWeights

# A view: an image file's path, a PIL image, or uint8 pixels (H x W, H x W x 3 RGB, H x W x 4 RGBA).
ViewLike = Union[str, os.PathLike, Image.Image, np.ndarray]
# A .sbic file: its bytes, or its path.
FileLike = Union[bytes, bytearray, memoryview, str, os.PathLike]

__all__ = ["Codec", "FileInfo", "FileLike", "StreamInfo", "ViewLike", "decode", "encode", "info"]


def encode(left: ViewLike, right: ViewLike, *, quality: float | None = None, size: int | None = None,
           bpp: float | None = None, psnr: float | None = None, variant: str | None = None, device: str = "cpu",
           weights: str | os.PathLike | None = None, max_pixels: int | None = None, refine: int = 0) -> bytes:
    """A stereo pair as the bytes of one .sbic file: what `stereo-codec encode` writes for the same options.

    `quality` 0.0-5.0 (None: 3, or 0 for single-rate weights), or one target instead: `size`
    (bytes, a ceiling), `bpp` (bits per pixel of both views, a ceiling) or `psnr` (dB, a floor).
    `variant` "bisic-fast" (the default) or "bisic"; `weights` a weights file instead of the
    shipped ones (its variant unless `variant` says); `device` "cpu", "cuda" or "auto";
    `max_pixels` per view raises the size limit; `refine` steps of latent refinement (with a
    quality only). Loads the weights for this call: use `Codec` to code many pairs.
    """
    setting = parse_setting(quality, size, bpp, psnr, refine)  # the options, then the views, then the weights
    views = read_pair(left, right)
    return Codec(variant, weights=weights, device=device, max_pixels=max_pixels).encode_views(*views, setting, refine)[0].data


def decode(data: FileLike, *, weights: str | os.PathLike | None = None, device: str = "cpu",
           max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two views of a .sbic file (its bytes or path) as uint8 arrays in the pixel mode the file
    stores: H x W for grayscale, H x W x 3 for RGB, H x W x 4 (opaque) for RGBA, as
    `stereo-codec decode` writes them.

    The shipped weights that wrote the file are found by its fingerprint; `weights` names a
    file instead (it must be the one). Loads the weights for this call: use `Codec` for many files.
    """
    container = Container.from_bytes(_read(data)[0])
    return Codec(weights=weights, device=device, max_pixels=max_pixels).decode_container(container)


@dataclass(frozen=True)
class StreamInfo:
    """One coded stream of a file: its name, size, and bits per pixel of both views."""

    name: str
    bytes: int
    bpp: float


@dataclass(frozen=True)
class FileInfo:
    """What a .sbic file's header says, field for field what `stereo-codec info --json` prints."""

    file: str | None  # the path it was read from (None for bytes)
    bytes: int  # the whole file
    bpp: float  # bits of the whole file per pixel of both views
    variant: str
    quality: float  # on the continuous scale, as the file stores it
    format_version: int
    weights: str  # the weights' name
    weights_fingerprint: str  # hex; decode finds the weights by it
    coder: str
    width: int
    height: int
    modes: tuple[str, str]  # each view's pixel mode: "RGB", "L" or "RGBA"
    padded: tuple[int, int]  # (height, width) the networks coded
    header_bytes: int
    symbols_checksum: str  # 8 hex digits
    streams: tuple[StreamInfo, ...]

    def bpp_of(self, nbytes: int) -> float:
        """Bits per pixel of both views for `nbytes` (a part of the file), as `bpp` counts the whole."""
        return 8 * nbytes / (2 * self.height * self.width)


def info(data: FileLike) -> FileInfo:
    """A .sbic file's header and streams (from its bytes or path), checked but not decoded: no weights, no torch."""
    raw, file = _read(data)
    c = Container.from_bytes(raw)
    return FileInfo(
        file=file, bytes=len(raw), bpp=c.bpp(len(raw)), variant=c.variant, quality=c.quality_value,
        format_version=c.version, weights=c.weights_name, weights_fingerprint=c.weights_fingerprint.hex(),
        coder=c.coder, width=c.views[0].width, height=c.views[0].height, modes=(c.views[0].mode, c.views[1].mode),
        padded=(c.padded_height, c.padded_width), header_bytes=c.header_size(),
        symbols_checksum=f"{c.symbols_checksum:08x}",
        streams=tuple(StreamInfo(s.name, len(s.data), c.bpp(len(s.data))) for s in c.streams),
    )


class Codec:
    """Weights loaded once, for coding many pairs and files.

    `variant`, `weights`, `device` and `max_pixels` mean what they mean for `encode`. Weights load
    when first needed and stay loaded: for encoding, the `weights` file or the variant's shipped
    default; for decoding, the shipped version that wrote each file (found by its fingerprint),
    or the `weights` file.

    Thread-safe: one Codec may be used from several threads. Plain encodes and decodes run at
    the same time (each call has its own coder state; the networks only read their weights).
    Latent refinement (`refine`) and decoding a legacy v1/v2 file change process-wide torch state
    (the training flag and the random generator; the thread count), so such a call waits for
    the running calls of every Codec in the process and runs alone.
    """

    def __init__(self, variant: str | None = None, *, weights: str | os.PathLike | None = None,
                 device: str = "cpu", max_pixels: int | None = None) -> None:
        from .io.images import InputError
        from .weights import WeightsError

        if variant is not None and variant not in VARIANTS:
            raise InputError(f"unknown variant {variant!r} (choose {' or '.join(VARIANTS)})")
        if max_pixels is not None and not (_is_whole(max_pixels) and max_pixels >= 1):
            raise InputError(f"max_pixels must be a whole number of pixels, 1 or more, not {max_pixels!r}")
        if weights is not None and not Path(weights).is_file():
            raise WeightsError(f"weights file not found: {weights}")
        self.variant = variant  # what encode codes with (None: bisic-fast, or the weights file's own)
        self.weights = None if weights is None else Path(weights)
        self.device = resolve_device(device)
        self.max_pixels = max_pixels
        self._engines: dict[object, Engine] = {}
        self._loading = threading.Lock()

    def encode(self, left: ViewLike, right: ViewLike, *, quality: float | None = None, size: int | None = None,
               bpp: float | None = None, psnr: float | None = None, refine: int = 0) -> bytes:
        """A pair as .sbic bytes, with the options of `stereocodec.encode`."""
        setting = parse_setting(quality, size, bpp, psnr, refine)
        return self.encode_views(*read_pair(left, right), setting, refine)[0].data

    def decode(self, data: FileLike) -> tuple[np.ndarray, np.ndarray]:
        """The two views of a .sbic file, as `stereocodec.decode` gives them."""
        return self.decode_container(Container.from_bytes(_read(data)[0]))

    def check_size(self, height: int, width: int) -> None:
        """Refuse views of this size (above the pixel limit, or more than free memory holds for the
        network) before any network runs; encode checks it too, this says it before the work starts."""
        self._engine(self.variant).check_size(height, width)

    def encode_views(self, left: View, right: View, setting: float | Target | None, refine: int = 0,
                     reconstruct: bool = False) -> tuple[Encoded, Reached | None]:
        """The coding under `encode`, for views from `read_pair` at a setting from `parse_setting`:
        the encoding (with the decoder's views when `reconstruct`) and what a target's search reached."""
        from .rate_control import encode_pair

        engine = self._engine(self.variant)
        engine.check_size(*left.pixels.shape[:2])
        if refine:
            with _TORCH_STATE.exclusive():
                return engine.encode(left, right, setting, reconstruct, refine_steps=refine), None
        with _TORCH_STATE.shared():
            return encode_pair(engine, left, right, setting, reconstruct)

    def check_decodable(self, container: Container) -> None:
        """Load the weights that decode this parsed file and refuse it, before any network runs, when
        they cannot (other weights, a size over the limit, streams too short for the declared size)."""
        self._engine(container.variant, container.weights_fingerprint).check_decodable(container)

    def decode_container(self, container: Container) -> tuple[np.ndarray, np.ndarray]:
        """The views of an already parsed file (the CLI parses it once, to refuse it early)."""
        from .io.images import restore_mode

        engine = self._engine(container.variant, container.weights_fingerprint)
        state = _TORCH_STATE.shared if container.entropy_path == "exact" else _TORCH_STATE.exclusive
        with state():
            decoded = engine.decode_container(container)
        left, right = (np.array(restore_mode(pixels, view.mode)) for pixels, view in zip((decoded.left, decoded.right), container.views))
        return left, right

    def _engine(self, variant: str | None, fingerprint: bytes | None = None) -> Engine:
        """The network that encodes `variant` (no `fingerprint`) or decodes a file of `variant` that
        `fingerprint` wrote, loaded on first use (as `stereo-codec encode` and `decode` choose it)."""
        from . import store
        from .codec import Codec as Engine

        if self.weights is not None:
            key: object = ("file", variant)
            entry = None
        else:
            found = store.find(fingerprint) if fingerprint is not None else None
            entry = found or store.default_entry(variant or DEFAULT_VARIANT)
            key = entry.fingerprint
        with self._loading:
            if key not in self._engines:
                loaded = store.load_chosen(self.weights, variant, None, self.device) if entry is None else store.load_stored(entry, self.device)
                engine = self._engines[key] = Engine(loaded, self.max_pixels)
                if self.weights is not None:  # encode's None is the file's own variant: decode finds it under that too
                    self._engines.setdefault(("file", engine.model.variant), engine)
            return self._engines[key]


def read_pair(left: ViewLike, right: ViewLike) -> tuple[View, View]:
    """Both views as the codec takes them (8-bit RGB with the mode decode restores), refused when
    they cannot form a pair.

    Paths, PIL images and arrays all go through the CLI's conversion of an image file
    (`io.images.to_view`), so the same pixels code to the same bytes in whatever form they came;
    what a conversion did (an opaque alpha dropped, grayscale coded as RGB) is warned as a `Notice`.
    """
    from .io.images import check_pair

    views = _view(left, "left"), _view(right, "right")
    check_pair(*views)
    for note in views[0].notices + views[1].notices:
        warnings.warn(note, Notice, stacklevel=3)  # at the caller of encode
    return views


def parse_setting(quality: float | None = None, size: int | None = None, bpp: float | None = None,
                  psnr: float | None = None, refine: int = 0) -> float | Target | None:
    """What to encode at: a quality (None: the default) or the target among size, bpp and psnr,
    refused as the CLI refuses it (one target at most, not with a quality, positive, not refined)."""
    from .io.images import InputError
    from .rate_control import Target

    quality, bpp, psnr = (None if v is None else _number(name, v) for name, v in (("quality", quality), ("bpp", bpp), ("psnr", psnr)))
    if size is not None and not _is_whole(size):
        raise InputError(f"size must be a whole number of bytes, not {size!r}")
    if not (_is_whole(refine) and refine >= 0):
        raise InputError(f"refine must be a whole number of steps, 0 or more, not {refine!r}")
    target = Target.from_options(None if size is None else int(size), bpp, psnr, quality)
    if target is not None and refine:
        raise InputError("--refine goes with --quality, not with a target (each of the target's trial encodes would refine)")
    return quality if target is None else target


def resolve_device(name: str) -> str:
    """A device as torch names it: "auto" picks CUDA when present; CUDA without one is refused."""
    import torch

    from .io.images import InputError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type if isinstance(name, str) else None
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise InputError(f"unknown device {name!r} (use cpu, cuda or auto)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available (use --device cpu)")
    return name


def load_weights_for(path: Path | None, variant: str | None, device: str, fingerprint: bytes | None = None) -> LoadedWeights:
    """The weights a command runs on (`store.load_chosen`), with the default variant when neither a
    file nor a variant is given; for the commands that take no Codec (estimate)."""
    from .store import load_chosen

    return load_chosen(path, variant or (None if path else DEFAULT_VARIANT), fingerprint, resolve_device(device))


def _view(value: ViewLike, label: str) -> View:
    """One view from a path, a PIL image or an array (see `read_pair`); `label` names it in messages."""
    from .io.images import InputError, read_view, to_view

    if isinstance(value, (str, os.PathLike)):
        return read_view(value, label)
    if isinstance(value, np.ndarray):
        value = _array_image(value, label)
    if not isinstance(value, Image.Image):
        raise InputError(f"{label}: a view is a path, a PIL image or a uint8 numpy array, not {type(value).__name__}")
    try:
        return to_view(value, label)
    except (OSError, SyntaxError, ValueError) as e:  # a lazily loaded image whose file is damaged
        if isinstance(e, Error):
            raise
        raise InputError(f"{label}: not a readable image ({first_line(e)})") from None


def _array_image(pixels: np.ndarray, label: str) -> Image.Image:
    """uint8 pixels as the image they hold: H x W grayscale, H x W x 3 RGB or H x W x 4 RGBA."""
    from .io.images import InputError

    if pixels.dtype != np.uint8:
        raise InputError(f"{label}: {pixels.dtype} pixels are not supported; give uint8 (0-255), converted to 8-bit first")
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise InputError(f"{label}: an array of shape {pixels.shape}; a view is H x W (grayscale), H x W x 3 (RGB) or H x W x 4 (RGBA)")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InputError(f"{label}: an empty view ({pixels.shape[1]}x{pixels.shape[0]})")
    return Image.fromarray(np.ascontiguousarray(pixels))


def _read(data: FileLike) -> tuple[bytes, str | None]:
    """A .sbic file's bytes, from bytes or a path (and the path, for messages and `info`)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), None
    if not isinstance(data, (str, os.PathLike)):
        raise InputError(f"a .sbic file is given as bytes or a path, not {type(data).__name__}")
    path = Path(data)
    return read_file(path), str(path)


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(name: str, value: object) -> float:
    """An option's value as a float, refused in one line when it is not a finite number."""
    from .io.images import InputError

    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"{name} must be a number, not {value!r}")
    return float(value)


class _SharedState:
    """Many calls that only read the networks at once, or one that changes process-wide torch state alone."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._readers = 0
        self._alone = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._alone)
            self._readers += 1
        try:
            yield
        finally:
            with self._changed:
                self._readers -= 1
                self._changed.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: not self._alone and not self._readers)
            self._alone = True
        try:
            yield
        finally:
            with self._changed:
                self._alone = False
                self._changed.notify_all()


_TORCH_STATE = _SharedState()  # one per process: the state it guards is torch's own
