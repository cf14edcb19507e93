"""A file's bytes with one-line errors, and `-` for standard input or output; no torch, so `info` stays light."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError


def is_stdio(path: Path) -> bool:
    """`-` names standard input (decode, info) or standard output (encode -o)."""
    return str(path) == "-"


def read_file(path: Path) -> bytes:
    """The bytes of the file at `path` (a .sbic to decode), or an InputError that says why not."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def read_input(path: Path) -> bytes:
    """A file's bytes, as `read_file`; `-` reads standard input."""
    return sys.stdin.buffer.read() if is_stdio(path) else read_file(path)
