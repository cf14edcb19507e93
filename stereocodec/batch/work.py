"""One job, done the same way by every engine: skip a valid output made as asked, or code the
pair and write its output atomically; and the totals of the outcomes.

The skip decision (the settings check) runs where the job runs, beside the output on shared
storage, so that a rerun of a million pairs checks them in parallel too.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..codec import Codec, resolve_quality
from ..coding.range_coding import CodingError
from ..container import Container
from ..errors import first_line
from ..io.images import restore_mode, write_bytes, write_image
from ..rate_control import Target, encode_pair, pair_psnr
from ..store import default_entry, load_chosen
from ..weights import WeightsError
from .plan import Job


@dataclass(frozen=True)
class CodecSpec:
    """How to load the network, picklable so that every worker process can load its own.

    `variant` is used when the caller gives no variant (encoding); decoding asks for the
    variant written in each file, so a tree mixing variants decodes with shipped weights.
    """

    weights: Path | None = None
    variant: str | None = None
    device: str = "cpu"
    refine_steps: int = 0  # encoder-side latent refinement per encode (`Codec`)
    max_pixels: int | None = None  # per view, as for `encode`: None keeps the default limit and the free-memory check

    def check(self) -> None:
        """Fail once, before any pair is tried, when the weights file is missing (cheap: loads nothing)."""
        if self.weights is not None:
            if not self.weights.is_file():
                raise WeightsError(f"weights file not found: {self.weights}")
        elif self.variant is None:
            raise WeightsError("no weights: pass --weights or --variant")
        else:
            default_entry(self.variant)

    def __call__(self, variant: str | None = None, fingerprint: bytes | None = None) -> Codec:
        """The network for `variant`; with a file's `fingerprint`, the stored weights that wrote it."""
        weights = load_chosen(self.weights, variant or self.variant, fingerprint, self.device)
        return Codec(weights, self.max_pixels, self.refine_steps)


@dataclass(frozen=True)
class Outcome:
    """What happened to one pair. Sizes are of the image files and of the .sbic file."""

    name: str
    status: str  # "done", "skipped" (a valid output was already there) or "failed"
    reason: str = ""  # one line, for failures
    image_bytes: int = 0  # encode: the input image files; decode: the PNGs written
    sbic_bytes: int = 0
    bpp: float | None = None  # bits of the .sbic file per pixel of both views
    psnr: float | None = None  # mean of the two views, when the output was decoded and compared
    seconds: float = 0.0
    under_budget: bool = False  # coded at the highest quality, well under a --size or --bpp budget
    attempts: int = 1  # more than 1: its worker died and it was handed out again


@dataclass
class BatchResult:
    """Running totals of the outcomes, so that a million pairs cost no more memory than ten;
    only the failures are kept, to be named."""

    counts: Counter = field(default_factory=Counter)
    failures: list[Outcome] = field(default_factory=list)
    image_bytes: int = 0  # of the pairs that have a valid output now (done or skipped)
    sbic_bytes: int = 0
    under_budget: int = 0  # pairs coded now at the highest quality, a size or bpp budget not needed in full
    retried: int = 0  # pairs handed out again after their worker died
    bpp_sum: float = 0.0  # over the pairs with a bpp (all that have an output)
    bpp_count: int = 0
    psnr_sum: float = 0.0  # over the pairs verified in this run
    psnr_count: int = 0

    def add(self, o: Outcome) -> None:
        self.counts[o.status] += 1
        self.retried += o.attempts > 1
        self.under_budget += o.under_budget
        if o.status == "failed":
            self.failures.append(o)
            return
        self.image_bytes += o.image_bytes
        self.sbic_bytes += o.sbic_bytes
        if o.bpp is not None:
            self.bpp_sum, self.bpp_count = self.bpp_sum + o.bpp, self.bpp_count + 1
        if o.psnr is not None:
            self.psnr_sum, self.psnr_count = self.psnr_sum + o.psnr, self.psnr_count + 1

    def count(self, status: str) -> int:
        return self.counts[status]

    @property
    def pairs(self) -> int:
        return sum(self.counts.values())

    @property
    def ratio(self) -> float | None:
        """Compression ratio: image bytes per .sbic byte."""
        return self.image_bytes / self.sbic_bytes if self.sbic_bytes else None

    @property
    def mean_bpp(self) -> float | None:
        return self.bpp_sum / self.bpp_count if self.bpp_count else None

    @property
    def mean_psnr(self) -> float | None:
        return self.psnr_sum / self.psnr_count if self.psnr_count else None


def one_line(error: BaseException) -> str:
    """A failure reason: our errors are one line already; anything else gets its type named."""
    first = first_line(error)
    if isinstance(error, (ValueError, OSError)) or first == type(error).__name__:  # StereoCodecError is a ValueError
        return first
    return f"{type(error).__name__}: {first}"


def _existing_sbic(path: Path) -> tuple[int, Container] | None:
    """A valid .sbic file already at `path` (its size and header, read once), or None."""
    try:
        data = path.read_bytes()
        return len(data), Container.from_bytes(data)
    except (OSError, ValueError):
        return None


def _valid_image(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def _made_as_asked(existing: Container, nbytes: int, codec: Codec, quality: float | Target | None) -> bool:
    """Was an existing output made with this variant and weights, at this quality (or meeting this
    size or bpp target as a search would now)? A PSNR target cannot be checked without decoding:
    such outputs are redone. The pixel limit is not a setting of the file: it never redoes one."""
    if (existing.variant, existing.weights_fingerprint) != (codec.model.variant, codec.weights.fingerprint):
        return False
    if not isinstance(quality, Target):
        return existing.quality_value == resolve_quality(codec.model, quality)[0]
    return quality.met_by(nbytes, existing.bpp(nbytes), existing.quality_value, codec.quality_levels() - 1)


class Runner:
    """Runs one job; holds the networks its process has loaded, one per variant asked for.
    Picklable before its first job, so that an engine can send it to every worker."""

    def __init__(self, spec: CodecSpec, quality: float | Target | None, verify: bool, force: bool) -> None:
        self.spec, self.quality, self.verify, self.force = spec, quality, verify, force
        self.codecs: dict[tuple[str | None, bytes | None], Codec] = {}

    def codec(self, variant: str | None, fingerprint: bytes | None = None) -> Codec:
        key = (variant, fingerprint)
        if key not in self.codecs:
            self.codecs[key] = self.spec(variant, fingerprint)
        return self.codecs[key]

    def __call__(self, job: Job) -> Outcome:
        start = time.perf_counter()
        try:
            outcome = self._decode(job) if job.decode else self._encode(job)
        except Exception as e:  # one pair's failure, whatever it is, must not stop the batch
            return Outcome(job.name, "failed", one_line(e), seconds=time.perf_counter() - start)
        return replace(outcome, seconds=time.perf_counter() - start)

    def _encode(self, job: Job) -> Outcome:
        (output,) = job.outputs
        image_bytes = job.source.nbytes()
        codec = self.codec(None)
        existing = None if self.force else _existing_sbic(output)
        if existing is not None:
            nbytes, header = existing
            if _made_as_asked(header, nbytes, codec, self.quality):
                return Outcome(job.name, "skipped", image_bytes=image_bytes, sbic_bytes=nbytes, bpp=header.bpp(nbytes))
            # made with another variant, quality or weights than asked for now: redo it
        left, right = job.source.read()
        enc, reached = encode_pair(codec, left, right, self.quality, reconstruct=self.verify)
        decoded_psnr = None
        if self.verify:
            dec = codec.decode(enc.data)
            if not (np.array_equal(dec.left, enc.left) and np.array_equal(dec.right, enc.right)):
                raise CodingError("verify: the decoded views differ from the encoder's reconstruction")
            decoded_psnr = pair_psnr(left, right, dec)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(output, enc.data, force=True)  # the decision to (re)write was made above
        return Outcome(job.name, "done", image_bytes=image_bytes, sbic_bytes=len(enc.data),
                       bpp=enc.container.bpp(len(enc.data)), psnr=decoded_psnr,
                       under_budget=reached is not None and bool(reached.under_budget))

    def _decode(self, job: Job) -> Outcome:
        data = job.source.paths[0].read_bytes()
        container = Container.from_bytes(data)
        bpp = container.bpp(len(data))
        if not self.force and all(_valid_image(p) for p in job.outputs):
            return Outcome(job.name, "skipped", image_bytes=sum(p.stat().st_size for p in job.outputs), sbic_bytes=len(data), bpp=bpp)
        dec = self.codec(container.variant, container.weights_fingerprint).decode(data)
        job.outputs[0].parent.mkdir(parents=True, exist_ok=True)
        for path, pixels, view in zip(job.outputs, (dec.left, dec.right), container.views):
            write_image(path, restore_mode(pixels, view.mode), force=True)
        return Outcome(job.name, "done", image_bytes=sum(p.stat().st_size for p in job.outputs), sbic_bytes=len(data), bpp=bpp)
