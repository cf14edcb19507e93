"""Run a plan on an engine: the same jobs, outcomes and totals whichever engine runs them.

An engine is a module with one function, `execute(jobs, runner, workers, record)`, that calls
`runner(job)` for every job somewhere and `record(outcome)` here, in completion order, holding
only a bounded number of jobs at a time. Adding one is a module and a line in `executor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..io.images import InputError
from ..rate_control import Target
from .plan import Job
from .work import BatchResult, CodecSpec, Outcome, Runner

ENGINES = ("local", "ray")
Executor = Callable[[Iterable[Job], Runner, int, Callable[[Outcome], None]], None]


def executor(engine: str) -> Executor:
    """The engine's `execute`, imported only when chosen (Ray is an optional extra): a missing
    Ray is a one-line error before any work."""
    if engine == "local":
        from .local import execute
    elif engine == "ray":
        try:
            from .ray_engine import execute
        except ModuleNotFoundError as e:
            if (e.name or "").partition(".")[0] != "ray":
                raise
            raise InputError('--engine ray needs Ray, the optional "ray" extra: pip install -e ".[ray]" (or pip install "ray>=2.9")') from None
    else:
        raise InputError(f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    return execute


def run_batch(
    jobs: Iterable[Job],
    codec_spec: CodecSpec,
    quality: float | Target | None = None,
    workers: int = 1,
    verify: bool = False,
    force: bool = False,
    progress_callback: Callable[[Outcome], None] | None = None,
    engine: str = "local",
) -> BatchResult:
    """Run encode or decode jobs on `engine` with `workers` workers (processes or Ray actors).

    `quality` is a quality or a rate_control.Target to meet for each pair. Each worker loads
    `codec_spec`'s network once per variant and weights, lazily. An existing valid output is
    kept when it was made with the variant, quality and weights asked for, and redone otherwise;
    `force` redoes every pair. `jobs` may be any iterable (a Plan, a generator): it is consumed
    as the workers take jobs. Outcomes reach `progress_callback` in completion order.
    """
    if workers < 1:
        raise InputError("--workers must be at least 1")
    execute = executor(engine)
    result = BatchResult()

    def record(outcome: Outcome) -> None:
        result.add(outcome)
        if progress_callback is not None:
            progress_callback(outcome)

    execute(jobs, Runner(codec_spec, quality, verify, force), workers, record)
    return result
