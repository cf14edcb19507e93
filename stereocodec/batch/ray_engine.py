"""The Ray engine: a batch on the cluster that RAY_ADDRESS names, or on a local one started for it.

One actor per worker, each one process with one network (loaded at its first job and kept) and
one job at a time, on one CPU or, with device "cuda", one GPU. The driver hands a job to an
actor only when that actor is ready and idle, so it holds at most one job per actor, whatever
the number of pairs. An actor that dies (a lost node, the out-of-memory killer, a signal) is
replaced, and the pair it held is handed out again, up to MAX_ATTEMPTS times in all.

Workers read the inputs and write the outputs themselves (through a temporary file and a
rename): every path must be on storage that every node sees, and stereo-codec installed on
every node.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace

import ray
import torch
from ray.exceptions import OutOfMemoryError, RayActorError, WorkerCrashedError

from ..errors import first_line
from ..io.images import InputError
from .plan import Job
from .work import Outcome, Runner

MAX_ATTEMPTS = 3  # per pair: a pair that kills its worker every time must not loop forever
LOST = (RayActorError, OutOfMemoryError, WorkerCrashedError)


class BatchWorker:
    """A Ray actor: one process and its networks, running one job at a time."""

    def __init__(self, runner: Runner) -> None:
        torch.set_num_threads(1)  # one CPU per actor: the actors are the parallelism
        self.runner = runner

    def ready(self) -> int:
        """Answered once the actor has started (its process id, for whoever watches it)."""
        return os.getpid()

    def run(self, job: Job) -> Outcome:
        return self.runner(job)


def _connect() -> bool:
    """Join the cluster RAY_ADDRESS names, or start a local one; True when this call started Ray
    (and must stop it). A Ray already running in this process is used as it is."""
    if ray.is_initialized():
        return False
    try:
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise InputError(f"RAY_ADDRESS={os.environ.get('RAY_ADDRESS', '')}: cannot connect to Ray ({first_line(e)})") from None
    return True


class _Actors:
    """The actors and the jobs they hold: every reference awaited maps to its actor and job
    (None for the answer to `ready`)."""

    def __init__(self, runner: Runner, workers: int) -> None:
        gpus = 1 if runner.spec.device.startswith("cuda") else 0
        if gpus and ray.cluster_resources().get("GPU", 0) < 1:
            raise InputError("--device cuda: the Ray cluster has no GPU")
        self.make = ray.remote(BatchWorker).options(num_cpus=1, num_gpus=gpus, max_restarts=0)
        self.runner = ray.put(runner)  # sent once, for every actor and every replacement
        self.awaited: dict[ray.ObjectRef, tuple[ray.actor.ActorHandle, Job | None]] = {}
        self.idle: list[ray.actor.ActorHandle] = []
        self.failed_starts, self.workers = 0, workers
        for _ in range(workers):
            self.start()

    def start(self) -> None:
        actor = self.make.remote(self.runner)
        self.awaited[actor.ready.remote()] = (actor, None)

    def give(self, job: Job) -> None:
        actor = self.idle.pop()
        self.awaited[actor.run.remote(job)] = (actor, job)

    def busy(self) -> bool:
        return any(job is not None for _, job in self.awaited.values())

    def next(self) -> tuple[Job | None, Outcome | BaseException | None]:
        """Wait for one answer: (job, its outcome), (job, the error that lost it), or (None, None)
        when an actor became ready. A lost actor is replaced."""
        [ref], _ = ray.wait(list(self.awaited), num_returns=1)
        actor, job = self.awaited.pop(ref)
        try:
            value = ray.get(ref)
        except LOST as e:
            ray.kill(actor)
            if job is None:  # it died starting: the workers cannot start (or the cluster is shrinking)
                self.failed_starts += 1
                if self.failed_starts > MAX_ATTEMPTS * self.workers:
                    raise InputError(f"Ray workers fail to start: {first_line(e)}") from None
            self.start()
            return job, e
        self.idle.append(actor)
        return job, (None if job is None else value)

    def close(self) -> None:
        for actor, _ in self.awaited.values():
            ray.kill(actor)
        for actor in self.idle:
            ray.kill(actor)


def execute(jobs: Iterable[Job], runner: Runner, workers: int, record: Callable[[Outcome], None]) -> None:
    """Run `jobs` with `runner` on `workers` Ray actors; `record` each outcome as it comes."""
    started = _connect()
    try:
        actors = _Actors(runner, workers)
        try:
            todo, again = iter(jobs), deque[Job]()  # again: pairs whose worker died, handed out first
            attempts: dict[str, int] = {}  # only for those pairs: a few
            exhausted = False
            while True:
                while actors.idle:
                    job = again.popleft() if again else next(todo, None)
                    if job is None:
                        exhausted = True
                        break
                    actors.give(job)
                if exhausted and not again and not actors.busy():
                    return
                job, answer = actors.next()
                if job is None:
                    continue
                if isinstance(answer, Outcome):
                    record(replace(answer, attempts=attempts.pop(job.name, 1)))
                    continue
                job.remove_temps()  # it may have died writing
                n = attempts.get(job.name, 1)
                if n < MAX_ATTEMPTS:
                    attempts[job.name] = n + 1
                    again.append(job)
                else:
                    attempts.pop(job.name, None)
                    record(Outcome(job.name, "failed", f"its Ray worker died {n} times ({first_line(answer)})", attempts=n))
        finally:
            actors.close()
    finally:
        if started:
            ray.shutdown()
