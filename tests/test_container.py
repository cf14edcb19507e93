"""Tests of the .sbic container: round trip, and every damage is a ContainerError."""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from dataclasses import replace

import pytest

from stereocodec.container import (
    FORMAT_VERSION,
    MAGIC,
    Container,
    ContainerError,
    Stream,
    ViewInfo,
)


def make_container(sizes: tuple[int, ...] = (200, 3000), seed: int = 0) -> Container:
    rng = random.Random(seed)
    return Container(
        variant="bisic-fast",
        weights_name="default bisic-fast 2026-11-22 é",
        weights_fingerprint=hashlib.sha256(b"weights").digest(),
        quality=3,
        coder="constriction 0.5.0",
        views=(ViewInfo(97, 131, "RGB"), ViewInfo(97, 131, "L")),
        padded_height=128,
        padded_width=192,
        symbols_checksum=0xDEADBEEF,
        streams=tuple(
            Stream(name, rng.randbytes(size)) for name, size in zip(("z", "y"), sizes)
        ),
    )


def small_file() -> bytes:
    return make_container(sizes=(5, 9)).to_bytes()


def test_round_trip() -> None:
    c = make_container()
    data = c.to_bytes()
    assert data[:4] == MAGIC
    back = Container.from_bytes(data)
    assert back == c
    assert back.to_bytes() == data
    assert c.header_size() + 200 + 3000 == len(data)
    assert Container.from_bytes(bytearray(data)) == c
    assert Container.from_bytes(memoryview(data)) == c


def test_round_trip_edge_values() -> None:
    c = Container(
        variant="bisic",
        weights_name="",
        weights_fingerprint=bytes(32),
        quality=255,
        coder="",
        views=(ViewInfo(65535, 1, "RGBA"), ViewInfo(1, 65535, "RGB")),
        padded_height=65535,
        padded_width=65535,
        symbols_checksum=0,
        streams=(Stream("x" * 32, b""),),
    )
    assert Container.from_bytes(c.to_bytes()) == c
    no_streams = replace(c, streams=())
    assert Container.from_bytes(no_streams.to_bytes()) == no_streams


@pytest.mark.parametrize("mask", [0x01, 0xFF])
def test_every_byte_flip_is_detected(mask: int) -> None:
    data = small_file()
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= mask
        with pytest.raises(ContainerError) as info:
            Container.from_bytes(bytes(damaged))
        assert "\n" not in str(info.value), i


def test_every_truncation_is_detected() -> None:
    data = small_file()
    for n in range(len(data)):
        with pytest.raises(ContainerError) as info:
            Container.from_bytes(data[:n])
        assert "\n" not in str(info.value)


def test_truncated_header_messages() -> None:
    data = small_file()
    msg = r"^truncated .sbic file: header needs 69 bytes, file has 8$"
    with pytest.raises(ContainerError, match=msg):
        Container.from_bytes(data[:8])  # header length not readable yet: minimum size
    need = make_container(sizes=(5, 9)).header_size()
    msg = rf"^truncated .sbic file: header needs {need} bytes, file has 12$"
    with pytest.raises(ContainerError, match=msg):
        Container.from_bytes(data[:12])
    with pytest.raises(ContainerError, match=r"^truncated .sbic file: streams need"):
        Container.from_bytes(data[:-1])


def test_trailing_bytes_are_refused() -> None:
    data = small_file()
    for extra in (b"\x00", b"garbage", data):
        with pytest.raises(ContainerError, match="trailing"):
            Container.from_bytes(data + extra)


def test_bad_magic() -> None:
    with pytest.raises(ContainerError, match=r"not a .sbic file \(bad magic\)"):
        Container.from_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ContainerError, match="bad magic"):
        Container.from_bytes(b"X")


def test_payload_corruption_names_the_stream() -> None:
    data = bytearray(small_file())
    data[-1] ^= 0x40  # last byte of stream "y"
    with pytest.raises(ContainerError, match=r"stream 'y' is corrupted \(CRC32 mismatch\)"):
        Container.from_bytes(bytes(data))


def _with_version(data: bytes, version: int) -> bytes:
    """Rewrite the version and fix the header CRC, so only the version is 'wrong'."""
    header_length = struct.unpack_from("<I", data, 6)[0]
    header = bytearray(data[:header_length])
    struct.pack_into("<H", header, 4, version)
    return bytes(header) + struct.pack("<I", zlib.crc32(header)) + data[header_length + 4 :]


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 4, 65535])
def test_newer_version_is_refused(version: int) -> None:
    crafted = _with_version(small_file(), version)
    with pytest.raises(ContainerError) as info:
        Container.from_bytes(crafted)
    msg = str(info.value)
    assert f"version {version}" in msg and "upgrade stereo-codec" in msg


def test_version_zero_is_refused() -> None:
    with pytest.raises(ContainerError, match="version 0"):
        Container.from_bytes(_with_version(small_file(), 0))


def test_crafted_header_with_valid_crc_is_validated() -> None:
    """A header whose CRC is right but content is not must still be refused."""
    data = make_container(sizes=(5, 9)).to_bytes()
    header_length = struct.unpack_from("<I", data, 6)[0]

    def craft(offset: int, fmt: str, value: int) -> bytes:
        header = bytearray(data[:header_length])
        struct.pack_into(fmt, header, offset, value)
        return bytes(header) + struct.pack("<I", zlib.crc32(header)) + data[header_length + 4 :]

    cases = {
        10: ("<B", 9, "variant"),  # variant code
        44: ("<H", 0, "height"),  # left view height
        48: ("<B", 2, "mode"),  # left mode code
        54: ("<H", 64, "padded"),  # padded height < view height
    }
    for offset, (fmt, value, needle) in cases.items():
        with pytest.raises(ContainerError, match=needle):
            Container.from_bytes(craft(offset, fmt, value))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"variant": "bisic-slow"}, "variant"),
        ({"variant": ["bisic"]}, "variant"),
        ({"weights_name": "w" * 256}, "weights name"),
        ({"weights_name": "two\nlines"}, "control"),
        ({"weights_fingerprint": bytes(31)}, "32 bytes"),
        ({"quality": 256}, "quality"),
        ({"quality": -1}, "quality"),
        ({"quality": True}, "quality"),
        ({"coder": "c" * 65}, "coder"),
        ({"coder": "constriction é"}, "ASCII"),
        ({"views": (ViewInfo(97, 131, "RGB"),)}, "views"),
        ({"views": (ViewInfo(97, 131, "CMYK"), ViewInfo(97, 131, "L"))}, "mode"),
        ({"views": (ViewInfo(0, 131, "RGB"), ViewInfo(97, 131, "L"))}, "height"),
        ({"views": (ViewInfo(97, 131, "RGB"), ViewInfo(97, 70000, "L"))}, "width"),
        ({"padded_height": 64}, "padded"),
        ({"padded_width": 0}, "padded width"),
        ({"padded_width": 65536}, "padded width"),
        ({"symbols_checksum": 2**32}, "checksum"),
        ({"symbols_checksum": -1}, "checksum"),
        ({"streams": (Stream("", b"x"),)}, "stream name"),
        ({"streams": (Stream("n" * 33, b"x"),)}, "stream name"),
        ({"streams": (Stream("z", b"a"), Stream("z", b"b"))}, "duplicate"),
        ({"streams": (Stream("z", "text"),)}, "bytes"),  # type: ignore[arg-type]
        ({"streams": tuple(Stream(f"s{i}", b"") for i in range(256))}, "at most 255"),
        ({"streams": [Stream("z", b"")]}, "tuple"),
    ],
)
def test_to_bytes_validates_fields(change: dict[str, object], needle: str) -> None:
    bad = replace(make_container(), **change)
    with pytest.raises(ContainerError, match=needle):
        bad.to_bytes()
    with pytest.raises(ValueError):  # ContainerError is a ValueError
        bad.header_size()


def test_non_bytes_input() -> None:
    with pytest.raises(ContainerError):
        Container.from_bytes("SBIC")  # type: ignore[arg-type]


def test_random_damage_only_raises_container_error() -> None:
    """Multi-byte damage, splices and noise: never another exception type."""
    rng = random.Random(1234)
    data = small_file()
    for _ in range(3000):
        damaged = bytearray(data)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randint(2, 8)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif kind == 1:
            i = rng.randrange(len(damaged))
            damaged[i:i] = rng.randbytes(rng.randint(1, 20))
        else:
            damaged = bytearray(MAGIC + rng.randbytes(rng.randint(0, 200)))
        try:
            Container.from_bytes(bytes(damaged))
        except ContainerError:
            pass


def test_bpp_spreads_bytes_over_both_views() -> None:
    c = make_container()  # two views of 97 x 131
    assert c.bpp(1000) == 8 * 1000 / (2 * 97 * 131)
    assert c.bpp(len(c.to_bytes())) > c.bpp(sum(len(s.data) for s in c.streams))
