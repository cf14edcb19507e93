"""The plan of a batch: this shard's sources, and the job (input and outputs) each one becomes.

The listing is streamed, never held. Planning makes one pass over it (`Listing.survey`) that
counts this shard's sources (the progress total), refuses two inputs of one name and notes the
unpaired images, all before any work; running streams it again and makes each job as an engine
takes it, and an engine holds only the few in flight. So the driver's memory does not grow with
the number of pairs.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..io.images import InputError
from .checks import unpaired_note
from .sources import DECODE_LAYOUT, Listing, Source, Survey


@dataclass(frozen=True)
class Job:
    source: Source
    outputs: tuple[Path, ...]  # encode: the .sbic file; decode: the left and right PNGs

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def decode(self) -> bool:
        return self.source.layout == DECODE_LAYOUT

    def remove_temps(self) -> None:
        """Delete the temporary files a worker that died while writing this job's outputs left
        (`io.images.write_temp` names them `.<name>.<random>.part`), so that no partial file stays."""
        for output in self.outputs:
            for tmp in output.parent.glob(f".{glob.escape(output.name)}.*.part"):
                tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Plan:
    """The jobs of one batch under `out_dir`; iterating streams `sources` again and makes each job as it is taken."""

    sources: Iterable[Source]  # a Listing, or any iterable that can be iterated again
    out_dir: Path
    count: int  # how many `sources` gives (counted when planning): the progress total
    note: str | None = None  # about images no pair uses (encoding)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Job]:
        return map(self.job, self.sources)

    def job(self, source: Source) -> Job:
        """Encoding writes `<out>/<name>.sbic`; decoding `<out>/<name>_left.png` and `_right.png`."""
        base = Path(self.out_dir) / source.name
        if source.layout == DECODE_LAYOUT:
            return Job(source, tuple(base.parent / f"{base.name}_{side}.png" for side in ("left", "right")))
        return Job(source, (base.parent / f"{base.name}.sbic",))


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    """`shard` (K, N), refused in one line unless 1 <= K <= N."""
    if shard is not None and not (shard[1] >= 1 and 1 <= shard[0] <= shard[1]):
        raise InputError(f"--shard {shard[0]}/{shard[1]}: need 1 <= K <= N")
    return shard


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), with a one-line error for anything else."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: expected K/N, e.g. 1/4") from None
    check_shard((k, n))
    return k, n


def _planned(listing: Listing, out_dir: Path) -> tuple[Plan, Survey]:
    survey = listing.survey()
    note = unpaired_note(listing.root, survey.unpaired, survey.examples, survey.everywhere > 0)
    return Plan(listing, Path(out_dir), survey.here, note), survey


def plan_batch(in_dir: Path, out_dir: Path, shard: tuple[int, int] | None = None, sbs: str | None = None) -> Plan:
    """Encode jobs for the stereo inputs under `in_dir` in shard (K, N), writing `out_dir/<name>.sbic`
    (the tree mirrored), with a note on the images no pair uses."""
    return _planned(Listing(Path(in_dir), sbs, shard=check_shard(shard)), out_dir)[0]


def plan_decode(in_dir: Path, out_dir: Path, shard: tuple[int, int] | None = None) -> Plan:
    """Decode jobs for the .sbic files under `in_dir`, writing `out_dir/<name>_left.png` and `_right.png`."""
    return _planned(Listing(Path(in_dir), decode=True, shard=check_shard(shard)), out_dir)[0]


def plan_jobs(in_dir: Path, out_dir: Path, decode: bool = False, shard: str | None = None,
              sbs: str | None = None) -> Plan:
    """The plan of one batch command, for this shard ("K/N"), with a note on the images no pair
    uses (encoding). An empty plan is refused in one line, saying why."""
    plan, survey = _planned(Listing(Path(in_dir), sbs, decode, parse_shard(shard) if shard else None), out_dir)
    if not plan.count:
        if plan.note and not survey.everywhere:
            raise InputError(plan.note)
        raise InputError(f"{in_dir}: no {'.sbic files' if decode else 'stereo pairs'} found" + (f" in shard {shard}" if shard else ""))
    return plan
