"""What every command group shares: the one pair of rich consoles, option types, help texts and
defaults. Free of torch (networks load inside the commands), so that `--help` starts fast."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

import click
from rich.console import Console

from ..errors import Notice
from ..nn.presets import DEFAULT_VARIANT, ENV_WEIGHTS, VARIANTS

VARIANT_CHOICE = click.Choice(VARIANTS)
MAX_PIXELS_HELP = "Largest view size in pixels (default 40 MP, and what free memory holds); raise it for huge images."
DEVICE_CHOICE = click.Choice(["cpu", "cuda", "auto"])
DEVICE_HELP = "Where the networks run (auto: CUDA when available)."

QUALITY_TYPE = float  # the range is the weights' own (0..5 for the shipped ones), checked once they are loaded
QUALITY_HELP = (
    "Quality, 0.0-5.0 for the shipped weights (0 = smallest files, 5 = best; default 3). Integers are the six "
    "trained levels; values between blend the neighbouring levels' gains, rounded to 0.001."
)


def size_targets(command: Callable) -> Callable:
    """--size BYTES and --bpp X: the same rate targets for encode, batch and report."""
    command = click.option(
        "--bpp", type=click.FloatRange(0, min_open=True), default=None, metavar="X",
        help="Like --size, in bits per pixel of both views.",
    )(command)  # fmt: skip
    return click.option(
        "--size", type=click.IntRange(1), default=None, metavar="BYTES",
        help="Choose the highest quality whose file is at most BYTES: within 3 % below it, or the highest quality's file when that is smaller (bisection on real encodes).",
    )(command)  # fmt: skip


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def resolve_device(name: str) -> str:
    """--device as torch names it (`api.resolve_device`: auto picks CUDA when present)."""
    from ..api import resolve_device as resolve

    return resolve(name)


def notice(msg: str) -> None:
    """A yellow note on stderr: something the user should know that is not an error."""
    err.print(f"[yellow]note:[/] {msg}", highlight=False)


@contextmanager
def notes_shown() -> Iterator[None]:
    """Show the API's `Notice` warnings as notes, each one as it comes; other warnings as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", Notice)
        show = warnings.showwarning

        def shown(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, Notice):
                notice(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = shown
        yield

LARGE_JOB_PIXELS = 4_000_000  # both views together: about 10 s and more per encode or decode on a CPU


@contextmanager
def working(what: str, shape: tuple[int, ...]) -> Iterator[None]:
    """Show that a single encode or decode is under way: a spinner on a terminal, one line for a large job otherwise."""
    if err.is_terminal:
        with err.status(f"{what} ({shape[1]}x{shape[0]})..."):
            yield
        return
    if 2 * shape[0] * shape[1] >= LARGE_JOB_PIXELS:
        err.print(f"{what} ({shape[1]}x{shape[0]})...", highlight=False)
    yield
