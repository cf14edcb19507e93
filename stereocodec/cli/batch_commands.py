"""The `batch` and `report` commands: options and presentation only (logic in batch.py, eval/report.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
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

from ..eval.baselines import ALL_CODECS
from .common import DEFAULT_VARIANT, ENV_WEIGHTS, QUALITY_HELP, QUALITY_TYPE, VARIANT_CHOICE, err, notice, out, size_targets

if TYPE_CHECKING:
    from ..batch import BatchResult, CodecSpec



class _RateColumn(ProgressColumn):
    """Items per second since the start: steadier than rich's recent-window speed for slow items."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        rate = f"{task.completed / elapsed:.2f}" if task.completed and elapsed else "–"
        return Text(f"{rate} {self.unit}/s", style="progress.data.speed")


class _LineProgress:
    """Progress for a standard error that is not a terminal (a log file): a plain line every `every` seconds.

    rich draws nothing there until the end; a long batch or report must still show that it is alive.
    Same calls as the rich Progress it stands in for (one task).
    """

    def __init__(self, unit: str, every: float = 10.0) -> None:
        self.unit, self.every = unit, every
        self.done, self.total, self.description = 0, 0, ""
        self.start = self.last = time.monotonic()

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: int) -> int:
        self.description, self.total = description, total
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, advance: float = 0, description: str | None = None) -> None:
        self.done += int(advance)
        self.description = description or self.description
        if time.monotonic() - self.last >= self.every:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        err.print(f"{self.done}/{self.total} {self.unit} ({self.last - self.start:.0f} s): {self.description}", highlight=False)


def _progress(unit: str) -> Progress | _LineProgress:
    """A live bar on a terminal; periodic plain lines on standard error otherwise."""
    if not err.is_terminal:
        return _LineProgress(unit)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), _RateColumn(unit), console=err,
    )  # fmt: skip


def _spec(weights: Path | None, variant: str | None) -> CodecSpec:
    """The network to load: --weights, or the shipped weights of --variant (default variant otherwise)."""
    from ..batch import CodecSpec

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
@click.option("--variant", type=VARIANT_CHOICE, default=None, help=f"Network variant (default {DEFAULT_VARIANT}).")
@click.option("--quality", "-q", type=QUALITY_TYPE, default=None, metavar="Q", help=QUALITY_HELP)
@size_targets
@click.option("--psnr", "psnr_db", type=click.FloatRange(0, min_open=True), default=None, metavar="DB",
              help="Per pair, the lowest quality whose PSNR (mean of the two views) is at least DB.")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None, envvar=ENV_WEIGHTS,
              help=f"Weights file instead of the shipped ones (env {ENV_WEIGHTS}).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes, one network and one thread each.")
@click.option("--shard", default=None, metavar="K/N", help="Only the K-th of N interleaved shares of the pairs (1-based).")
@click.option("--verify", is_flag=True, help="Decode every new file and report its PSNR against the input.")
@click.option("--force", is_flag=True, help="Redo pairs whose output already exists and is valid.")
@click.option("--decode", is_flag=True, help="Decode the .sbic files under IN_DIR to PNG pairs instead.")
@click.option("--sbs", is_flag=True, help="Also take every unpaired image as a side-by-side pair (left | right).")
@click.option("--cross", is_flag=True, help="With --sbs: the side-by-side images are cross-eyed (right | left).")
def batch(in_dir: Path, out_dir: Path, variant, quality, size, bpp, psnr_db, weights, workers, shard, verify, force, decode, sbs, cross) -> None:
    """Compress every stereo pair under IN_DIR (pairs of files, .mpo, side-by-side) to OUT_DIR/<name>.sbic.

    Resumable: pairs whose output exists and is valid are skipped. Exit status 1 if any pair failed
    (a pair whose --size/--bpp/--psnr target is out of reach fails with the reason).
    """
    from ..batch import parse_shard, plan_batch, plan_decode, run_batch, select_shard
    from ..batch_checks import check_writable_dir, unpaired_images, unpaired_note
    from ..codec import resolve_quality
    from ..io.images import InputError
    from ..rate_control import Target

    target = Target.from_options(size, bpp, psnr_db)
    if target is not None and quality is not None:
        raise InputError("give either --quality or a target (--size, --bpp, --psnr)")
    if decode and (quality is not None or target is not None or verify or sbs):
        raise InputError("--quality, targets, --verify and --sbs apply to compression, not to --decode")
    if cross and not sbs:
        raise InputError("--cross describes side-by-side images: use it with --sbs")
    selected = parse_shard(shard) if shard else None
    note = None
    if decode:
        jobs = plan_decode(in_dir, out_dir, selected)
    else:
        every = plan_batch(in_dir, out_dir, None, ("cross" if cross else "parallel") if sbs else None)
        jobs = select_shard(every, selected)
        note = unpaired_note(in_dir, unpaired_images(in_dir, {p for j in every for p in j.source.paths}), bool(every))
    spec = _spec(weights, variant)
    if weights is not None or not decode:  # decoding without --weights loads each file's variant
        spec.check()
    if not jobs:
        if note and not every:
            raise InputError(note)
        raise InputError(f"{in_dir}: no {'.sbic files' if decode else 'stereo pairs'} found" + (f" in shard {shard}" if shard else ""))
    if not decode:  # once, here, rather than once per pair
        resolve_quality(spec().model, quality)
    check_writable_dir(out_dir)
    if note:
        notice(note)
    with _progress("pairs") as progress:
        task = progress.add_task("decoding" if decode else "encoding", total=len(jobs))
        result = run_batch(jobs, spec, target or quality, workers, verify, force, lambda _: progress.advance(task))
    out.print(summary_table(result, decode, verify))
    for failure in sorted(result.failures, key=lambda o: o.name):
        out.print(f"[red]failed:[/] {failure.name}: {failure.reason}", highlight=False)
    if result.failures:
        sys.exit(1)


@click.command()
@click.argument("in_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--codecs", default=",".join(ALL_CODECS), show_default=True, help="Comma-separated codecs to compare.")
@click.option("--anchor", default="hevc", show_default=True,
              help="BD-rates are against this codec (jpeg if it is unavailable); coded too, with a note, when not in --codecs.")
@click.option("--qualities", multiple=True, metavar="CODEC=Q1,Q2,...", help="Only these settings of CODEC (repeatable).")
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Weights file for sbic instead of the shipped ones.")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help=f"Network variant for sbic (default {DEFAULT_VARIANT}).")
@click.option("--max-side", type=int, default=None, help="Center-crop every pair to at most N x N pixels (quick runs).")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write every RD point, curves and BD-rates as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write the RD points as CSV.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a PSNR-vs-bpp plot (PNG).")
@click.option("--force", is_flag=True, help="Overwrite the --json/--csv/--plot files.")
def report(in_dir: Path, codecs, anchor, qualities, weights, variant, max_side, json_path, csv_path, plot_path, force) -> None:
    """Rate-distortion comparison of sbic and the baselines on the pairs under IN_DIR, with BD-rates.

    \b
    Columns of the RD table (means over the pairs, per codec and setting):
      setting      the codec's quality knob (sbic: quality level 0-5)
      bpp          bits of the whole coded file(s) per pixel of both views
      PSNR dB      mean of the left and right views' PSNR (RGB, 8 bit)
      MS-SSIM      mean of the two views' MS-SSIM
      L-R PSNR dB  left view's PSNR minus the right's: how unevenly the views are treated
      encode s     seconds to encode one pair (sbic: after a warm-up coding, which is not counted)
      decode s     seconds to decode one pair
    BD-rate %: the average change in bits for equal quality against the anchor (negative = fewer bits).
    Progress goes to standard error: a live bar on a terminal, a line every 10 s otherwise.
    """
    from ..eval.baselines import chroma_note
    from ..io.images import check_output, write_bytes
    from ..eval.report import bd_table, parse_qualities, plan_report, plot_rd, rd_table, run_report, versus_table

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
