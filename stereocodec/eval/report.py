"""Rate-distortion report: our codec against the traditional baselines on real files.

Every codec is charged for the real bytes of what a decoder needs (the whole ``.sbic``
file; every baseline file), so ``bpp = 8 * bytes / (2 * H * W)`` over both views.

Averaging: each codec's *mean RD curve* has one point per quality setting, the arithmetic
mean over pairs of bpp, PSNR (dB), MS-SSIM, the left/right PSNR gap and the timings, every
pair weighing the same (the usual way learned-codec papers report a data set). BD-rates
are computed once per codec on these mean curves, against the anchor's mean curve, not
averaged from per-pair BD-rates (which are unstable when a pair's curves barely overlap).
The MS-SSIM BD-rate uses MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)`` of the mean MS-SSIM,
where the curves are closer to the straight lines the cubic fits assume.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from rich.table import Table

from ..batch import Source, find_sources
from ..codec import Codec
from ..errors import first_line
from ..io.images import InputError, View, atomic_write, check_output
from .baselines import ALL_CODECS, CODECS, SBIC, BaselineCodec, CodedPair, chroma_note
from .bdrate import bd_rate
from .metrics import ms_ssim, psnr

DEFAULT_ANCHOR = "hevc"
FALLBACK_ANCHOR = "jpeg"


class SbicCodec:
    """Our codec behind the baselines' interface, so the report treats every codec alike."""

    name = SBIC
    knob = "quality level (0 = smallest files)"

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.warm = False
        self.note = f"{codec.model.variant} '{codec.weights.name}', one .sbic file per pair (header included)"

    def available(self) -> str | None:
        return None

    def qualities(self) -> list[int]:
        return list(range(max(1, self.codec.quality_levels())))

    def code(self, left: np.ndarray, right: np.ndarray, quality: int) -> CodedPair:
        if not self.warm:  # the first coding pays for lazy set-up (7.8 s against 0.4 s): keep it out of the timings
            small = np.zeros((64, 64, 3), np.uint8)
            self.codec.decode(self.codec.encode(View(small, "RGB"), View(small, "RGB"), quality, reconstruct=False).data)
            self.warm = True
        start = time.perf_counter()
        enc = self.codec.encode(View(left, "RGB"), View(right, "RGB"), quality, reconstruct=False)
        middle = time.perf_counter()
        dec = self.codec.decode(enc.data)
        return CodedPair(dec.left, dec.right, (enc.data,), middle - start, time.perf_counter() - middle)


@dataclass(frozen=True)
class RDPoint:
    """One pair coded by one codec at one setting."""

    pair: str
    codec: str
    quality: int
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_left: float
    psnr_right: float
    psnr: float
    psnr_gap: float  # left minus right, dB: how unevenly the codec treats the views
    ms_ssim_left: float
    ms_ssim_right: float
    ms_ssim: float
    encode_seconds: float
    decode_seconds: float


CURVE_FIELDS = ("bpp", "psnr", "ms_ssim", "psnr_gap", "encode_seconds", "decode_seconds")


@dataclass(frozen=True)
class CurvePoint:
    """Mean over pairs of one codec at one setting."""

    quality: int
    pairs: int
    bpp: float
    psnr: float
    ms_ssim: float
    psnr_gap: float
    encode_seconds: float
    decode_seconds: float


@dataclass(frozen=True)
class BDRate:
    """Percent rate change against the anchor at equal quality (negative = fewer bits); None if not computable."""

    psnr: float | None
    ms_ssim: float | None


@dataclass
class ReportPlan:
    """What `run_report` will do, resolved before any coding so that notes and totals come first."""

    sources: list[Source]
    codecs: dict[str, BaselineCodec | SbicCodec]
    qualities: dict[str, list[int]]
    anchor: str
    max_side: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.sources) * sum(len(q) for q in self.qualities.values())


@dataclass
class Report:
    anchor: str
    max_side: int | None
    pairs: list[str]
    codecs: dict[str, dict]  # name -> knob, note, qualities
    points: list[RDPoint]
    curves: dict[str, list[CurvePoint]]
    bd_rate: dict[str, BDRate]
    notes: list[str]
    sbic_versus: dict[str, BDRate] = field(default_factory=dict)  # sbic against each other codec as anchor

    def to_dict(self) -> dict:
        """Everything, every RD point included, as plain JSON-ready values."""
        return {
            "anchor": self.anchor,
            "max_side": self.max_side,
            "pairs": self.pairs,
            "codecs": self.codecs,
            "averaging": "mean over pairs per quality setting; BD-rate on the mean curves (MS-SSIM in dB)",
            "chroma": chroma_note(),
            "notes": self.notes,
            "bd_rate": {name: asdict(bd) for name, bd in self.bd_rate.items()},
            "sbic_versus": {name: asdict(bd) for name, bd in self.sbic_versus.items()},
            "curves": {name: [asdict(p) for p in pts] for name, pts in self.curves.items()},
            "points": [asdict(p) for p in self.points],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self) -> str:
        """The RD points, one row each."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, [f.name for f in fields(RDPoint)], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(p) for p in self.points)
        return buf.getvalue()


def parse_qualities(specs: list[str]) -> dict[str, list[int]]:
    """['jpeg=10,50,90', 'sbic=0,5'] -> {'jpeg': [10, 50, 90], 'sbic': [0, 5]}."""
    out: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or name not in ALL_CODECS:
            raise InputError(f"--qualities {spec}: expected CODEC=Q1,Q2,... with CODEC one of {', '.join(ALL_CODECS)}")
        try:
            out[name] = [int(v) for v in values.split(",")]
        except ValueError:
            raise InputError(f"--qualities {spec}: the settings must be integers separated by commas") from None
    return out


def plan_report(
    in_dir: Path,
    codecs: list[str],
    anchor: str = DEFAULT_ANCHOR,
    qualities: dict[str, list[int]] | None = None,
    max_side: int | None = None,
    sbic_factory: Callable[[], Codec] | None = None,
) -> ReportPlan:
    """Resolve pairs, codecs (unavailable baselines skipped with a note) and settings.

    The anchor is always coded, added when it is not among `codecs`; an unavailable
    anchor falls back to jpeg with a note. `sbic_factory` loads our network, only when
    sbic is asked for.
    """
    unknown = [c for c in [*codecs, anchor] if c not in ALL_CODECS]
    if unknown:
        raise InputError(f"unknown codec {unknown[0]!r} (choose from {', '.join(ALL_CODECS)})")
    if max_side is not None and max_side < 1:
        raise InputError("--max-side must be at least 1")
    qualities = qualities or {}
    notes: list[str] = []
    chosen: dict[str, BaselineCodec | SbicCodec] = {}
    wanted = list(dict.fromkeys([*codecs, anchor]))
    if anchor not in codecs:
        notes.append(f"the anchor {anchor} is coded too, for the BD-rates (it is not in --codecs; --anchor picks another)")
    while wanted:
        name = wanted.pop(0)
        if name == SBIC:
            if sbic_factory is None:
                raise ValueError("sbic asked for without a way to load the network")
            chosen[name] = SbicCodec(sbic_factory())
            continue
        why = CODECS[name].available()
        if why is None:
            chosen[name] = CODECS[name]
            continue
        notes.append(f"{name} skipped: {why}")
        if name == anchor and anchor != FALLBACK_ANCHOR:
            notes.append(f"anchor {anchor} is unavailable; BD-rates are against {FALLBACK_ANCHOR} instead")
            anchor = FALLBACK_ANCHOR
            if anchor not in chosen and anchor not in wanted:
                wanted.append(anchor)
    if anchor not in chosen:
        raise InputError(f"the anchor {anchor} is unavailable here")
    extra = sorted(set(qualities) - set(chosen))
    if extra:
        raise InputError(f"--qualities names {extra[0]}, which is not among the codecs of this report")
    sources = find_sources(in_dir)
    if not sources:
        raise InputError(f"{in_dir}: no stereo pairs found")
    settings = {name: list(qualities.get(name) or codec.qualities()) for name, codec in chosen.items()}
    return ReportPlan(sources, chosen, settings, anchor, max_side, notes)


def center_crop(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    """The central at most max_side x max_side region (the same region for both views)."""
    if max_side is None:
        return pixels
    h, w = pixels.shape[:2]
    top, left = (h - min(h, max_side)) // 2, (w - min(w, max_side)) // 2
    return np.ascontiguousarray(pixels[top : top + min(h, max_side), left : left + min(w, max_side)])


def measure(pair: str, codec: str, quality: int, left: np.ndarray, right: np.ndarray, coded: CodedPair) -> RDPoint:
    """An RD point from the real bytes and the decoded views."""
    h, w = left.shape[:2]
    pl, pr = psnr(left, coded.left), psnr(right, coded.right)
    sl, sr = ms_ssim(left, coded.left), ms_ssim(right, coded.right)
    return RDPoint(
        pair, codec, quality, w, h, coded.nbytes, 8 * coded.nbytes / (2 * h * w),
        pl, pr, (pl + pr) / 2, pl - pr, sl, sr, (sl + sr) / 2, coded.encode_seconds, coded.decode_seconds,
    )  # fmt: skip


def mean_curves(points: list[RDPoint], qualities: dict[str, list[int]]) -> dict[str, list[CurvePoint]]:
    """Per codec, one point per setting: the mean over pairs of every measure (see the module docstring)."""
    curves: dict[str, list[CurvePoint]] = {}
    for name, settings in qualities.items():
        for q in settings:
            group = [p for p in points if p.codec == name and p.quality == q]
            if group:
                means = {f: float(np.mean([getattr(p, f) for p in group])) for f in CURVE_FIELDS}
                curves.setdefault(name, []).append(CurvePoint(q, len(group), **means))
    return curves


def ms_ssim_db(value: float) -> float:
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def bd_rates(curves: dict[str, list[CurvePoint]], anchor: str) -> tuple[dict[str, BDRate], list[str]]:
    """BD-rate of every curve against the anchor's, on PSNR and on MS-SSIM (dB); notes say why one is missing."""
    notes: list[str] = []
    if anchor not in curves:
        return {}, [f"no BD-rates: the anchor {anchor} has no results"]
    base = curves[anchor]
    out = {}
    for name, pts in curves.items():
        values = {}
        for metric, scale in (("psnr", float), ("ms_ssim", ms_ssim_db)):
            try:
                values[metric] = bd_rate(
                    [p.bpp for p in base], [scale(getattr(p, metric)) for p in base],
                    [p.bpp for p in pts], [scale(getattr(p, metric)) for p in pts],
                )  # fmt: skip
            except ValueError as e:
                values[metric] = None
                notes.append(f"BD-rate of {name} on {metric}: not computable ({e})")
        out[name] = BDRate(**values)
    return out, notes


def versus(curves: dict[str, list[CurvePoint]], subject: str = "sbic") -> tuple[dict[str, BDRate], list[str]]:
    """BD-rate of `subject` with each other codec as the anchor: what it saves against each.

    Not the negated `bd_rates` entry: BD-rate is not antisymmetric, and each comparison
    covers only the quality range that pair of curves shares.
    """
    out, notes = {}, []
    for name in curves:
        if name != subject and subject in curves:
            bd, why = bd_rates({name: curves[name], subject: curves[subject]}, name)
            out[name] = bd[subject]
            notes += [f"{n} (against {name})" for n in why]
    return out, notes


def run_report(plan: ReportPlan, progress_callback: Callable[[int, str], None] | None = None) -> Report:
    """Code every pair with every codec at every setting and summarise.

    A pair that cannot be read is left out, for every codec, with a note; a codec that
    fails on some pair is dropped entirely (its curve would not be comparable), with a note.
    `progress_callback(steps, label)` is told how many of `plan.steps` were just finished.
    """
    notes = list(plan.notes)
    advance = progress_callback or (lambda steps, label: None)
    points: list[RDPoint] = []
    failed: set[str] = set()
    pairs: list[str] = []
    for source in plan.sources:
        try:
            views = source.read()
        except InputError as e:
            notes.append(f"pair {source.name} left out: {e}")
            advance(sum(len(q) for q in plan.qualities.values()), source.name)
            continue
        left, right = (center_crop(v.pixels, plan.max_side) for v in views)
        pairs.append(source.name)
        for name, codec in plan.codecs.items():
            for i, q in enumerate(plan.qualities[name]):
                if name in failed:
                    advance(len(plan.qualities[name]) - i, f"{source.name} {name}")
                    break
                try:
                    points.append(measure(source.name, name, q, left, right, codec.code(left, right, q)))
                except (RuntimeError, ValueError) as e:
                    failed.add(name)
                    notes.append(f"{name} dropped: failed on {source.name} at {q} ({first_line(e)})")
                advance(1, f"{source.name} {name} {q}")
    if not pairs:
        raise InputError("no pair could be read; nothing to report")
    points = [p for p in points if p.codec not in failed]
    qualities = {n: q for n, q in plan.qualities.items() if n not in failed}
    curves = mean_curves(points, qualities)
    bd, bd_notes = bd_rates(curves, plan.anchor)
    against, versus_notes = versus(curves)
    codecs = {n: {"knob": c.knob, "note": c.note, "qualities": plan.qualities[n]} for n, c in plan.codecs.items() if n not in failed}
    return Report(plan.anchor, plan.max_side, pairs, codecs, points, curves, bd, notes + bd_notes + versus_notes, against)


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


def plot_rd(report: Report, path: Path, force: bool = False) -> None:
    """PSNR-vs-bpp mean curves of every codec, written as a PNG (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_output(path, force)
    fig = Figure(figsize=(7, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, pts in report.curves.items():
        pts = sorted(pts, key=lambda p: p.bpp)
        style = "-o" if name == "sbic" else "--."
        ax.plot([p.bpp for p in pts], [p.psnr for p in pts], style, label=name, markersize=4)
    ax.set_xlabel("bits per pixel (both views, real file sizes)")
    ax.set_ylabel("PSNR (dB, mean of the two views)")
    ax.set_title(f"Rate-distortion, mean over {len(report.pairs)} pair(s)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
