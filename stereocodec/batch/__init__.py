"""Batch compression and decompression of folder trees (the logic behind `stereo-codec batch`).

One planner and interchangeable engines. The planner lists the inputs (`sources`), makes one
job per stereo pair for this shard (`plan`), decides per job whether a valid output made as
asked is already there and otherwise codes it (`work`), and totals the outcomes; an engine
(`local`, `ray`) only decides where each job runs (`engines`). So that a batch is

* resumable: a job whose output already exists, is valid and was made with the settings asked
  for is skipped (outputs are written atomically, so an interrupted run leaves a whole file or none);
* streamed: the listing is walked as the jobs are handed out, never held, so the driver's
  memory stays flat for a million pairs (`sources.Listing`);
* sharded: ``shard=(K, N)`` keeps the pairs whose name hashes to K (`sources.shard_of`: CRC-32
  of the name modulo N), so N machines given the same tree cover every pair exactly once;
* parallel: ``workers=N`` processes on this machine, or N actors on a Ray cluster, each
  loading its own network once;
* robust: a pair that fails is recorded with a one-line reason and the batch goes on.
"""

from __future__ import annotations

from .checks import check_writable_dir, unpaired_note
from .engines import ENGINES, executor, run_batch
from .plan import Job, Plan, check_shard, parse_shard, plan_batch, plan_decode, plan_jobs
from .sources import DECODE_LAYOUT, Layout, Listing, Source, Survey, find_sbic, find_sources, shard_of
from .work import BatchResult, CodecSpec, Outcome

__all__ = [
    "DECODE_LAYOUT", "ENGINES", "BatchResult", "CodecSpec", "Job", "Layout", "Listing", "Outcome", "Plan", "Source",
    "Survey", "check_shard", "check_writable_dir", "executor", "find_sbic", "find_sources", "parse_shard", "plan_batch",
    "plan_decode", "plan_jobs", "run_batch", "shard_of", "unpaired_note",
]  # fmt: skip
