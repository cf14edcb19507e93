"""Checks a batch makes before any pair is coded: the output folder, unpaired images, --sbs.

A batch that would fail for every pair (an unwritable folder, a bad option) must fail once, up
front; images it will not code must be named rather than skipped in silence.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..io.images import InputError
from ..io.outputs import check_writable
from ..io.pairs import is_image, list_files

WIDE = 1.6  # width / height above which a lone image looks like two views side by side


def check_writable_dir(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be made in it, or fail in one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{folder}: cannot write there ({e.strerror or e})") from None
    check_writable(folder)


def unpaired_images(root: Path, used: set[Path]) -> list[Path]:
    """Images under `root` that no source uses, sorted."""
    return [f for f in list_files(root, is_image) if f not in used]


def _wide(path: Path) -> bool:
    try:
        with Image.open(path) as img:  # reads the header only
            return img.width >= WIDE * img.height
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def unpaired_note(root: Path, unpaired: list[Path], found_any: bool) -> str | None:
    """What to tell about images left out: a note, or (when nothing was found) the error text."""
    if not unpaired:
        return None
    example = unpaired[0].relative_to(root).as_posix()
    if not found_any and all(_wide(p) for p in unpaired):
        return (f"{root}: no stereo pairs found, but its {len(unpaired)} image(s) (e.g. {example}) look like "
                "side-by-side pairs: add --sbs (and --cross if the right view comes first)")
    what = f"{len(unpaired)} image(s) under {root} are in no stereo pair and are not coded (e.g. {example})"
    return f"{root}: no stereo pairs found; {what}" if not found_any else what
