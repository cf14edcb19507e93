"""The versioned ``.sbic`` container (formats v1, v2 and v3): bytes in, bytes out.

This module knows nothing about tensors or entropy coding; it only lays out
metadata and opaque stream payloads so that any corruption, truncation or
version mismatch is reported as a one-line :class:`ContainerError` instead of
a crash or garbage decode. The byte layout is documented in ``docs/format.md``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace

from .errors import StereoCodecError

__all__ = [
    "FIXED_HEADER_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "Container",
    "ContainerError",
    "Stream",
    "ViewInfo",
]

FORMAT_VERSION = 3  # the newest this module reads; v3 for the exact entropy path, else v1 (v2 with a quality fraction)
ENTROPY_PATHS = ("float", "exact")  # how the payloads' model parameters were computed (docs/format.md)
MAGIC = b"SBIC"

# Codes stored in the file; the strings are what the rest of the package uses.
_VARIANT_CODES = {"bisic": 1, "bisic-fast": 2}
_MODE_CODES = {"L": 1, "RGB": 3, "RGBA": 4}  # code = number of channels
_VARIANTS = {v: k for k, v in _VARIANT_CODES.items()}
_MODES = {v: k for k, v in _MODE_CODES.items()}

_MAX_WEIGHTS_NAME = 255
_MAX_CODER = 64
_MAX_STREAM_NAME = 32
_MAX_STREAMS = 255
_MAX_DIM = 65535
_MAX_PAYLOAD = 0xFFFFFFFF

# magic, version, header_length: read first, before the header CRC can be checked.
_PREFIX = struct.Struct("<4sHI")
# Everything else of fixed size, right after the prefix.
_FIXED = struct.Struct("<BB32sHHBHHBHHIBBB")
FIXED_HEADER_SIZE = _PREFIX.size + _FIXED.size  # 65
_ENTRY_TAIL = struct.Struct("<II")  # payload length, payload CRC32
_CRC = struct.Struct("<I")
_QUALITY_FRACTION = struct.Struct("<H")  # v2 and v3: thousandths of a level (v2 1..999, v3 0..999), after the stream table
_MAX_HEADER_LENGTH = (
    FIXED_HEADER_SIZE
    + _MAX_WEIGHTS_NAME
    + _MAX_CODER
    + _MAX_STREAMS * (1 + _MAX_STREAM_NAME + _ENTRY_TAIL.size)
    + _QUALITY_FRACTION.size
)


class ContainerError(StereoCodecError):
    """A ``.sbic`` file (or a container about to be written) is invalid.

    The message is always a single human-readable line, fit for a CLI error.
    """


@dataclass(frozen=True)
class ViewInfo:
    """Original size and Pillow mode of one view, restored on decode."""

    height: int
    width: int
    mode: str  # "RGB", "L" or "RGBA"


@dataclass(frozen=True)
class Stream:
    """One named, opaque entropy-coded payload."""

    name: str  # ASCII, 1..32 bytes
    data: bytes


@dataclass(frozen=True)
class Container:
    """Everything a ``.sbic`` file holds; see ``docs/format.md`` for the layout."""

    variant: str
    weights_name: str
    weights_fingerprint: bytes
    quality: int
    coder: str
    views: tuple[ViewInfo, ViewInfo]
    padded_height: int
    padded_width: int
    symbols_checksum: int
    streams: tuple[Stream, ...]
    quality_thousandths: int = 0  # the quality is `quality + quality_thousandths / 1000`
    entropy_path: str = "float"  # "exact": the integer entropy path of format v3; "float": v1 and v2

    @property
    def quality_value(self) -> float:
        """The quality on the continuous scale: the level, plus the fraction stored by v2 files."""
        return self.quality + self.quality_thousandths / 1000 if self.quality_thousandths else self.quality

    def bpp(self, nbytes: int) -> float:
        """Bits per pixel of `nbytes` (the whole file, or one stream) over both views' pixels."""
        return 8 * nbytes / (2 * self.views[0].height * self.views[0].width)

    @property
    def version(self) -> int:
        """The format version this container is written in: 3 for the exact entropy path; for the
        float one, 2 only when it needs the quality fraction."""
        if self.entropy_path == "exact":
            return 3
        return 2 if self.quality_thousandths else 1

    def to_bytes(self) -> bytes:
        """Serialise; raises ContainerError if any field is out of range."""
        header = self._header()
        parts = [header, _CRC.pack(zlib.crc32(header))]
        parts.extend(bytes(s.data) for s in self.streams)
        return b"".join(parts)

    def header_size(self) -> int:
        """Bytes of the file that are not stream payloads (header, table, CRC)."""
        return len(self._header()) + _CRC.size

    @classmethod
    def from_bytes(cls, data: bytes) -> Container:
        """Parse and fully validate a ``.sbic`` file; raises ContainerError."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ContainerError(f"expected bytes, got {type(data).__name__}")
        try:
            buf = memoryview(data).cast("B")
        except TypeError:
            raise ContainerError("expected a contiguous bytes-like object") from None
        n = len(buf)

        head = bytes(buf[: len(MAGIC)])
        if head != MAGIC[: len(head)]:
            raise ContainerError("not a .sbic file (bad magic)")
        if n < _PREFIX.size:
            raise ContainerError(
                f"truncated .sbic file: header needs {FIXED_HEADER_SIZE + _CRC.size} "
                f"bytes, file has {n}"
            )
        _, version, header_length = _PREFIX.unpack_from(buf, 0)
        _check_version(version)
        if not FIXED_HEADER_SIZE <= header_length <= _MAX_HEADER_LENGTH:
            raise ContainerError(
                f"corrupted .sbic header (invalid header length {header_length})"
            )
        if n < header_length + _CRC.size:
            raise ContainerError(
                f"truncated .sbic file: header needs {header_length + _CRC.size} "
                f"bytes, file has {n}"
            )
        (stored_crc,) = _CRC.unpack_from(buf, header_length)
        if zlib.crc32(buf[:header_length]) != stored_crc:
            raise ContainerError("corrupted .sbic header (CRC32 mismatch)")

        # The header is now authentic; what follows guards against files that
        # were crafted (valid CRC, invalid content) rather than damaged.
        container, entries = _parse_header(bytes(buf[:header_length]))
        try:  # same semantic rules as for writing (sizes, padding, stream names)
            placeholders = tuple(Stream(name, b"") for name, _, _ in entries)
            replace(container, streams=placeholders)._header()
        except ContainerError as exc:
            raise ContainerError(f"invalid .sbic header: {exc}") from None

        expected = header_length + _CRC.size + sum(length for _, length, _ in entries)
        if n < expected:
            raise ContainerError(
                f"truncated .sbic file: streams need {expected} bytes in total, "
                f"file has {n}"
            )
        if n > expected:
            raise ContainerError(
                f"trailing bytes after .sbic data: expected {expected} bytes, "
                f"file has {n}"
            )

        streams = []
        pos = header_length + _CRC.size
        for name, length, crc in entries:
            payload = buf[pos : pos + length]
            if zlib.crc32(payload) != crc:
                raise ContainerError(f"stream {name!r} is corrupted (CRC32 mismatch)")
            streams.append(Stream(name, bytes(payload)))
            pos += length
        return replace(container, streams=tuple(streams))

    def _header(self) -> bytes:
        """Validate every field and pack everything up to the header CRC."""
        if not isinstance(self.variant, str) or self.variant not in _VARIANT_CODES:
            raise ContainerError(
                f"unknown variant {self.variant!r} (expected one of "
                f"{', '.join(sorted(_VARIANT_CODES))})"
            )
        weights_name = _encode_text(
            self.weights_name, "weights name", "utf-8", 0, _MAX_WEIGHTS_NAME
        )
        coder = _encode_text(self.coder, "coder", "ascii", 0, _MAX_CODER)
        fingerprint = self.weights_fingerprint
        if not isinstance(fingerprint, (bytes, bytearray)) or len(fingerprint) != 32:
            raise ContainerError("weights fingerprint must be exactly 32 bytes")
        if self.entropy_path not in ENTROPY_PATHS:
            raise ContainerError(f"unknown entropy path {self.entropy_path!r} (expected one of {', '.join(ENTROPY_PATHS)})")
        _check_int(self.quality, "quality", 0, 255)
        _check_int(self.quality_thousandths, "quality fraction (thousandths)", 0, 999)
        _check_int(self.symbols_checksum, "symbols checksum", 0, 0xFFFFFFFF)
        _check_int(self.padded_height, "padded height", 1, _MAX_DIM)
        _check_int(self.padded_width, "padded width", 1, _MAX_DIM)
        if not isinstance(self.views, tuple) or len(self.views) != 2:
            raise ContainerError("views must be a tuple of exactly 2 ViewInfo (left, right)")
        view_fields: list[int] = []
        for side, view in zip(("left", "right"), self.views):
            if not isinstance(view, ViewInfo):
                raise ContainerError(f"{side} view must be a ViewInfo")
            _check_int(view.height, f"{side} view height", 1, _MAX_DIM)
            _check_int(view.width, f"{side} view width", 1, _MAX_DIM)
            if not isinstance(view.mode, str) or view.mode not in _MODE_CODES:
                raise ContainerError(
                    f"{side} view has unsupported mode {view.mode!r} "
                    f"(expected one of {', '.join(sorted(_MODE_CODES))})"
                )
            if view.height > self.padded_height or view.width > self.padded_width:
                raise ContainerError(
                    f"{side} view {view.height}x{view.width} does not fit in the "
                    f"padded size {self.padded_height}x{self.padded_width}"
                )
            view_fields += [view.height, view.width, _MODE_CODES[view.mode]]

        if not isinstance(self.streams, tuple) or len(self.streams) > _MAX_STREAMS:
            raise ContainerError(f"streams must be a tuple of at most {_MAX_STREAMS} Stream")
        table = []
        seen: set[str] = set()
        for stream in self.streams:
            if not isinstance(stream, Stream):
                raise ContainerError("streams must contain only Stream objects")
            name = _encode_text(stream.name, "stream name", "ascii", 1, _MAX_STREAM_NAME)
            if stream.name in seen:
                raise ContainerError(f"duplicate stream name {stream.name!r}")
            seen.add(stream.name)
            if not isinstance(stream.data, (bytes, bytearray, memoryview)):
                raise ContainerError(f"stream {stream.name!r} data must be bytes")
            payload = memoryview(stream.data).cast("B")
            if len(payload) > _MAX_PAYLOAD:
                raise ContainerError(f"stream {stream.name!r} is larger than 4 GiB")
            table.append(
                bytes([len(name)]) + name + _ENTRY_TAIL.pack(len(payload), zlib.crc32(payload))
            )

        if self.version >= 2:
            table.append(_QUALITY_FRACTION.pack(self.quality_thousandths))
        header_length = FIXED_HEADER_SIZE + len(weights_name) + len(coder) + sum(map(len, table))
        return b"".join(
            [
                _PREFIX.pack(MAGIC, self.version, header_length),
                _FIXED.pack(
                    _VARIANT_CODES[self.variant],
                    self.quality,
                    bytes(fingerprint),
                    *view_fields,
                    self.padded_height,
                    self.padded_width,
                    self.symbols_checksum,
                    len(weights_name),
                    len(coder),
                    len(self.streams),
                ),
                weights_name,
                coder,
                *table,
            ]
        )


def _check_version(version: int) -> None:
    """Refuse versions this reader cannot decode, saying which side to upgrade."""
    if version == 0:
        raise ContainerError("invalid .sbic format version 0 (versions start at 1)")
    if version > FORMAT_VERSION:
        raise ContainerError(
            f"this file uses .sbic format version {version}; this stereo-codec reads "
            f"versions 1 to {FORMAT_VERSION} (upgrade stereo-codec)"
        )


def _check_int(value: object, what: str, lo: int, hi: int) -> None:
    """Range-check an integer field so struct.pack never sees a bad value."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContainerError(f"{what} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ContainerError(f"{what} {value} out of range {lo}..{hi}")


def _encode_text(value: object, what: str, encoding: str, lo: int, hi: int) -> bytes:
    """Encode a text field, refusing control characters so messages stay one line."""
    if not isinstance(value, str):
        raise ContainerError(f"{what} must be a str, got {type(value).__name__}")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ContainerError(f"{what} {value!r} contains control characters")
    try:
        raw = value.encode(encoding)
    except UnicodeEncodeError:
        raise ContainerError(f"{what} {value!r} is not {encoding.upper()}") from None
    if not lo <= len(raw) <= hi:
        raise ContainerError(f"{what} {value!r} must be {lo}..{hi} bytes, got {len(raw)}")
    return raw


def _decode_text(raw: bytes, what: str, encoding: str) -> str:
    """Decode a text field from an authenticated header, never leaking UnicodeDecodeError."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise ContainerError(f"invalid .sbic header: {what} is not {encoding.upper()}") from None


def _parse_header(header: bytes) -> tuple[Container, list[tuple[str, int, int]]]:
    """Unpack a CRC-checked header into a Container (without payloads) and its stream table."""
    version = _PREFIX.unpack_from(header, 0)[1]
    (
        variant_code,
        quality,
        fingerprint,
        lh,
        lw,
        lmode,
        rh,
        rw,
        rmode,
        padded_h,
        padded_w,
        checksum,
        name_len,
        coder_len,
        n_streams,
    ) = _FIXED.unpack_from(header, _PREFIX.size)
    if variant_code not in _VARIANTS:
        raise ContainerError(f"invalid .sbic header: unknown variant code {variant_code}")
    for side, code in (("left", lmode), ("right", rmode)):
        if code not in _MODES:
            raise ContainerError(f"invalid .sbic header: {side} view has unknown mode code {code}")

    pos = FIXED_HEADER_SIZE

    def take(size: int) -> bytes:
        nonlocal pos
        if pos + size > len(header):
            raise ContainerError("invalid .sbic header: header length too small for its contents")
        chunk = header[pos : pos + size]
        pos += size
        return chunk

    weights_name = _decode_text(take(name_len), "weights name", "utf-8")
    coder = _decode_text(take(coder_len), "coder", "ascii")
    entries: list[tuple[str, int, int]] = []
    for _ in range(n_streams):
        name = _decode_text(take(take(1)[0]), "stream name", "ascii")
        length, crc = _ENTRY_TAIL.unpack(take(_ENTRY_TAIL.size))
        entries.append((name, length, crc))
    thousandths = _QUALITY_FRACTION.unpack(take(_QUALITY_FRACTION.size))[0] if version >= 2 else 0
    if version == 2 and not 1 <= thousandths <= 999:
        raise ContainerError(f"invalid .sbic header: quality fraction {thousandths} (a v2 file has 1..999 thousandths)")
    if version == 3 and thousandths > 999:
        raise ContainerError(f"invalid .sbic header: quality fraction {thousandths} (at most 999 thousandths)")
    if pos != len(header):
        raise ContainerError("invalid .sbic header: header length larger than its contents")

    container = Container(
        variant=_VARIANTS[variant_code],
        weights_name=weights_name,
        weights_fingerprint=fingerprint,
        quality=quality,
        coder=coder,
        views=(ViewInfo(lh, lw, _MODES[lmode]), ViewInfo(rh, rw, _MODES[rmode])),
        padded_height=padded_h,
        padded_width=padded_w,
        symbols_checksum=checksum,
        streams=(),
        quality_thousandths=thousandths,
        entropy_path="exact" if version == 3 else "float",
    )
    return container, entries

