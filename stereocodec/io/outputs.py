"""Where the CLI's outputs go, and writing them so that no input and no half result is lost.

An output that is one of the inputs is refused even with --force; `-o FOLDER` writes inside the
folder; `-` is standard input or output; decode writes both views or neither.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from .files import is_stdio
from .images import InputError, check_output, image_format, write_temp


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet: compare where they would be
        return a.resolve() == b.resolve()


def check_writable(folder: Path) -> None:
    """Prove a file can be created in `folder` before any work, or fail in one line."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(f"{folder}: cannot write there ({e.strerror or e})") from None


def refuse_inputs(outputs: Iterable[Path], inputs: Iterable[Path]) -> None:
    """An output may never replace an input, --force or not."""
    inputs = [p for p in inputs if not is_stdio(p)]
    for out in outputs:
        if not is_stdio(out) and any(_same_file(out, p) for p in inputs):
            raise InputError(f"{out} is one of the inputs; choose another output (not even --force overwrites an input)")


def encode_output(output: Path, left: Path, right: Path) -> tuple[Path, str | None]:
    """The .sbic path `-o` names, and a note if its name is odd.

    A folder gets LEFT's name with .sbic; an input is refused; an image extension is refused
    (a .sbic named .png would mislead every viewer); any other extension is written with a note.
    """
    if is_stdio(output):
        if sys.stdout.isatty():
            raise InputError("-o -: standard output is a terminal; redirect it to a file or a pipe")
        return output, None
    if output.is_dir():
        output = output / f"{left.stem}.sbic"
    refuse_inputs((output,), (left, right))
    if output.parent.is_dir():
        check_writable(output.parent)
    suffix = output.suffix.lower()
    if suffix == ".sbic":
        return output, None
    if suffix in Image.registered_extensions():
        raise InputError(f"{output}: encode writes a .sbic file, not a {suffix} image; use -o {output.with_suffix('.sbic')}")
    return output, f"{output} does not end in .sbic; it is a .sbic file all the same"


def decode_outputs(input: Path, prefix: Path | None, left: Path | None, right: Path | None) -> tuple[Path, Path]:
    """The two PNG paths of a decode: --left/--right, PREFIX_left/right.png, or inside a folder."""
    if (left is None) != (right is None):
        raise InputError("give both --left and --right, or neither")
    if left is not None and prefix is not None:
        raise InputError("use either -o PREFIX or --left/--right")
    if left is None:
        if prefix is None and is_stdio(input):
            raise InputError("decode -: give -o PREFIX (or --left and --right) for the views read from standard input")
        base = prefix if prefix is not None else input.with_suffix("")
        if prefix is not None and prefix.is_dir():
            base = prefix / ("stdin" if is_stdio(input) else input.with_suffix("").name)
        left, right = (base.parent / f"{base.name}_{v}.png" for v in ("left", "right"))
    if left.resolve() == right.resolve():
        raise InputError("--left and --right name the same file")
    for path in (left, right):
        check_output(path, True)  # the folder exists and the path is not a folder
        check_writable(path.parent)
    refuse_inputs((left, right), (input,))
    return left, right


def write_images_together(images: list[tuple[Path, Image.Image]]) -> None:
    """Write every image or none: each goes to a temporary file first, then all are renamed."""
    formats = [image_format(path) for path, _ in images]
    temps: list[tuple[str, Path]] = []
    done: list[Path] = []
    try:
        for (path, img), fmt in zip(images, formats):
            temps.append((write_temp(path, lambda f, img=img, fmt=fmt: img.save(f, format=fmt)), path))
        for tmp, path in temps:
            os.replace(tmp, path)
            done.append(path)
    except BaseException as e:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        for path in done:
            path.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InputError(f"cannot write the decoded views ({e.strerror or e})") from None
        raise
