"""The plan of a batch: this shard's sources, and the job (input and outputs) each one becomes.

Jobs are made as an engine takes them, not all up front, and an engine holds only the few in
flight: the driver's memory does not grow with the number of pairs beyond the sorted listing.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..io.images import InputError
from .checks import unpaired_images, unpaired_note
from .sources import DECODE_LAYOUT, Source, find_sbic, find_sources

T = TypeVar("T")


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
    """The sources of one batch under `out_dir`; iterating gives their jobs, made one at a time."""

    sources: Sequence[Source]
    out_dir: Path
    note: str | None = None  # about images no pair uses (encoding)

    def __len__(self) -> int:
        return len(self.sources)

    def __iter__(self) -> Iterator[Job]:
        return map(self.job, self.sources)

    def job(self, source: Source) -> Job:
        """Encoding writes `<out>/<name>.sbic`; decoding `<out>/<name>_left.png` and `_right.png`."""
        base = Path(self.out_dir) / source.name
        if source.layout == DECODE_LAYOUT:
            return Job(source, tuple(base.parent / f"{base.name}_{side}.png" for side in ("left", "right")))
        return Job(source, (base.parent / f"{base.name}.sbic",))


def select_shard(items: Sequence[T], shard: tuple[int, int] | None) -> Sequence[T]:
    """Items whose index is K-1 modulo N for shard (K, N), 1-based; all items for None."""
    if shard is None:
        return items
    k, n = shard
    if not (n >= 1 and 1 <= k <= n):
        raise InputError(f"--shard {k}/{n}: need 1 <= K <= N")
    return items[k - 1 :: n]


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N), with a one-line error for anything else."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: expected K/N, e.g. 1/4") from None
    select_shard([], (k, n))
    return k, n


def plan_batch(in_dir: Path, out_dir: Path, shard: tuple[int, int] | None = None, sbs: str | None = None) -> Plan:
    """Encode jobs for the stereo inputs under `in_dir`, writing `out_dir/<name>.sbic` (the tree mirrored)."""
    return Plan(select_shard(find_sources(in_dir, sbs), shard), out_dir)


def plan_decode(in_dir: Path, out_dir: Path, shard: tuple[int, int] | None = None) -> Plan:
    """Decode jobs for the .sbic files under `in_dir`, writing `out_dir/<name>_left.png` and `_right.png`."""
    return Plan(select_shard(find_sbic(in_dir), shard), out_dir)


def plan_jobs(in_dir: Path, out_dir: Path, decode: bool = False, shard: str | None = None,
              sbs: str | None = None) -> Plan:
    """The plan of one batch command, for this shard ("K/N"), with a note on the images no pair
    uses (encoding). An empty plan is refused in one line, saying why."""
    selected = parse_shard(shard) if shard else None
    every, note = [], None
    if decode:
        plan = plan_decode(in_dir, out_dir, selected)
    else:
        every = find_sources(in_dir, sbs)
        note = unpaired_note(in_dir, unpaired_images(in_dir, {p for s in every for p in s.paths}), bool(every))
        plan = Plan(select_shard(every, selected), out_dir, note)
    if not plan.sources:
        if note and not every:
            raise InputError(note)
        raise InputError(f"{in_dir}: no {'.sbic files' if decode else 'stereo pairs'} found" + (f" in shard {shard}" if shard else ""))
    return plan
