"""The `stereo-codec` command line: one click group over the command modules, one error policy.

Each command group lives in its own module (coding, batch, training); they share `common` and
never import this package, so there is no import circle.
"""

from __future__ import annotations

import os
import sys

import click
from rich.markup import escape

from ..errors import Error
from .batch_commands import batch, report
from .codec_commands import decode, encode, estimate, info
from .common import err
from .train_commands import export, grow_run, ship_weights, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stereo-codec")
def cli() -> None:
    """Learned stereo image codec (BiSIC / BiSIC-Fast): one .sbic file per stereo pair."""


for command in (estimate, train, grow_run, export, ship_weights, encode, decode, info, batch, report):
    cli.add_command(command)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except click.UsageError as e:  # a bad option or argument: one line, exit 1, like every other bad input
        command = e.ctx.command_path if e.ctx else "stereo-codec"
        err.print(f"[red]error:[/] {escape(e.format_message())} (see `{command} --help`)", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Error as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except OSError as e:  # permissions, a full disk, a vanished file: the system's words, one line
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"[red]error:[/] {escape(where + str(e.strerror or e))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("STEREOCODEC_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {type(e).__name__}: {escape(str(e))} (set STEREOCODEC_DEBUG=1 for a traceback)", highlight=False, soft_wrap=True)
        sys.exit(2)
