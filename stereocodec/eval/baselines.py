"""Traditional image/video codecs as baselines for the learned stereo codec.

Every codec is run for real (Pillow, or the reference command-line tools) and
charged for the complete files a decoder needs, container and headers included,
so that its rate is comparable with the size of an ``.sbic`` file.

Codecs and settings (all 8-bit):

* ``jpeg``   Pillow/libjpeg-turbo, 4:4:4, optimised Huffman tables, one file per view.
* ``webp``   Pillow/libwebp lossy, method 6, one file per view (always 4:2:0, see ``note``).
* ``avif``   ``avifenc``/``avifdec`` (libaom), YUV 4:4:4 BT.709 full range, speed 6, one file per view.
* ``jxl``    ``cjxl``/``djxl``, effort 7, one file per view (XYB, no chroma subsampling).
* ``hevc``   ``ffmpeg`` + libx265, Main 4:4:4 intra, BT.709 full range, constant QP, ``--tune psnr``,
  one raw Annex-B ``.hevc`` stream per view.
* ``hevc-stereo``  same, but the pair is one two-frame stream: left I-frame, right P-frame
  predicted from it (a plain-HEVC stand-in for MV-HEVC).

Timings are wall-clock seconds of the encoder/decoder call only (for the CLI tools
that includes process start-up and reading/writing the uncompressed image file),
summed over both views; they are indicative, not a benchmark of the libraries.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, features


@dataclass(frozen=True)
class CodedPair:
    """A stereo pair after a round trip through a codec, with what it cost."""

    left: np.ndarray  # decoded uint8 HWC RGB
    right: np.ndarray
    streams: tuple[bytes, ...]  # every file a decoder needs for both views, byte for byte
    encode_seconds: float
    decode_seconds: float

    @property
    def nbytes(self) -> int:
        """Total size of the files, i.e. the rate actually paid for both views."""
        return sum(len(s) for s in self.streams)


@runtime_checkable
class BaselineCodec(Protocol):
    """What the report needs from a traditional codec."""

    name: str
    knob: str  # what ``quality`` means for this codec, for tables and plot legends
    note: str  # chroma format and other caveats, one line

    def available(self) -> str | None:
        """None if the codec can run here, else a one-line reason."""
        ...

    def qualities(self) -> list[int]:
        """Default sweep, ordered from lowest to highest quality (~0.1..2 bpp on photos)."""
        ...

    def code(self, left: np.ndarray, right: np.ndarray, quality: int) -> CodedPair:
        """Encode and decode the pair at one setting of ``knob``."""
        ...


def _run(cmd: list[str]) -> float:
    """Run a tool without a shell; return its wall time, or raise a one-line RuntimeError."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RuntimeError(f"{cmd[0]}: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1].strip() if lines else "no output"
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}): {detail}")
    return seconds


def _missing_tools(*tools: str) -> str | None:
    missing = [t for t in tools if shutil.which(t) is None]
    return f"{', '.join(missing)} not found on PATH" if missing else None


def _read_stream(path: Path) -> bytes:
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"encoder produced no output file {path.name}")
    return path.read_bytes()


def _load_png(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    if not path.is_file():
        raise RuntimeError(f"decoder produced no output file {path.name}")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    if rgb.shape != shape:
        raise RuntimeError(f"decoded {path.name} has shape {rgb.shape}, expected {shape}")
    return rgb


class _Codec(ABC):
    """Shared driver: input checks, temp files, view grouping, timing totals.

    Subclasses only say how one group of views becomes a file and back. A group is
    one view, except for codecs with ``joint = True`` that code the pair as one file.
    """

    name: str
    knob: str
    note: str
    joint = False

    def available(self) -> str | None:
        return None

    @abstractmethod
    def qualities(self) -> list[int]: ...

    @abstractmethod
    def _encode(self, views: list[np.ndarray], quality: int, work: Path) -> tuple[Path, float]:
        """Write the coded file for ``views`` under ``work``; return it and the encode time."""

    @abstractmethod
    def _decode(
        self, stream: Path, shape: tuple[int, ...], count: int, work: Path
    ) -> tuple[list[np.ndarray], float]:
        """Decode ``count`` views of ``shape`` from ``stream``; return them and the decode time."""

    def code(self, left: np.ndarray, right: np.ndarray, quality: int) -> CodedPair:
        for view in (left, right):
            if view.dtype != np.uint8 or view.ndim != 3 or view.shape[2] != 3:
                raise ValueError(f"expected uint8 HxWx3 RGB views, got {view.dtype} {view.shape}")
        if left.shape != right.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} differ in shape")
        groups = [[left, right]] if self.joint else [[left], [right]]
        decoded: list[np.ndarray] = []
        streams: list[bytes] = []
        enc_s = dec_s = 0.0
        with tempfile.TemporaryDirectory(prefix=f"stereocodec-{self.name}-") as tmp:
            for i, views in enumerate(groups):
                work = Path(tmp) / str(i)
                work.mkdir()
                path, seconds = self._encode(views, quality, work)
                enc_s += seconds
                streams.append(_read_stream(path))
                out, seconds = self._decode(path, left.shape, len(views), work)
                dec_s += seconds
                decoded.extend(out)
        return CodedPair(decoded[0], decoded[1], tuple(streams), enc_s, dec_s)


class _PillowCodec(_Codec):
    """Still-image codec built into Pillow, one file per view."""

    format: str
    suffix: str

    @abstractmethod
    def _options(self, quality: int) -> dict[str, object]: ...

    def _encode(self, views: list[np.ndarray], quality: int, work: Path) -> tuple[Path, float]:
        image = Image.fromarray(views[0], "RGB")
        buf = io.BytesIO()
        start = time.perf_counter()
        try:
            image.save(buf, self.format, **self._options(quality))
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"Pillow {self.format} encode failed: {exc}") from None
        seconds = time.perf_counter() - start
        path = work / f"view{self.suffix}"
        path.write_bytes(buf.getvalue())
        return path, seconds

    def _decode(
        self, stream: Path, shape: tuple[int, ...], count: int, work: Path
    ) -> tuple[list[np.ndarray], float]:
        data = stream.read_bytes()
        start = time.perf_counter()
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise RuntimeError(f"Pillow {self.format} decode failed: {exc}") from None
        return [rgb], time.perf_counter() - start


class JpegCodec(_PillowCodec):
    name = "jpeg"
    knob = "quality (1-100, higher is better)"
    note = "libjpeg-turbo via Pillow, 4:4:4 (no chroma subsampling), optimised Huffman"
    format = "JPEG"
    suffix = ".jpg"

    def qualities(self) -> list[int]:
        return [5, 10, 20, 30, 40, 50, 60, 70, 80, 90]

    def _options(self, quality: int) -> dict[str, object]:
        return {"quality": quality, "subsampling": 0, "optimize": True}


class WebpCodec(_PillowCodec):
    name = "webp"
    knob = "quality (0-100, higher is better)"
    note = "libwebp lossy via Pillow, 4:2:0: lossy WebP (VP8) cannot code 4:4:4 chroma"
    format = "WEBP"
    suffix = ".webp"

    def available(self) -> str | None:
        return None if features.check("webp") else "Pillow was built without WebP support"

    def qualities(self) -> list[int]:
        return [5, 15, 30, 50, 70, 80, 90, 95]

    def _options(self, quality: int) -> dict[str, object]:
        return {"quality": quality, "method": 6, "lossless": False}


class _CliCodec(_Codec):
    """Codec driven by command-line tools through files in the temp directory."""

    tools: tuple[str, ...]
    suffix: str  # of the coded file
    raw_suffix: str  # of the uncompressed file the tools read and write

    def available(self) -> str | None:
        return _missing_tools(*self.tools)

    @abstractmethod
    def _write_raw(self, views: list[np.ndarray], path: Path) -> None: ...

    @abstractmethod
    def _read_raw(self, path: Path, shape: tuple[int, ...], count: int) -> list[np.ndarray]: ...

    @abstractmethod
    def _encode_cmd(self, src: Path, dst: Path, quality: int, shape: tuple[int, ...]) -> list[str]: ...

    @abstractmethod
    def _decode_cmd(self, src: Path, dst: Path) -> list[str]: ...

    def _encode(self, views: list[np.ndarray], quality: int, work: Path) -> tuple[Path, float]:
        src, dst = work / f"input{self.raw_suffix}", work / f"coded{self.suffix}"
        self._write_raw(views, src)
        return dst, _run(self._encode_cmd(src, dst, quality, views[0].shape))

    def _decode(
        self, stream: Path, shape: tuple[int, ...], count: int, work: Path
    ) -> tuple[list[np.ndarray], float]:
        dst = work / f"decoded{self.raw_suffix}"
        seconds = _run(self._decode_cmd(stream, dst))
        return self._read_raw(dst, shape, count), seconds


class _PngToolCodec(_CliCodec):
    """Still-image CLI pair that reads and writes 8-bit RGB PNG, one file per view."""

    raw_suffix = ".png"

    def _write_raw(self, views: list[np.ndarray], path: Path) -> None:
        Image.fromarray(views[0], "RGB").save(path, compress_level=1)

    def _read_raw(self, path: Path, shape: tuple[int, ...], count: int) -> list[np.ndarray]:
        return [_load_png(path, shape)]


class AvifCodec(_PngToolCodec):
    name = "avif"
    knob = "quality (0-100, higher is better; libavif 1.x -q scale)"
    note = "avifenc/libaom, YUV 4:4:4 BT.709 full range, speed 6, fixed quantizer"
    tools = ("avifenc", "avifdec")
    suffix = ".avif"

    def qualities(self) -> list[int]:
        return [20, 30, 40, 50, 60, 70, 80, 90]

    @staticmethod
    def quantizer(quality: int) -> int:
        """libavif 1.x's own quality -> AV1 quantizer (0-63) mapping, so old and new
        avifenc (whose 0.11 has only --min/--max) give the same result for one quality."""
        if not 0 <= quality <= 100:
            raise ValueError(f"avif quality must be in 0..100, got {quality}")
        return ((100 - quality) * 63 + 50) // 100

    def _encode_cmd(self, src: Path, dst: Path, quality: int, shape: tuple[int, ...]) -> list[str]:
        q = str(self.quantizer(quality))
        return ["avifenc", "-y", "444", "-d", "8", "-r", "full", "--cicp", "1/13/1", "-s", "6", "-j", "1",
                "--min", q, "--max", q, str(src), str(dst)]  # fmt: skip

    def _decode_cmd(self, src: Path, dst: Path) -> list[str]:
        return ["avifdec", "-d", "8", "-j", "1", str(src), str(dst)]


class JxlCodec(_PngToolCodec):
    name = "jxl"
    knob = "quality (higher is better; cjxl -q, ~libjpeg scale, mapped to distance)"
    note = "cjxl/djxl VarDCT, effort 7, XYB colour space without chroma subsampling"
    tools = ("cjxl", "djxl")
    suffix = ".jxl"

    def qualities(self) -> list[int]:
        return [10, 25, 40, 55, 70, 80, 90, 95]

    def _encode_cmd(self, src: Path, dst: Path, quality: int, shape: tuple[int, ...]) -> list[str]:
        return ["cjxl", str(src), str(dst), "-q", str(quality), "-e", "7", "--quiet"]

    def _decode_cmd(self, src: Path, dst: Path) -> list[str]:
        return ["djxl", str(src), str(dst), "--bits_per_sample=8", "--quiet"]


# RGB <-> Y'CbCr, BT.709 matrix, full range, done here rather than in swscale so the
# conversion is exact, documented and identical for encode and decode.
_KR, _KB = 0.2126, 0.0722
_RGB_TO_YCC = np.array(
    [
        [_KR, 1 - _KR - _KB, _KB],
        [-_KR / (2 - 2 * _KB), -(1 - _KR - _KB) / (2 - 2 * _KB), 0.5],
        [0.5, -(1 - _KR - _KB) / (2 - 2 * _KR), -_KB / (2 - 2 * _KR)],
    ]
)
_YCC_TO_RGB = np.linalg.inv(_RGB_TO_YCC)


def rgb_to_yuv444(rgb: np.ndarray) -> np.ndarray:
    """uint8 HWC RGB -> uint8 planar (3, H, W) Y'CbCr, BT.709 full range."""
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCC.T + (0.0, 128.0, 128.0)
    return np.clip(np.rint(ycc), 0, 255).astype(np.uint8).transpose(2, 0, 1)


def yuv444_to_rgb(planes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_yuv444`."""
    ycc = planes.transpose(1, 2, 0).astype(np.float64) - (0.0, 128.0, 128.0)
    return np.clip(np.rint(ycc @ _YCC_TO_RGB.T), 0, 255).astype(np.uint8)


@cache
def _ffmpeg_has_libx265() -> bool:
    try:
        proc = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"],
                              capture_output=True, text=True, check=False)  # fmt: skip
    except OSError:
        return False
    return proc.returncode == 0 and " libx265 " in proc.stdout


class HevcCodec(_CliCodec):
    """HEVC Main 4:4:4 through ffmpeg/libx265 on raw BT.709 full-range planes.

    Constant QP with ipratio=1 so the knob is the QP of every frame; no B-frames, no
    scene-cut I-frames, and no x265 version/options SEI (``info=0``), which would
    otherwise add ~2 kB of text to every stream.
    """

    knob = "QP (0-51, lower is better)"
    tools = ("ffmpeg",)
    suffix = ".hevc"
    raw_suffix = ".yuv"
    preset = "medium"

    def __init__(self, joint: bool) -> None:
        self.joint = joint
        self.name = "hevc-stereo" if joint else "hevc"
        views = "left I + right P in one stream" if joint else "intra, one stream per view"
        self.note = f"ffmpeg/libx265 preset {self.preset}, tune psnr, YUV 4:4:4 BT.709 full range, {views}"

    def available(self) -> str | None:
        missing = _missing_tools(*self.tools)
        if missing:
            return missing
        return None if _ffmpeg_has_libx265() else "ffmpeg was built without libx265"

    def qualities(self) -> list[int]:
        return [42, 38, 35, 32, 29, 26, 23, 20, 17]

    def _write_raw(self, views: list[np.ndarray], path: Path) -> None:
        path.write_bytes(b"".join(rgb_to_yuv444(v).tobytes() for v in views))

    def _read_raw(self, path: Path, shape: tuple[int, ...], count: int) -> list[np.ndarray]:
        h, w = shape[:2]
        data = np.fromfile(path, np.uint8) if path.is_file() else np.empty(0, np.uint8)
        if data.size != count * 3 * h * w:
            raise RuntimeError(f"ffmpeg decoded {data.size} bytes, expected {count} frame(s) of {w}x{h}")
        return [yuv444_to_rgb(f) for f in data.reshape(count, 3, h, w)]

    def _encode_cmd(self, src: Path, dst: Path, quality: int, shape: tuple[int, ...]) -> list[str]:
        if not 0 <= quality <= 51:
            raise ValueError(f"hevc QP must be in 0..51, got {quality}")
        x265 = f"qp={quality}:ipratio=1:keyint=-1:bframes=0:scenecut=0:info=0:log-level=error"
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "yuv444p", "-s", f"{shape[1]}x{shape[0]}", "-r", "1",
                "-i", str(src),
                "-c:v", "libx265", "-preset", self.preset, "-tune", "psnr", "-x265-params", x265,
                "-color_range", "pc", "-colorspace", "bt709",
                "-color_primaries", "bt709", "-color_trc", "bt709",
                "-f", "hevc", str(dst)]  # fmt: skip

    def _decode_cmd(self, src: Path, dst: Path) -> list[str]:
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
                "-f", "hevc", "-i", str(src), "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "yuv444p", str(dst)]  # fmt: skip


CODECS: dict[str, BaselineCodec] = {
    c.name: c
    for c in (JpegCodec(), WebpCodec(), AvifCodec(), JxlCodec(), HevcCodec(False), HevcCodec(True))
}
SBIC = "sbic"
ALL_CODECS = (SBIC, *CODECS)  # what `report` compares: sbic and every baseline


def chroma_note() -> str:
    """One paragraph for the report on how chroma was handled, per codec."""
    return (
        "Chroma: jpeg, avif and hevc/hevc-stereo code Y'CbCr 4:4:4 (no subsampling) and jxl "
        "codes XYB without subsampling; webp is the exception, at 4:2:0, because lossy "
        "WebP (VP8) has no 4:4:4 mode."
    )
