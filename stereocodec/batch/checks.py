"""Checks a batch makes before any pair is coded: the output folder, unpaired images, --sbs.

A batch that would fail for every pair (an unwritable folder, a bad option) must fail once, up
front; images it will not code must be named rather than skipped in silence.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..io.images import InputError
from ..io.outputs import check_writable

WIDE = 1.6  # width / height above which a lone image looks like two views side by side


def check_writable_dir(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be made in it, or fail in one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{folder}: cannot write there ({e.strerror or e})") from None
    check_writable(folder)


def _wide(path: Path) -> bool:
    try:
        with Image.open(path) as img:  # reads the header only
            return img.width >= WIDE * img.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def unpaired_note(root: Path, count: int, examples: list[Path], found_any: bool) -> str | None:
    """What to tell about the `count` images left out, of which the first few are `examples` (the
    listing is streamed, not held): a note, or (when nothing was found) the error text, which
    suggests --sbs when the examples all look like side-by-side pairs."""
    if not count:
        return None
    example = examples[0].relative_to(root).as_posix()
    if not found_any and all(_wide(p) for p in examples):
        return (f"{root}: no stereo pairs found, but its {count} image(s) (e.g. {example}) look like "
                "side-by-side pairs: add --sbs (and --cross if the right view comes first)")
    what = f"{count} image(s) under {root} are in no stereo pair and are not coded (e.g. {example})"
    return f"{root}: no stereo pairs found; {what}" if not found_any else what
