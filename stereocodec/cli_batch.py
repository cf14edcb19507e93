"""The `batch` and `report` commands: options and presentation only (logic in batch.py, report.py).

Registered on the main group by `stereocodec.cli`; this module does not import `cli` at
import time (only inside the commands), so `cli` may import it from anywhere.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .baselines import CODECS
from .image_io import InputError, check_output, write_bytes
from .models import VARIANTS

if TYPE_CHECKING:
    from .batch import BatchResult, CodecSpec

ALL_CODECS = ",".join(("sbic", *CODECS))

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class _RateColumn(ProgressColumn):
    """Items per second since the start: steadier than rich's recent-window speed for slow items."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = f"{task.completed / elapsed:.2f}" if task.completed and elapsed else "–"
        return Text(f"{rate} {self.unit}/s", style="progress.data.speed")


def _progress(unit: str) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), _RateColumn(unit), console=err,
    )  # fmt: skip


def _spec(weights: Path | None, variant: str | None) -> CodecSpec:
    """The network to load: --weights, or the shipped weights of --variant (default variant otherwise)."""
    from .batch import CodecSpec
    from .cli import DEFAULT_VARIANT

    return CodecSpec(weights, variant or (None if weights else DEFAULT_VARIANT))


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.3f}"


def summary_table(result: BatchResult, decode: bool, verify: bool) -> Table:
    """Totals of a batch run; input and output are the .sbic files and images, by direction."""
    sizes = [("input MB", result.sbic_bytes), ("output MB", result.image_bytes)] if decode else [("input MB", result.image_bytes), ("output MB", result.sbic_bytes)]
    rows = [
        ("pairs", str(len(result.outcomes))),
        ("done", str(result.count("done"))),
        ("skipped (valid output exists)", str(result.count("skipped"))),
        ("failed", str(result.count("failed"))),
        *((label, _mb(n)) for label, n in sizes),
        ("ratio (images / .sbic)", "—" if result.ratio is None else f"{result.ratio:.1f}"),
        ("mean bpp", "—" if result.mean_bpp is None else f"{result.mean_bpp:.4f}"),
    ]
    if verify:
        rows.append(("mean PSNR dB (this run)", "—" if result.mean_psnr is None else f"{result.mean_psnr:.2f}"))
    table = Table(title="batch decode" if decode else "batch encode", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


@click.command()
@click.argument("in_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Output folder; the input tree is mirrored under it.")
@click.option("--variant", type=click.Choice(VARIANTS), default=None, help="Network variant (default: the shipped default).")
@click.option("--quality", "-q", type=int, default=None, help="Quality level (0 = smallest files).")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Weights file instead of the shipped ones.")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes, one network and one thread each.")
@click.option("--shard", default=None, metavar="K/N", help="Only the K-th of N interleaved shares of the pairs (1-based).")
@click.option("--verify", is_flag=True, help="Decode every new file and report its PSNR against the input.")
@click.option("--force", is_flag=True, help="Redo pairs whose output already exists and is valid.")
@click.option("--decode", is_flag=True, help="Decode the .sbic files under IN_DIR to PNG pairs instead.")
@click.option("--sbs", is_flag=True, help="Also take every unpaired image as a side-by-side pair (left | right).")
@click.option("--cross", is_flag=True, help="With --sbs: the side-by-side images are cross-eyed (right | left).")
def batch(in_dir: Path, out_dir: Path, variant, quality, weights, workers, shard, verify, force, decode, sbs, cross) -> None:
    """Compress every stereo pair under IN_DIR (pairs of files, .mpo, side-by-side) to OUT_DIR/<name>.sbic.

    Resumable: pairs whose output exists and is valid are skipped. Exit status 1 if any pair failed.
    """
    from .batch import parse_shard, plan_batch, plan_decode, run_batch

    if decode and (quality is not None or verify or sbs):
        raise InputError("--quality, --verify and --sbs apply to compression, not to --decode")
    if cross and not sbs:
        raise InputError("--cross describes side-by-side images: use it with --sbs")
    selected = parse_shard(shard) if shard else None
    if decode:
        jobs = plan_decode(in_dir, out_dir, selected)
    else:
        jobs = plan_batch(in_dir, out_dir, selected, ("cross" if cross else "parallel") if sbs else None)
    spec = _spec(weights, variant)
    if weights is not None or not decode:  # decoding without --weights loads each file's variant
        spec.check()
    if not jobs:
        raise InputError(f"{in_dir}: no {'.sbic files' if decode else 'stereo pairs'} found" + (f" in shard {shard}" if shard else ""))
    with _progress("pairs") as progress:
        task = progress.add_task("decoding" if decode else "encoding", total=len(jobs))
        result = run_batch(jobs, spec, quality, workers, verify, force, lambda _: progress.advance(task))
    out.print(summary_table(result, decode, verify))
    for failure in sorted(result.failures, key=lambda o: o.name):
        out.print(f"[red]failed:[/] {failure.name}: {failure.reason}", highlight=False)
    if result.failures:
        sys.exit(1)


@click.command()
@click.argument("in_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--codecs", default=ALL_CODECS, show_default=True, help="Comma-separated codecs to compare.")
@click.option("--anchor", default="hevc", show_default=True, help="BD-rates are against this codec (jpeg if it is unavailable).")
@click.option("--qualities", multiple=True, metavar="CODEC=Q1,Q2,...", help="Only these settings of CODEC (repeatable).")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Weights file for sbic instead of the shipped ones.")
@click.option("--variant", type=click.Choice(VARIANTS), default=None, help="Network variant for sbic.")
@click.option("--max-side", type=int, default=None, help="Center-crop every pair to at most N x N pixels (quick runs).")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write every RD point, curves and BD-rates as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write the RD points as CSV.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a PSNR-vs-bpp plot (PNG).")
@click.option("--force", is_flag=True, help="Overwrite the --json/--csv/--plot files.")
def report(in_dir: Path, codecs, anchor, qualities, weights, variant, max_side, json_path, csv_path, plot_path, force) -> None:
    """Rate-distortion comparison of sbic and the baselines on the pairs under IN_DIR, with BD-rates."""
    from .baselines import chroma_note
    from .cli import notice
    from .report import bd_table, parse_qualities, plan_report, plot_rd, rd_table, run_report, versus_table

    for path in (json_path, csv_path, plot_path):
        if path is not None:
            check_output(path, force)  # before the long run, not after it
    names = [c.strip() for c in codecs.split(",") if c.strip()]
    plan = plan_report(in_dir, names, anchor, parse_qualities(list(qualities)), max_side, _spec(weights, variant))
    for note in plan.notes:
        notice(note)
    with _progress("codings") as progress:
        task = progress.add_task("coding", total=plan.steps)
        result = run_report(plan, lambda steps, label: progress.update(task, advance=steps, description=label))
    out.print(rd_table(result))
    out.print(bd_table(result))
    if result.sbic_versus:
        out.print(versus_table(result))
    for note in result.notes[len(plan.notes):]:
        notice(note)
    out.print(chroma_note(), highlight=False)
    if json_path is not None:
        write_bytes(json_path, result.to_json().encode(), force)
    if csv_path is not None:
        write_bytes(csv_path, result.to_csv().encode(), force)
    if plot_path is not None:
        plot_rd(result, plot_path, force)
