"""Targets instead of a quality: the quality that meets a file size, a bit rate or a PSNR.

Image tools let people ask for a result (`cwebp -size`, `cwebp -psnr`) rather than a knob
setting. The continuous quality scale makes that a one-dimensional search: the size grows
and the PSNR (broadly) grows with the quality, so bisection over the scale, steered by
interpolation, finds the quality in about 8-12 real encodes. Every step measures the real
coded file (and, for PSNR, the real reconstruction, which is what the decoder produces), so
the result is never an estimate. The analysis transform runs once per pair (Codec caches it).

A size or bpp budget is a ceiling, not a goal: when even the highest quality makes a smaller
file, that file is the answer (a generous budget in a folder of mixed image sizes must not fail
the small pairs), and the result says that the budget was not needed in full.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .codec import Codec, Decoded, Encoded, network_quality
from .io.images import InputError, View
from .metrics import psnr

SIZE_WINDOW = 0.03  # a size target is met by a file at most 3 % smaller than it, never larger
PSNR_SLACK_DB = 0.05  # a PSNR target is met at or above it; the search stops within this much above
MAX_ENCODES = 14  # an upper bound, reached only when the curve is not monotonic


class TargetError(InputError):
    """A target no quality of these weights reaches (a one-line message for the CLI)."""


@dataclass(frozen=True)
class Target:
    """What to reach: `kind` is "size" (bytes), "bpp" (bits per pixel of both views) or "psnr" (dB)."""

    kind: str
    value: float

    @classmethod
    def from_options(cls, size: int | None, bpp: float | None, psnr_db: float | None,
                     quality: float | None = None) -> Target | None:
        """The target of the CLI options --size/--bpp/--psnr (at most one of them, and not with
        a --quality), or None."""
        given = [cls(kind, v) for kind, v in (("size", size), ("bpp", bpp), ("psnr", psnr_db)) if v is not None]
        if len(given) > 1:
            raise InputError("give one target: --size, --bpp or --psnr DB")
        if given and quality is not None:
            raise InputError("give either --quality or a target (--size, --bpp, --psnr DB)")
        if given and given[0].value <= 0:
            raise InputError(f"--{given[0].kind} must be positive")
        return given[0] if given else None

    def describe(self) -> str:
        return {"size": f"{self.value:,.0f} bytes", "bpp": f"{self.value:g} bpp", "psnr": f"{self.value:g} dB"}[self.kind]

    def met_by(self, nbytes: int, bpp: float, quality: float, highest: float) -> bool:
        """Does a file made earlier (`nbytes`, `bpp`, at `quality`) meet this target as a search would
        now: within the window under a size or bpp budget, or anywhere under it at the `highest`
        quality? Batch reruns keep such files. A PSNR needs the pixels, so it is never taken as met."""
        if self.kind == "psnr":
            return False
        measured = nbytes if self.kind == "size" else bpp
        return measured <= self.value and (measured >= self.value * (1 - SIZE_WINDOW) or quality == highest)


@dataclass(frozen=True)
class Reached:
    """The encoding chosen for a target, what it measures, and how many encodes the search took."""

    encoded: Encoded
    quality: float
    nbytes: int
    psnr: float | None  # mean of the two views' PSNR, dB (measured for PSNR targets only)
    encodes: int
    note: str = ""  # set when the search stopped short of its window (a non-monotonic curve)
    under_budget: str = ""  # set when the highest quality's file is below a size or bpp budget's window: says so

    def describe(self, target: Target) -> str:
        """The result of the search in words, for the line that follows an encode at `target`."""
        encodes = f"({self.encodes} encode{'' if self.encodes == 1 else 's'})"
        if self.under_budget:
            return f"{self.under_budget} {encodes}"
        if target.kind == "psnr":
            value = f"{self.psnr:.2f} dB"
        else:
            value = f"{self.nbytes:,} bytes" if target.kind == "size" else f"{self.encoded.container.bpp(self.nbytes):.4f} bpp"
        return f"reached {value} at quality {self.quality:g} {encodes}" + (f"; {self.note}" if self.note else "")


def pair_psnr(left: View, right: View, coded: Encoded | Decoded) -> float:
    """The pair's PSNR as everywhere in stereo-codec: the mean of the two views' PSNR in dB."""
    return (psnr(left.pixels, coded.left) + psnr(right.pixels, coded.right)) / 2


def encode_pair(codec: Codec, left: View, right: View, setting: float | Target | None,
                reconstruct: bool = False) -> tuple[Encoded, Reached | None]:
    """Encode at a quality (None: the default), or at the quality that meets a target (with what
    the search reached). `reconstruct` asks for the encoded views too: a size search skips the
    synthesis, so its file is then made once more with it."""
    if not isinstance(setting, Target):
        return codec.encode(left, right, setting, reconstruct=reconstruct), None
    reached = encode_to_target(codec, left, right, setting)
    encoded = reached.encoded
    if reconstruct and encoded.left is None:
        encoded = codec.encode(left, right, reached.quality, reconstruct=True)
    return encoded, reached


def encode_to_target(codec: Codec, left: View, right: View, target: Target) -> Reached:
    """Encode a pair at the quality that meets `target`; TargetError when no quality does."""
    levels = codec.quality_levels()
    if levels < 2:
        raise InputError("these weights have a single rate: targets need variable-rate weights")
    top = (levels - 1) * 1000  # the search runs on the file's grid: thousandths of a level
    if target.kind == "psnr":
        return _search_psnr(codec, left, right, target.value, top)
    h, w = left.pixels.shape[:2]
    budget = target.value if target.kind == "size" else target.value * 2 * h * w / 8
    return _search_size(codec, left, right, math.floor(budget), top, target)


class _Probe:
    """Real encodes at thousandths of a level, counted."""

    def __init__(self, codec: Codec, left: View, right: View, reconstruct: bool) -> None:
        self.codec, self.left, self.right, self.reconstruct = codec, left, right, reconstruct
        self.count = 0

    def __call__(self, k: int) -> Encoded:
        self.count += 1
        return self.codec.encode(self.left, self.right, k / 1000, reconstruct=self.reconstruct)


def _next(lo: int, hi: int, f_lo: float, f_hi: float, goal: float) -> int:
    """The next quality to try inside (lo, hi): interpolated towards `goal`, kept in the middle half."""
    t = 0.5 if f_hi == f_lo else (goal - f_lo) / (f_hi - f_lo)
    k = round(lo + min(max(t, 0.25), 0.75) * (hi - lo))
    return min(max(k, lo + 1), hi - 1)


def _quality(k: int) -> float:
    """The quality of grid point k, exactly as the file stores it."""
    return network_quality(*divmod(k, 1000))


def _search_size(codec: Codec, left: View, right: View, budget: int, top: int, target: Target) -> Reached:
    """The highest quality whose file fits in `budget` bytes, searched on log size (about linear in quality)."""
    probe = _Probe(codec, left, right, reconstruct=False)
    floor_ok = budget * (1 - SIZE_WINDOW)

    def done(k: int, enc: Encoded, note: str = "", under_budget: str = "") -> Reached:
        return Reached(enc, _quality(k), len(enc.data), None, probe.count, note, under_budget)

    best = probe(top)
    if len(best.data) <= budget:  # a ceiling the best file already fits under
        return done(top, best, under_budget="" if len(best.data) >= floor_ok else _under(target, best, top))
    worst = probe(0)
    if len(worst.data) > budget:
        raise TargetError(
            f"--{target.kind} {target.describe()} is out of reach: the smallest file, at the lowest quality (0), "
            f"is {_amount(target, worst)}"
        )
    lo, hi, enc_lo, s_hi = 0, top, worst, len(best.data)
    goal = math.log(budget * (1 - SIZE_WINDOW / 2))
    while len(enc_lo.data) < floor_ok and hi - lo > 1 and probe.count < MAX_ENCODES:
        k = _next(lo, hi, math.log(len(enc_lo.data)), math.log(s_hi), goal)
        enc = probe(k)
        if len(enc.data) <= budget:
            lo, enc_lo = k, enc
        else:
            hi, s_hi = k, len(enc.data)
    if len(enc_lo.data) < floor_ok:
        return done(lo, enc_lo, f"the closest file under the target is {100 * (1 - len(enc_lo.data) / budget):.1f} % below it")
    return done(lo, enc_lo)


def _amount(target: Target, enc: Encoded) -> str:
    """A file's size in the target's unit: bytes, or bits per pixel with the bytes."""
    nbytes = len(enc.data)
    return f"{nbytes:,} bytes" if target.kind == "size" else f"{enc.container.bpp(nbytes):.4f} bpp ({nbytes:,} bytes)"


def _under(target: Target, best: Encoded, top: int) -> str:
    """That a budget was not needed in full: the highest quality's file and the budget."""
    budget = f"{target.value:,.0f}-byte" if target.kind == "size" else f"{target.value:g} bpp"
    return f"quality {top / 1000:g} (the highest) makes {_amount(target, best)}, under the {budget} budget"


def _search_psnr(codec: Codec, left: View, right: View, goal: float, top: int) -> Reached:
    """The lowest quality (smallest file) whose reconstruction reaches `goal` dB."""
    probe = _Probe(codec, left, right, reconstruct=True)

    def done(k: int, enc: Encoded, p: float) -> Reached:
        return Reached(enc, _quality(k), len(enc.data), p, probe.count)

    best = probe(top)
    p_hi = pair_psnr(left, right, best)
    if p_hi < goal:
        raise TargetError(f"--psnr {goal:g} dB is out of reach: the highest quality ({top / 1000:g}) reaches {p_hi:.2f} dB")
    worst = probe(0)
    p_lo = pair_psnr(left, right, worst)
    if p_lo >= goal:
        return done(0, worst, p_lo)
    lo, hi, enc_hi = 0, top, best
    while p_hi - goal > PSNR_SLACK_DB and hi - lo > 1 and probe.count < MAX_ENCODES:
        k = _next(lo, hi, p_lo, p_hi, goal + PSNR_SLACK_DB / 2)
        enc = probe(k)
        p = pair_psnr(left, right, enc)
        if p >= goal:
            hi, enc_hi, p_hi = k, enc, p
        else:
            lo, p_lo = k, p
    return done(hi, enc_hi, p_hi)

