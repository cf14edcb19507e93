"""The one error family of stereo-codec: what the user can fix, told in one line."""

from __future__ import annotations


class StereoCodecError(ValueError):
    """Base of every error about the user's input, files or weights; its message is one line."""


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message (at most `limit` characters), or its type's name.

    Third-party errors (Pillow, torch, safetensors) may span many lines; a CLI error shows one.
    """
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__
