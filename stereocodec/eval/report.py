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

Targets (``--size``/``--bpp``/``--psnr``): sbic is coded per pair at the quality
`rate_control.encode_to_target` finds on the real file, instead of at its levels, and every
baseline is read off its own RD points of that pair at sbic's operating point (the same bpp,
or the same PSNR), interpolated linearly in log bpp between its two nearest settings and never
extrapolated: "at this size sbic gives X dB, jpeg Y dB". Per pair, because each pair meets the
target at its own quality; the summary (`target_gaps`) averages the per-pair differences,
never curves of different operating points.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ..batch import Source, find_sources
from ..codec import Codec
from ..errors import first_line
from ..io.images import InputError, View, atomic_write, check_output
from ..rate_control import Reached, Target, encode_to_target
from .baselines import ALL_CODECS, CODECS, SBIC, BaselineCodec, CodedPair, chroma_note
from .bdrate import bd_rate
from ..metrics import ms_ssim, psnr

PREFERRED_ANCHOR = "hevc"  # the usual anchor of learned-codec papers, when it is among the codecs
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

    def _warm_up(self) -> None:
        """The first coding pays for lazy set-up (7.8 s against 0.4 s): done once on a tiny pair, outside the timings."""
        if not self.warm:
            small = np.zeros((64, 64, 3), np.uint8)
            self.codec.decode(self.codec.encode(View(small, "RGB"), View(small, "RGB"), 0, reconstruct=False).data)
            self.warm = True

    def _decoded(self, data: bytes, encode_seconds: float) -> CodedPair:
        """The real decoder's views of a file, so that sbic is measured like every baseline."""
        start = time.perf_counter()
        dec = self.codec.decode(data)
        return CodedPair(dec.left, dec.right, (data,), encode_seconds, time.perf_counter() - start)

    def code(self, left: np.ndarray, right: np.ndarray, quality: int) -> CodedPair:
        self._warm_up()
        start = time.perf_counter()
        enc = self.codec.encode(View(left, "RGB"), View(right, "RGB"), quality, reconstruct=False)
        return self._decoded(enc.data, time.perf_counter() - start)

    def code_target(self, left: np.ndarray, right: np.ndarray, target: Target) -> tuple[CodedPair, Reached]:
        """The pair at the quality that meets `target`; its encode time is the whole search's."""
        self._warm_up()
        start = time.perf_counter()
        reached = encode_to_target(self.codec, View(left, "RGB"), View(right, "RGB"), target)
        return self._decoded(reached.encoded.data, time.perf_counter() - start), reached


@dataclass(frozen=True)
class RDPoint:
    """One pair coded by one codec at one setting."""

    pair: str
    codec: str
    quality: float  # the codec's setting: an integer, except where an sbic target found a quality between levels
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


@dataclass(frozen=True)
class AtTarget:
    """A baseline at sbic's operating point on one pair, interpolated between two of its settings."""

    bpp: float
    psnr: float
    ms_ssim: float
    between: tuple[float, float]  # the settings it lies between (twice the same one when it hits a setting)


@dataclass(frozen=True)
class TargetRow:
    """One pair under a target: what sbic reached, and each baseline at the same bpp (or PSNR)."""

    pair: str
    sbic: RDPoint | None  # None when no quality of the weights meets the target on this pair
    encodes: int  # real encodes the search took
    note: str  # why the target is out of reach, how the search stopped short of its window, or that a budget was not needed in full
    baselines: dict[str, AtTarget | None]  # None: sbic's point lies outside the range of that codec's settings


@dataclass(frozen=True)
class TargetGap:
    """sbic against one baseline over the pairs where both have a value: mean PSNR gain (dB) or bpp change (%)."""

    pairs: int
    psnr_db: float | None  # rate targets: sbic's PSNR minus the baseline's at the same bpp (positive = sbic better)
    bpp_percent: float | None  # PSNR targets: sbic's bpp against the baseline's at the same PSNR (negative = fewer bits)


@dataclass
class ReportPlan:
    """What `run_report` will do, resolved before any coding so that notes and totals come first."""

    sources: list[Source]
    codecs: dict[str, BaselineCodec | SbicCodec]
    qualities: dict[str, list[int]]  # with a target, sbic's list is empty: the target chooses its quality per pair
    anchor: str
    max_side: int | None
    notes: list[str] = field(default_factory=list)
    target: Target | None = None

    @property
    def steps(self) -> int:
        """Units of progress: one per coding, one per target search."""
        searches = 1 if self.target is not None and SBIC in self.codecs else 0
        return len(self.sources) * (sum(len(q) for q in self.qualities.values()) + searches)


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
    target: Target | None = None
    target_rows: list[TargetRow] = field(default_factory=list)
    target_gaps: dict[str, TargetGap] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything, every RD point and target row included, as plain JSON-ready values."""
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
            "target": None if self.target is None else asdict(self.target),
            "target_rows": [asdict(r) for r in self.target_rows],
            "target_gaps": {name: asdict(g) for name, g in self.target_gaps.items()},
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


def default_anchor(codecs: list[str]) -> str:
    """hevc when it is among `codecs`, else the first baseline among them (sbic only when alone): nothing unasked is coded."""
    baselines = [c for c in codecs if c != SBIC]
    return PREFERRED_ANCHOR if PREFERRED_ANCHOR in baselines else (baselines or [SBIC])[0]


def plan_report(
    in_dir: Path,
    codecs: list[str] | None,
    anchor: str | None = None,
    qualities: dict[str, list[int]] | None = None,
    max_side: int | None = None,
    sbic_factory: Callable[[], Codec] | None = None,
    target: Target | None = None,
) -> ReportPlan:
    """Resolve pairs, codecs (unavailable baselines skipped with a note) and settings.

    `codecs` None: all of them. The anchor defaults to one of `codecs` (see `default_anchor`);
    one given that is not among them is coded too, with a note, and an unavailable anchor
    falls back to jpeg with a note. `sbic_factory` loads our network, only when sbic is asked
    for. With a `target`, sbic is coded per pair at the quality that meets it instead of at
    its levels.
    """
    codecs = list(ALL_CODECS) if codecs is None else codecs
    unknown = [c for c in [*codecs, anchor] if c is not None and c not in ALL_CODECS]
    if unknown:
        raise InputError(f"unknown codec {unknown[0]!r} (choose from {', '.join(ALL_CODECS)})")
    if not codecs:
        raise InputError("--codecs names no codec")
    if max_side is not None and max_side < 1:
        raise InputError("--max-side must be at least 1")
    qualities = qualities or {}
    if target is not None and SBIC not in codecs:
        raise InputError(f"--{target.kind} chooses sbic's quality per pair: add sbic to --codecs")
    if target is not None and SBIC in qualities:
        raise InputError(f"give either --qualities sbic=... or --{target.kind}: the target chooses sbic's quality")
    anchor = anchor or default_anchor(codecs)
    notes: list[str] = []
    chosen: dict[str, BaselineCodec | SbicCodec] = {}
    wanted = list(dict.fromkeys([*codecs, anchor]))
    if anchor not in codecs:
        notes.append(f"the anchor {anchor} is coded too, for the BD-rates (it is not in --codecs)")
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
    if target is not None:
        if chosen[SBIC].codec.quality_levels() < 2:
            raise InputError(f"--{target.kind}: these weights have a single rate; targets need variable-rate weights")
        settings[SBIC] = []
    return ReportPlan(sources, chosen, settings, anchor, max_side, notes, target)


def center_crop(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    """The central at most max_side x max_side region (the same region for both views)."""
    if max_side is None:
        return pixels
    h, w = pixels.shape[:2]
    top, left = (h - min(h, max_side)) // 2, (w - min(w, max_side)) // 2
    return np.ascontiguousarray(pixels[top : top + min(h, max_side), left : left + min(w, max_side)])


def measure(pair: str, codec: str, quality: float, left: np.ndarray, right: np.ndarray, coded: CodedPair) -> RDPoint:
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


def interpolate(points: list[RDPoint], along: str, value: float) -> AtTarget | None:
    """One codec's RD points of one pair, read where `along` ("bpp" or "psnr") equals `value`.

    Linear in log bpp between the two neighbouring settings (RD curves are close to straight
    there). The settings are walked in order of rate and the first crossing wins, so for a
    PSNR it is the fewest bits that reach it. None outside the settings' range: an
    extrapolated baseline would be a guess, not a measurement.
    """
    pts = sorted(points, key=lambda p: p.bpp)
    x = (lambda p: math.log(p.bpp)) if along == "bpp" else (lambda p: p.psnr)
    goal = math.log(value) if along == "bpp" else value
    for a, b in zip(pts, pts[1:] + pts[-1:]):  # the last point pairs with itself: an exact hit on it
        if x(a) <= goal <= x(b):
            t = 0.0 if x(b) == x(a) else (goal - x(a)) / (x(b) - x(a))
            if t == 1:
                a, t = b, 0.0
            if t == 0:
                b = a
            return AtTarget(
                math.exp((1 - t) * math.log(a.bpp) + t * math.log(b.bpp)),
                (1 - t) * a.psnr + t * b.psnr, (1 - t) * a.ms_ssim + t * b.ms_ssim, (a.quality, b.quality),
            )  # fmt: skip
    return None


def target_row(pair: str, sbic: RDPoint, reached: Reached, points: list[RDPoint], kind: str) -> TargetRow:
    """sbic's point on a pair next to every baseline's RD points of that pair read at the same bpp (or PSNR)."""
    along, value = ("psnr", sbic.psnr) if kind == "psnr" else ("bpp", sbic.bpp)
    names = dict.fromkeys(p.codec for p in points if p.pair == pair and p.codec != SBIC)
    baselines = {n: interpolate([p for p in points if p.pair == pair and p.codec == n], along, value) for n in names}
    return TargetRow(pair, sbic, reached.encodes, reached.note or reached.under_budget, baselines)


def target_gap(sbic: RDPoint, baseline: AtTarget, kind: str) -> float:
    """sbic against a baseline at sbic's operating point: its bits in % more (a PSNR target,
    `kind` "psnr") or its PSNR in dB more (a size or bpp target, where the rates are equal)."""
    return 100 * (sbic.bpp / baseline.bpp - 1) if kind == "psnr" else sbic.psnr - baseline.psnr


def target_gaps(rows: list[TargetRow], target: Target) -> dict[str, TargetGap]:
    """Per baseline, sbic's mean advantage over the pairs where both have a value (see `TargetGap`)."""
    gaps: dict[str, TargetGap] = {}
    for name in dict.fromkeys(n for r in rows for n in r.baselines):
        both = [target_gap(r.sbic, r.baselines[name], target.kind) for r in rows
                if r.sbic is not None and r.baselines.get(name) is not None]
        mean = float(np.mean(both)) if both else None
        gaps[name] = TargetGap(len(both), None, mean) if target.kind == "psnr" else TargetGap(len(both), mean, None)
    return gaps


def run_report(plan: ReportPlan, progress_callback: Callable[[int, str], None] | None = None) -> Report:
    """Code every pair with every codec at every setting (sbic at the target, if any) and summarise.

    A pair that cannot be read is left out, for every codec, with a note; a codec that
    fails on some pair is dropped entirely (its curve would not be comparable), with a note.
    A target out of reach on a pair gives that pair's target row no sbic point, and a note.
    `progress_callback(steps, label)` is told how many of `plan.steps` were just finished
    (0 with the label of a long step about to start).
    """
    notes = list(plan.notes)
    advance = progress_callback or (lambda steps, label: None)
    points: list[RDPoint] = []
    rows: list[TargetRow] = []
    failed: set[str] = set()
    pairs: list[str] = []
    searches = plan.target is not None and SBIC in plan.codecs
    for source in plan.sources:
        try:
            views = source.read()
        except InputError as e:
            notes.append(f"pair {source.name} left out: {e}")
            advance(sum(len(q) for q in plan.qualities.values()) + searches, source.name)
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
        if searches:
            advance(0, f"{source.name} sbic searching {plan.target.describe()}")
            try:
                coded, reached = plan.codecs[SBIC].code_target(left, right, plan.target)
            except (RuntimeError, ValueError) as e:  # out of reach (TargetError), or sbic failed on this pair
                rows.append(TargetRow(source.name, None, 0, first_line(e), {}))
                notes.append(f"pair {source.name}: {first_line(e)}")
            else:
                sbic = measure(source.name, SBIC, reached.quality, left, right, coded)
                rows.append(target_row(source.name, sbic, reached, points, plan.target.kind))
                if reached.note:
                    notes.append(f"pair {source.name}: sbic stopped short of the target's window: {reached.note}")
                if reached.under_budget:
                    notes.append(f"pair {source.name}: sbic's budget was not needed in full: {reached.under_budget}")
            advance(1, f"{source.name} sbic {plan.target.describe()}")
    if not pairs:
        raise InputError("no pair could be read; nothing to report")
    points = [p for p in points if p.codec not in failed]
    rows = [replace(r, baselines={n: v for n, v in r.baselines.items() if n not in failed}) for r in rows]
    qualities = {n: q for n, q in plan.qualities.items() if n not in failed}
    curves = mean_curves(points, qualities)
    bd, bd_notes = bd_rates(curves, plan.anchor)
    against, versus_notes = versus(curves)
    codecs = {n: {"knob": c.knob, "note": c.note, "qualities": plan.qualities[n]} for n, c in plan.codecs.items() if n not in failed}
    gaps = target_gaps(rows, plan.target) if plan.target is not None else {}
    return Report(plan.anchor, plan.max_side, pairs, codecs, points, curves, bd, notes + bd_notes + versus_notes, against, plan.target, rows, gaps)


def plot_rd(report: Report, path: Path, force: bool = False) -> None:
    """PSNR-vs-bpp mean curves of every codec, and sbic's mean point at a target, written as a PNG (atomically)."""
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
    reached = [r.sbic for r in report.target_rows if r.sbic is not None]
    if reached:
        label = f"sbic at {report.target.describe()} ({len(reached)} of {len(report.pairs)} pair(s))"
        ax.plot([np.mean([p.bpp for p in reached])], [np.mean([p.psnr for p in reached])], "*", label=label, markersize=12)
    ax.set_xlabel("bits per pixel (both views, real file sizes)")
    ax.set_ylabel("PSNR (dB, mean of the two views)")
    ax.set_title(f"Rate-distortion, mean over {len(report.pairs)} pair(s)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
