"""Batch compression and decompression of folder trees (the logic behind `stereo-codec batch`).

A batch is a list of independent jobs, one per stereo pair, so that it can be

* resumed: a job whose output already exists and is valid is skipped (outputs are
  written atomically, so an interrupted run leaves either a whole file or none);
* sharded: ``shard=(K, N)`` keeps the pairs whose index in the name-sorted list is
  ``K-1`` modulo ``N``, so N machines given the same tree cover every pair exactly once;
* parallel: ``workers=N`` runs N processes, each loading its own network once;
* robust: a pair that fails is recorded with a one-line reason and the batch goes on.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .batch_checks import unpaired_images, unpaired_note
from .codec import Codec, resolve_quality
from .coding.range_coding import CodingError
from .container import Container
from .errors import first_line
from .io.images import InputError, View, check_pair, read_view, restore_mode, write_bytes, write_image
from .io.pairs import find_pairs, is_image, list_files
from .io.stereo_formats import is_mpo, read_mpo, split_sbs
from .rate_control import Target, encode_pair, pair_psnr
from .store import default_entry, load_chosen
from .weights import WeightsError

# how a source holds its two views: two files, one MPO, one side-by-side image (parallel or cross-eyed)
# or, to decode, one .sbic file
Layout = Literal["pair", "mpo", "sbs", "sbs-cross", "sbic"]
DECODE_LAYOUT: Layout = "sbic"


@dataclass(frozen=True)
class Source:
    """One stereo input: a pair of files, an MPO, a side-by-side image, or (to decode) a .sbic file."""

    name: str  # POSIX path relative to the searched root, without extension
    layout: Layout
    paths: tuple[Path, ...]

    def read(self) -> tuple[View, View]:
        """The two views, checked to be a usable pair."""
        if self.layout == "pair":
            views = read_view(self.paths[0], "left"), read_view(self.paths[1], "right")
        elif self.layout == "mpo":
            views = read_mpo(self.paths[0])
        elif self.layout in ("sbs", "sbs-cross"):
            path = self.paths[0]
            views = split_sbs(read_view(path), cross=self.layout == "sbs-cross", label=str(path))
        else:
            raise ValueError(f"{self.name}: a {self.layout} source holds no views to read")
        check_pair(*views)
        return views

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths)


def _relative_name(root: Path, path: Path) -> str:
    """A one-file source's name: its path under `root`, POSIX, without extension."""
    return PurePosixPath(path.relative_to(root).as_posix()).with_suffix("").as_posix()


def _unique(sources: Iterable[Source]) -> list[Source]:
    """Sort by name, refusing two sources that would write the same output."""
    by_name: dict[str, Source] = {}
    for s in sources:
        if s.name in by_name:
            raise InputError(f"{by_name[s.name].paths[0]} and {s.paths[0]} both map to the name {s.name!r}; rename one")
        by_name[s.name] = s
    return [by_name[n] for n in sorted(by_name)]


def find_sources(root: Path, sbs: str | None = None) -> list[Source]:
    """Every stereo input under `root`, sorted by name.

    Pairs of files in any layout `pairs.find_pairs` knows, `.mpo` files, and with
    ``sbs="parallel"`` or ``"cross"`` every other image as a side-by-side pair.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    if sbs not in (None, "parallel", "cross"):
        raise ValueError(f"sbs must be None, 'parallel' or 'cross', not {sbs!r}")
    try:
        pairs = find_pairs(root)
    except ValueError as e:
        raise InputError(str(e)) from None
    sources = [Source(p.name, "pair", (p.left, p.right)) for p in pairs]
    sources += [Source(_relative_name(root, f), "mpo", (f,)) for f in list_files(root, is_mpo)]
    if sbs:
        paired = {f for p in pairs for f in (p.left, p.right)}
        layout: Layout = "sbs" if sbs == "parallel" else "sbs-cross"
        sources += [Source(_relative_name(root, f), layout, (f,)) for f in list_files(root, is_image) if f not in paired]
    return _unique(sources)


def find_sbic(root: Path) -> list[Source]:
    """Every .sbic file under `root`, as decode sources sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    files = list_files(root, lambda p: p.suffix.lower() == ".sbic" and not p.name.startswith("."))
    return _unique(Source(_relative_name(root, f), DECODE_LAYOUT, (f,)) for f in files)


@dataclass(frozen=True)
class Job:
    source: Source
    outputs: tuple[Path, ...]  # encode: the .sbic file; decode: the left and right PNGs

    @property
    def name(self) -> str:
        return self.source.name


def select_shard(items: list, shard: tuple[int, int] | None) -> list:
    """Items whose index is K-1 modulo N for shard (K, N), 1-based; all items for None."""
    if shard is None:
        return list(items)
    k, n = shard
    if not (n >= 1 and 1 <= k <= n):
        raise InputError(f"--shard {k}/{n}: need 1 <= K <= N")
    return [item for i, item in enumerate(items) if i % n == k - 1]


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), with a one-line error for anything else."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: expected K/N, e.g. 1/4") from None
    select_shard([], (k, n))
    return k, n


def plan_batch(in_dir: Path, out_dir: Path, shard: tuple[int, int] | None = None, sbs: str | None = None) -> list[Job]:
    """Encode jobs for the stereo inputs under `in_dir`, writing `out_dir/<name>.sbic` (the tree mirrored)."""
    sources = select_shard(find_sources(in_dir, sbs), shard)
    return [Job(s, (Path(out_dir) / f"{s.name}.sbic",)) for s in sources]


def plan_decode(in_dir: Path, out_dir: Path, shard: tuple[int, int] | None = None) -> list[Job]:
    """Decode jobs for the .sbic files under `in_dir`, writing `out_dir/<name>_left.png` and `_right.png`."""
    jobs = []
    for s in select_shard(find_sbic(in_dir), shard):
        base = Path(out_dir) / s.name
        jobs.append(Job(s, tuple(base.parent / f"{base.name}_{side}.png" for side in ("left", "right"))))
    return jobs


def plan_jobs(in_dir: Path, out_dir: Path, decode: bool = False, shard: str | None = None,
              sbs: str | None = None) -> tuple[list[Job], str | None]:
    """The jobs of one batch command, this shard's share ("K/N"), and a note on the images no
    pair uses (encoding). An empty plan is refused in one line, saying why."""
    selected = parse_shard(shard) if shard else None
    every, note = [], None
    if decode:
        jobs = plan_decode(in_dir, out_dir, selected)
    else:
        every = plan_batch(in_dir, out_dir, None, sbs)
        jobs = select_shard(every, selected)
        note = unpaired_note(in_dir, unpaired_images(in_dir, {p for j in every for p in j.source.paths}), bool(every))
    if not jobs:
        if note and not every:
            raise InputError(note)
        raise InputError(f"{in_dir}: no {'.sbic files' if decode else 'stereo pairs'} found" + (f" in shard {shard}" if shard else ""))
    return jobs, note


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


CodecFactory = Callable[..., Codec]  # (variant, fingerprint=None) -> Codec


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


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def coded(self) -> list[Outcome]:
        """Pairs that have a valid output now, whether made by this run or an earlier one."""
        return [o for o in self.outcomes if o.status != "failed"]

    @property
    def image_bytes(self) -> int:
        return sum(o.image_bytes for o in self.coded)

    @property
    def sbic_bytes(self) -> int:
        return sum(o.sbic_bytes for o in self.coded)

    @property
    def ratio(self) -> float | None:
        """Compression ratio: image bytes per .sbic byte."""
        return self.image_bytes / self.sbic_bytes if self.sbic_bytes else None

    @property
    def mean_bpp(self) -> float | None:
        values = [o.bpp for o in self.coded if o.bpp is not None]
        return sum(values) / len(values) if values else None

    @property
    def under_budget(self) -> int:
        """Pairs coded now at the highest quality, a size or bpp budget not needed in full."""
        return sum(o.under_budget for o in self.outcomes)

    @property
    def mean_psnr(self) -> float | None:
        values = [o.psnr for o in self.coded if o.psnr is not None]
        return sum(values) / len(values) if values else None


def one_line(error: BaseException) -> str:
    """A failure reason: our errors are one line already; anything else gets its type named."""
    first = first_line(error)
    if isinstance(error, (ValueError, OSError)) or first == type(error).__name__:  # StereoCodecError is a ValueError
        return first
    return f"{type(error).__name__}: {first}"


def _valid_sbic(path: Path) -> bool:
    try:
        Container.from_bytes(path.read_bytes())
        return True
    except (OSError, ValueError):
        return False


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


class _Runner:
    """Runs one job; holds the networks a process has loaded, one per variant asked for."""

    def __init__(self, factory: CodecFactory, quality: float | Target | None, verify: bool, force: bool) -> None:
        self.factory, self.quality, self.verify, self.force = factory, quality, verify, force
        self.codecs: dict[tuple[str | None, bytes | None], Codec] = {}

    def codec(self, variant: str | None, fingerprint: bytes | None = None) -> Codec:
        key = (variant, fingerprint)
        if key not in self.codecs:
            self.codecs[key] = self.factory(variant, fingerprint)
        return self.codecs[key]

    def __call__(self, job: Job) -> Outcome:
        start = time.perf_counter()
        try:
            run = self._decode if job.source.layout == DECODE_LAYOUT else self._encode
            outcome = run(job)
        except Exception as e:  # one pair's failure, whatever it is, must not stop the batch
            return Outcome(job.name, "failed", one_line(e), seconds=time.perf_counter() - start)
        return replace(outcome, seconds=time.perf_counter() - start)

    def _encode(self, job: Job) -> Outcome:
        (output,) = job.outputs
        image_bytes = job.source.nbytes()
        codec = self.codec(None)
        if not self.force and _valid_sbic(output):
            data = output.read_bytes()
            existing = Container.from_bytes(data)
            if _made_as_asked(existing, len(data), codec, self.quality):
                return Outcome(job.name, "skipped", image_bytes=image_bytes, sbic_bytes=len(data), bpp=existing.bpp(len(data)))
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


_WORKER: _Runner | None = None


def _init_worker(runner: _Runner) -> None:
    """Process-pool initializer: one thread per worker (the pool is the parallelism)."""
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = runner


def _work(job: Job) -> Outcome:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(job)


def run_batch(
    jobs: list[Job],
    codec_factory: CodecFactory,
    quality: float | Target | None = None,
    workers: int = 1,
    verify: bool = False,
    force: bool = False,
    progress_callback: Callable[[Outcome], None] | None = None,
) -> BatchResult:
    """Run encode or decode jobs, in this process (workers=1) or in `workers` processes.

    `quality` is a quality or a rate_control.Target to meet for each pair.
    `codec_factory(variant, fingerprint)` loads a network; each process calls it lazily, once
    per variant and weights. An existing valid output is kept when it was made with the variant, quality and
    weights asked for, and redone otherwise. Outcomes come in completion order; `force`
    redoes every pair.
    """
    if workers < 1:
        raise InputError("--workers must be at least 1")
    runner = _Runner(codec_factory, quality, verify, force)
    result = BatchResult()

    def record(outcome: Outcome) -> None:
        result.outcomes.append(outcome)
        if progress_callback is not None:
            progress_callback(outcome)

    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            record(runner(job))
        return result
    # spawn, not fork: the parent may hold threads (torch, the progress display)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_init_worker, initargs=(runner,))
    try:
        futures: dict[Future, Job] = {pool.submit(_work, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                record(future.result())
            except BrokenProcessPool:
                record(Outcome(futures[future].name, "failed", "its worker process died (out of memory?)"))
    finally:  # on Ctrl-C or an error, drop the queued pairs instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)
    return result

