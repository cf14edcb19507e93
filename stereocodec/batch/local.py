"""The local engine: this process (one worker) or a pool of worker processes on this machine.

Each process loads its own network once and runs one thread (the pool is the parallelism).
Jobs are handed out two per process at most, so a million pairs never become a million futures.
A process that dies (out of memory) breaks the pool: the pairs it held fail with that reason,
a fresh pool takes the rest, and a rerun retries them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from itertools import islice

import torch

from ..io.images import InputError
from .plan import Job
from .work import Outcome, Runner

_WORKER: Runner | None = None
QUEUED = 2  # jobs in flight per process: one running, one ready to start


def _init_worker(runner: Runner) -> None:
    """Process-pool initializer: one thread per worker (the pool is the parallelism)."""
    global _WORKER
    torch.set_num_threads(1)
    _WORKER = runner


def _work(job: Job) -> Outcome:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(job)


def execute(jobs: Iterable[Job], runner: Runner, workers: int, record: Callable[[Outcome], None]) -> None:
    """Run `jobs` with `runner`, in this process (workers=1) or in `workers` processes; `record`
    each outcome as it comes."""
    if runner.spec.device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: this machine has no CUDA GPU")
    if isinstance(jobs, Sized):
        workers = min(workers, len(jobs))  # no process that would get no pair
    if workers <= 1:
        for job in jobs:
            record(runner(job))
        return

    def start() -> ProcessPoolExecutor:  # spawn, not fork: the parent may hold threads (torch, the progress display)
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(runner,))

    todo, pool, broken = iter(jobs), start(), False
    in_flight: dict[Future, Job] = {}
    try:
        while True:
            if broken and not in_flight:  # every pair the broken pool held is counted: go on with a new one
                pool.shutdown(wait=True)
                pool, broken = start(), False
            if not broken:
                for job in islice(todo, QUEUED * workers - len(in_flight)):
                    in_flight[pool.submit(_work, job)] = job
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                job = in_flight.pop(future)
                try:
                    record(future.result())
                except BrokenProcessPool:
                    broken = True
                    job.remove_temps()
                    record(Outcome(job.name, "failed", "its worker process died (out of memory?)"))
    finally:  # on Ctrl-C or an error, drop the queued pairs instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)
