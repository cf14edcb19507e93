"""The `batch` and `report` commands: options and presentation only (logic in batch/, eval/report.py)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
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

from .common import (
    DEFAULT_VARIANT, ENV_WEIGHTS, MAX_PIXELS_HELP, QUALITY_HELP, QUALITY_TYPE, VARIANT_CHOICE, err, notice, out, size_targets,
)

if TYPE_CHECKING:
    from ..batch import BatchResult, CodecSpec
    from ..eval.report import Report

# --psnr DB for batch and report (encode's --psnr also works without a value); a plain float, so that
# Target.from_options refuses DB <= 0 in one line rather than click in a usage block
psnr_target = click.option(
    "--psnr", "psnr_db", type=float, default=None, metavar="DB",
    help="Per pair, the lowest quality whose PSNR (mean of the two views) is at least DB (> 0).",
)  # fmt: skip


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


def _spec(weights: Path | None, variant: str | None, refine_steps: int = 0, max_pixels: int | None = None,
          device: str = "cpu") -> CodecSpec:
    """The network to load: --weights, or the shipped weights of --variant (default variant otherwise)."""
    from ..batch import CodecSpec

    return CodecSpec(weights, variant or (None if weights else DEFAULT_VARIANT), device, refine_steps, max_pixels)


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.3f}"


def summary_table(result: BatchResult, decode: bool, verify: bool) -> Table:
    """Totals of a batch run; input and output are the .sbic files and images, by direction."""
    sizes = [("input MB", result.sbic_bytes), ("output MB", result.image_bytes)] if decode else [("input MB", result.image_bytes), ("output MB", result.sbic_bytes)]
    rows = [
        ("pairs", str(result.pairs)),
        ("done", str(result.count("done"))),
        ("skipped (valid output exists)", str(result.count("skipped"))),
        ("failed", str(result.count("failed"))),
        *((label, _mb(n)) for label, n in sizes),
        ("ratio (images / .sbic)", "—" if result.ratio is None else f"{result.ratio:.1f}"),
        ("mean bpp", "—" if result.mean_bpp is None else f"{result.mean_bpp:.4f}"),
    ]
    if verify:
        rows.append(("mean PSNR dB (this run)", "—" if result.mean_psnr is None else f"{result.mean_psnr:.2f}"))
    if result.under_budget:
        rows.append(("under budget at the highest quality (this run)", str(result.under_budget)))
    if result.retried:
        rows.append(("retried (their worker died)", str(result.retried)))
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
@psnr_target
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None, envvar=ENV_WEIGHTS,
              help=f"Weights file instead of the shipped ones (env {ENV_WEIGHTS}).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None, help=MAX_PIXELS_HELP + " Per pair, as for encode.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Workers (1 or more): processes (local) or Ray actors, one network and one thread (or GPU) each.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the workers run: this machine, or the Ray cluster RAY_ADDRESS names (a local one without it); "
              "paths must then be on storage every node sees. Ray is an extra: pip install -e \".[ray]\".")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where each worker's network runs (cuda: one GPU per Ray actor).")
@click.option("--shard", default=None, metavar="K/N", help="Only the pairs whose name hashes to K of N (1-based): N runs cover every pair once.")
@click.option("--verify", is_flag=True, help="Decode every new file and report its PSNR against the input.")
@click.option("--force", is_flag=True, help="Redo pairs whose output already exists and is valid.")
@click.option("--decode", is_flag=True, help="Decode the .sbic files under IN_DIR to PNG pairs instead.")
@click.option("--sbs", is_flag=True, help="Also take every unpaired image as a side-by-side pair (left | right).")
@click.option("--cross", is_flag=True, help="With --sbs: the side-by-side images are cross-eyed (right | left).")
def batch(in_dir: Path, out_dir: Path, variant: str | None, quality: float | None, size: int | None, bpp: float | None,
          psnr_db: float | None, weights: Path | None, max_pixels: int | None, workers: int, engine: str, device: str,
          shard: str | None, verify: bool, force: bool, decode: bool, sbs: bool, cross: bool) -> None:
    """Compress every stereo pair under IN_DIR (pairs of files, .mpo, side-by-side) to OUT_DIR/<name>.sbic.

    Resumable: pairs whose output exists and is valid are skipped. Exit status 1 if any pair failed
    (a pair whose --size/--bpp/--psnr target is out of reach, or whose views are over --max-pixels, fails
    with the reason). A --size or --bpp budget is a ceiling: a pair under it at the highest quality gets that.
    With --engine ray the workers are Ray actors, with the same guarantees and bytes (docs/batch.md).
    """
    from ..batch import check_writable_dir, executor, plan_jobs, run_batch
    from ..codec import resolve_quality
    from ..io.images import InputError
    from ..rate_control import Target

    target = Target.from_options(size, bpp, psnr_db, quality)
    if decode and (quality is not None or target is not None or verify or sbs):
        raise InputError("--quality, targets, --verify and --sbs apply to compression, not to --decode")
    if cross and not sbs:
        raise InputError("--cross describes side-by-side images: use it with --sbs")
    executor(engine)  # a missing Ray is said before any work
    plan = plan_jobs(in_dir, out_dir, decode, shard, ("cross" if cross else "parallel") if sbs else None)
    spec = _spec(weights, variant, max_pixels=max_pixels, device=device)
    if weights is not None or not decode:  # decoding without --weights loads each file's variant
        spec.check()
    if not decode:  # once, here (on the CPU: a Ray driver may have no GPU), rather than once per pair
        resolve_quality(replace(spec, device="cpu")().model, quality)
    check_writable_dir(out_dir)
    if plan.note:
        notice(plan.note)
    with _progress("pairs") as progress:
        task = progress.add_task("decoding" if decode else "encoding", total=len(plan))
        result = run_batch(plan, spec, target or quality, workers, verify, force, lambda _: progress.advance(task), engine)
    out.print(summary_table(result, decode, verify))
    for failure in sorted(result.failures, key=lambda o: o.name):
        out.print(f"[red]failed:[/] {failure.name}: {failure.reason}", highlight=False)
    if result.failures:
        sys.exit(1)


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def rd_table(report: Report) -> Table:
    """The mean RD curves, one row per codec and setting."""
    table = Table(title=f"Mean over {len(report.pairs)} pair(s)" + (f", center crops of at most {report.max_side} px" if report.max_side else ""))
    for col in ("codec", "setting", "bpp", "PSNR dB", "MS-SSIM", "L−R PSNR dB", "encode s", "decode s"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for name, pts in report.curves.items():
        for p in pts:
            table.add_row(name, str(p.quality), f"{p.bpp:.4f}", f"{p.psnr:.2f}", f"{p.ms_ssim:.4f}", f"{p.psnr_gap:+.2f}", f"{p.encode_seconds:.3f}", f"{p.decode_seconds:.3f}")
        table.add_section()
    return table


def bd_table(report: Report) -> Table:
    """BD-rate of each codec against the anchor (negative = fewer bits for the same quality)."""
    table = Table(title=f"BD-rate against {report.anchor} (mean curves)")
    for col in ("codec", "BD-rate PSNR %", "BD-rate MS-SSIM %"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for name, bd in report.bd_rate.items():
        label = f"{name} (anchor)" if name == report.anchor else name
        table.add_row(label, _fmt(bd.psnr, 2), _fmt(bd.ms_ssim, 2))
    return table


def versus_table(report: Report) -> Table:
    """sbic's BD-rate with each other codec as the anchor (negative = sbic needs fewer bits)."""
    table = Table(title="BD-rate of sbic against each codec (mean curves)")
    for col in ("against", "BD-rate PSNR %", "BD-rate MS-SSIM %"):
        table.add_column(col, justify="left" if col == "against" else "right")
    for name, bd in report.sbic_versus.items():
        table.add_row(name, _fmt(bd.psnr, 2), _fmt(bd.ms_ssim, 2))
    return table


def target_table(report: Report) -> Table:
    """Per pair, sbic at the target and every baseline at sbic's bpp (or PSNR), interpolated."""
    from ..eval.report import target_gap

    rate = report.target.kind != "psnr"
    at = "bpp" if rate else "PSNR"
    table = Table(title=f"sbic at {report.target.describe()} per pair; the other codecs at sbic's {at}, interpolated on their settings")
    for col in ("pair", "codec", "setting", "bpp", "PSNR dB", "MS-SSIM", "sbic − codec dB" if rate else "sbic bits %"):
        table.add_column(col, justify="left" if col in ("pair", "codec") else "right")
    for row in report.target_rows:
        if row.sbic is None:  # out of reach: a note says why, and there is nothing to compare with
            table.add_row(row.pair, "sbic", "out of reach", "—", "—", "—", "—")
        else:
            s = row.sbic
            table.add_row(row.pair, "sbic", f"q{s.quality:g} ({row.encodes} encodes)", f"{s.bpp:.4f}", f"{s.psnr:.2f}", f"{s.ms_ssim:.4f}", "")
        for name, b in row.baselines.items():
            if b is None:
                table.add_row("", name, "out of range", "—", "—", "—", "—")
                continue
            lo, hi = b.between
            gap = target_gap(s, b, report.target.kind)
            setting = f"{lo:g}" if lo == hi else f"{lo:g}–{hi:g}"
            table.add_row("", name, setting, f"{b.bpp:.4f}", f"{b.psnr:.2f}", f"{b.ms_ssim:.4f}", f"{gap:+.2f}" if rate else f"{gap:+.1f}")
        table.add_section()
    return table


def target_gap_table(report: Report) -> Table:
    """sbic's mean advantage at the target over the pairs where both codecs have a value."""
    rate = report.target.kind != "psnr"
    table = Table(title=f"sbic at {report.target.describe()} against each codec, mean over pairs")
    for col in ("against", "pairs", "sbic − codec dB" if rate else "sbic bits %"):
        table.add_column(col, justify="left" if col == "against" else "right")
    for name, gap in report.target_gaps.items():
        table.add_row(name, str(gap.pairs), _fmt(gap.psnr_db, 2) if rate else _fmt(gap.bpp_percent, 1))
    return table


@click.command()
@click.argument("in_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--codecs", default=None, metavar="LIST",  # a literal list: importing the baselines would slow every --help
              help="Comma-separated codecs to compare (default: all: sbic,jpeg,webp,avif,jxl,hevc,hevc-stereo).")
@click.option("--anchor", default=None, metavar="CODEC",
              help="BD-rates are against this codec. Default: hevc if it is in --codecs, else the first of --codecs "
              "other than sbic. One not in --codecs is coded too, with a note; an unavailable one falls back to jpeg, with a note.")
@click.option("--qualities", multiple=True, metavar="CODEC=Q1,Q2,...",
              help="Only these settings of CODEC (repeatable). Default: sbic its levels 0-5, jpeg 5-90, webp 5-95, "
              "avif 20-90, jxl 10-95, hevc QP 42-17.")
@size_targets
@psnr_target
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False), default=None, envvar=ENV_WEIGHTS,
              help=f"Weights file for sbic instead of the shipped ones (env {ENV_WEIGHTS}).")
@click.option("--variant", type=VARIANT_CHOICE, default=None, help=f"Network variant for sbic (default {DEFAULT_VARIANT}).")
@click.option("--max-side", type=click.IntRange(min=1), default=None, metavar="N",
              help="Center-crop every pair to at most N x N pixels, N >= 1 (default: full size; for quick runs).")
@click.option("--refine", "refine_steps", type=click.IntRange(min=0), default=0, show_default=True, metavar="STEPS",
              help="Code sbic with encoder-side latent refinement (as encode --refine; slow), at its levels only.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write every RD point, curve, BD-rate and target row as JSON (sbic's encode_seconds at a target: the whole search).")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the RD points as CSV (target rows: see --json).")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Write a PSNR-vs-bpp plot (PNG).")
@click.option("--force", is_flag=True, help="Overwrite the --json/--csv/--plot files.")
def report(in_dir: Path, codecs: str | None, anchor: str | None, qualities: tuple[str, ...], size: int | None,
           bpp: float | None, psnr_db: float | None, weights: Path | None, variant: str | None, max_side: int | None,
           refine_steps: int, json_path: Path | None, csv_path: Path | None, plot_path: Path | None, force: bool) -> None:
    """Rate-distortion comparison of sbic and the baselines on the pairs under IN_DIR, with BD-rates.

    With --size, --bpp or --psnr (at most one), sbic is coded per pair at the quality that meets the target
    (bisection on real encodes, as in batch) instead of at its levels, and each other codec is read off its
    own settings on that pair at sbic's bpp (rate targets) or PSNR (--psnr), interpolated, never extrapolated.

    \b
    Columns of the RD table (means over the pairs, per codec and setting):
      setting      the codec's quality knob (sbic: quality level 0-5; hevc: QP, lower is better)
      bpp          bits of the whole coded file(s) per pixel of both views
      PSNR dB      mean of the left and right views' PSNR (RGB, 8 bit)
      MS-SSIM      mean of the two views' MS-SSIM
      L-R PSNR dB  left view's PSNR minus the right's: how unevenly the views are treated
      encode s     seconds to encode one pair (sbic: after a warm-up coding, which is not counted)
      decode s     seconds to decode one pair
    BD-rate %: the average change in bits for equal quality against the anchor (negative = fewer bits);
    the second BD table puts each other codec in the anchor's place for sbic.
    Columns of the target table (per pair; sbic first, then each codec at sbic's bpp or PSNR):
      setting          sbic: the quality found and the encodes the search took; others: the two
                       settings interpolated between ("out of range": beyond its settings, not extrapolated)
      bpp, PSNR dB, MS-SSIM   as above (interpolated for the others, linear in log bpp)
      sbic − codec dB  rate targets: sbic's PSNR minus the codec's at the same bpp (positive = sbic better)
      sbic bits %      --psnr: sbic's bpp against the codec's for the same PSNR (negative = sbic fewer bits)
    The last table averages that column over the pairs where both have a value. A target out of reach
    on a pair, or a --size/--bpp budget that its highest quality is under, is said in a note; the report goes on.
    Progress goes to standard error: a live bar on a terminal, a line every 10 s otherwise.
    """
    from ..eval.baselines import chroma_note
    from ..eval.report import parse_qualities, plan_report, plot_rd, run_report
    from ..io.images import InputError, check_output, write_bytes
    from ..rate_control import Target

    target = Target.from_options(size, bpp, psnr_db)
    if target is not None and refine_steps:
        raise InputError("--refine codes sbic at its levels, not at a target (each trial encode would refine)")
    for path in (json_path, csv_path, plot_path):
        if path is not None:
            check_output(path, force)  # before the long run, not after it
    names = None if codecs is None else [c.strip() for c in codecs.split(",") if c.strip()]
    plan = plan_report(in_dir, names, anchor, parse_qualities(list(qualities)), max_side,
                       _spec(weights, variant, refine_steps), target)
    for note in plan.notes:
        notice(note)
    with _progress("codings") as progress:
        task = progress.add_task("coding", total=plan.steps)
        result = run_report(plan, lambda steps, label: progress.update(task, advance=steps, description=label))
    if result.curves:
        out.print(rd_table(result))
    if result.bd_rate:
        out.print(bd_table(result))
    if result.sbic_versus:
        out.print(versus_table(result))
    if result.target is not None:
        out.print(target_table(result))
        out.print(target_gap_table(result))
    for note in result.notes[len(plan.notes):]:
        notice(note)
    out.print(chroma_note(), highlight=False)
    if json_path is not None:
        write_bytes(json_path, result.to_json().encode(), force)
    if csv_path is not None:
        write_bytes(csv_path, result.to_csv().encode(), force)
    if plot_path is not None:
        plot_rd(result, plot_path, force)
