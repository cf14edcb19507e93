"""Byte identity: today's `stereo-codec encode` writes exactly the files the code wrote before the
restructure into subpackages, with the shipped weights. Any change to networks, coding order,
range coder or container layout shows up here as a byte difference.

The fixtures in tests/data/identity were made from the 96x64 crops stored beside them:

    stereo-codec encode left.png right.png -o bisic-fast-q3.sbic --variant bisic-fast -q 3
    stereo-codec encode left.png right.png -o bisic-q1.sbic --variant bisic -q 1

When new weights are shipped on purpose, make them again with those commands.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from stereocodec.container import Container

IDENTITY = Path(__file__).parent / "data" / "identity"


@pytest.mark.parametrize(("fixture", "args"), [
    ("bisic-fast-q3.sbic", ()),  # the defaults: shipped bisic-fast weights, quality 3
    ("bisic-q1.sbic", ("--variant", "bisic", "-q", "1")),
])
def test_encode_is_byte_identical(tmp_path: Path, fixture: str, args: tuple[str, ...]) -> None:
    expected = (IDENTITY / fixture).read_bytes()
    out = tmp_path / fixture
    run_cli("encode", IDENTITY / "left.png", IDENTITY / "right.png", "-o", out, *args, check=True)
    got = out.read_bytes()
    if got != expected:
        old, new = Container.from_bytes(expected), Container.from_bytes(got)
        assert new.weights_fingerprint == old.weights_fingerprint, (
            f"the shipped {old.variant} weights changed since {fixture} was made: remake it (see this module's docstring)"
        )
    assert got == expected
