"""Structure-aware fuzzing of the decoder: every input ends in views of the declared size or a
one-line user error; never another exception, a hang, a memory blow-up or an output file.

The corpus (tests/data/fuzz/, plus the store fixtures) holds small valid files. Hypothesis
mutates them: header fields with the CRCs recomputed (through the container, or byte by byte
with the header CRC fixed up), the stream table, the payloads (stream CRCs recomputed), and raw
bytes and truncations. The CI run takes about STEREOCODEC_FUZZ_SECONDS (default 60); a longer
run is `STEREOCODEC_FUZZ_SECONDS=3600 python -m pytest -q tests/test_fuzz.py -s`, which prints
the number of cases. Views are limited to 256x256 here (the size limit is tested in
test_limits.py) so that each case takes a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
import time
import zlib
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, assert_clean_error, need_archive
from stereocodec.errors import StereoCodecError
from stereocodec.codec import Codec
from stereocodec.container import Container, ContainerError, Stream, ViewInfo
from stereocodec.store import StoredWeights, default_entry, find, load_stored

CORPUS = sorted((ROOT / "tests" / "data" / "fuzz").glob("*.sbic")) + sorted((ROOT / "tests" / "data" / "store").glob("*.sbic"))
SEEDS = [p.read_bytes() for p in CORPUS]
MAX_PIXELS = 256 * 256
SECONDS = float(os.environ.get("STEREOCODEC_FUZZ_SECONDS", "60"))
CASE_DEADLINE_S = 60  # a hang: no case of at most 256x256 takes this long, even on a busy machine
MEMORY_GROWTH_LIMIT = 2 * 2**30


def codec_for(variant: str, fp: bytes) -> Codec:
    """What `stereo-codec decode` would use for a file (as store.load_for picks): the stored
    weights of its fingerprint, else the default of its variant; each loaded once."""
    return _codec(find(fp) or default_entry(variant))


@cache
def _codec(entry: StoredWeights) -> Codec:
    return Codec(load_stored(entry), max_pixels=MAX_PIXELS)


def check_decode(data: bytes) -> str:
    """Decode like the CLI; 'ok' or 'refused'. Anything but a one-line user error fails."""
    try:
        header = Container.from_bytes(data)
        decoded = codec_for(header.variant, header.weights_fingerprint).decode(data)
    except StereoCodecError as e:
        assert str(e) and "\n" not in str(e), repr(e)
        return "refused"
    view = header.views[0]
    assert decoded.left.shape == decoded.right.shape == (view.height, view.width, 3)
    return "ok"


def fix_header_crc(data: bytearray) -> bytes:
    """Recompute the header CRC after a header edit (when the header length still fits)."""
    n = int.from_bytes(data[6:10], "little")
    if 10 <= n and n + 4 <= len(data):
        data[n:n + 4] = zlib.crc32(bytes(data[:n])).to_bytes(4, "little")
    return bytes(data)


def header_length(data: bytes) -> int:
    return int.from_bytes(data[6:10], "little")


seeds = st.sampled_from(SEEDS)
dims = st.integers(1, 300) | st.integers(1, 65535)


@st.composite
def field_mutations(draw) -> bytes:
    """A container with fields changed and every CRC recomputed (invalid fields raise at once)."""
    c = Container.from_bytes(draw(seeds))
    kind = draw(st.sampled_from(["views", "padded", "quality", "variant", "fingerprint", "checksum", "names", "streams"]))
    if kind == "views":
        views = tuple(ViewInfo(draw(dims), draw(dims), draw(st.sampled_from(["RGB", "L", "RGBA"]))) for _ in range(2))
        c = dataclasses.replace(c, views=views, padded_height=-(-views[0].height // 64) * 64, padded_width=-(-views[0].width // 64) * 64)
    elif kind == "padded":
        c = dataclasses.replace(c, padded_height=draw(dims), padded_width=draw(dims))
    elif kind == "quality":
        c = dataclasses.replace(c, quality=draw(st.integers(0, 255)))
    elif kind == "variant":
        c = dataclasses.replace(c, variant=draw(st.sampled_from(["bisic", "bisic-fast"])))
    elif kind == "fingerprint":
        c = dataclasses.replace(c, weights_fingerprint=draw(st.sampled_from([Container.from_bytes(s).weights_fingerprint for s in SEEDS]) | st.binary(min_size=32, max_size=32)))
    elif kind == "checksum":
        c = dataclasses.replace(c, symbols_checksum=draw(st.integers(0, 2**32 - 1)))
    elif kind == "names":
        c = dataclasses.replace(c, weights_name=draw(st.text(max_size=40)), coder=draw(st.text(st.characters(max_codepoint=127), max_size=40)))
    else:  # the stream table: reorder, drop, duplicate, rename, or change a payload
        streams = list(c.streams)
        op = draw(st.sampled_from(["reorder", "drop", "rename", "payload", "extra"]))
        if op == "reorder":
            streams = streams[::-1]
        elif op == "drop":
            del streams[draw(st.integers(0, len(streams) - 1))]
        elif op == "rename":
            i = draw(st.integers(0, len(streams) - 1))
            streams[i] = Stream(draw(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)), streams[i].data)
        elif op == "extra":
            streams.append(Stream("x", draw(st.binary(max_size=64))))
        else:
            i = draw(st.integers(0, len(streams) - 1))
            payload = bytearray(streams[i].data)
            for _ in range(draw(st.integers(1, 8))):
                edit = draw(st.sampled_from(["set", "cut", "grow"]))
                if edit == "set" and payload:
                    payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
                elif edit == "cut":
                    payload = payload[: draw(st.integers(0, len(payload)))]
                else:
                    payload += draw(st.binary(min_size=1, max_size=16))
            streams[i] = Stream(streams[i].name, bytes(payload))
        c = dataclasses.replace(c, streams=tuple(streams))
    try:
        return c.to_bytes()
    except ContainerError:
        return draw(seeds)[: draw(st.integers(0, 80))]  # not writable: a truncated seed instead


@st.composite
def header_byte_mutations(draw) -> bytes:
    """Bytes of the header set to anything, the header CRC recomputed: the parser's own checks."""
    data = bytearray(draw(seeds))
    n = header_length(bytes(data))
    for _ in range(draw(st.integers(1, 6))):
        data[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
    return fix_header_crc(data)


@st.composite
def raw_mutations(draw) -> bytes:
    """Bytes flipped, inserted, deleted, truncated: what damage does."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i:i + draw(st.integers(1, 8))]
        else:
            data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


cases = field_mutations() | header_byte_mutations() | raw_mutations() | st.binary(max_size=200)


def test_corpus_decodes() -> None:
    need_archive()  # the store fixtures made by archived weights
    assert len(SEEDS) >= 5 and all(check_decode(s) == "ok" for s in SEEDS)


def test_fuzz_decode(capsys) -> None:
    counts = {"ok": 0, "refused": 0}
    start = time.monotonic()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @settings(max_examples=200, deadline=CASE_DEADLINE_S * 1000, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases)
    def one(data: bytes) -> None:
        counts[check_decode(data)] += 1

    try:
        while time.monotonic() - start < SECONDS:
            one()
    finally:
        with capsys.disabled():
            print(f"\nfuzz: {sum(counts.values())} cases in {time.monotonic() - start:.0f} s "
                  f"({counts['ok']} decoded, {counts['refused']} refused)")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    assert grown < MEMORY_GROWTH_LIMIT, f"peak memory grew by {grown / 2**20:.0f} MiB"
    assert counts["ok"] > 0 and counts["refused"] > 0


@pytest.mark.parametrize("mutate", ["header", "payload", "truncate"])
def test_fuzz_cli_cases(tmp_path, mutate) -> None:
    """A few mutated files through the real CLI: one line, exit 1, no output file."""
    seed = bytearray(SEEDS[0])
    n = header_length(bytes(seed))
    if mutate == "header":
        seed[16] ^= 0xFF  # the fingerprint: weights nobody shipped
        data = fix_header_crc(seed)
    elif mutate == "payload":
        c = Container.from_bytes(bytes(seed))
        data = dataclasses.replace(c, streams=(c.streams[0], Stream("y", c.streams[1].data[:8]))).to_bytes()
    else:
        data = bytes(seed[: n + 2])
    path = tmp_path / "case.sbic"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "stereocodec", "decode", path, "-o", tmp_path / "out"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert_clean_error(proc)
    assert proc.returncode == 1 and "internal error" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.sbic"]
