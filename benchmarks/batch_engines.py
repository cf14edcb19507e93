"""The batch engines compared: throughput at full size, the driver's memory, and a cluster on paper.

Not a test. Three parts, printed as they finish:

Part 2 runs first, in a process that has loaded no network, so that its memory figures are the driver's.

1. Throughput: the pairs of PAIRS_DIR (default ../shared/data/stereo) at full size, each copied
   --repeat times under other names, encoded by `run_batch` (the shipped default weights, quality 3)
   with the local engine (--workers 1 and 2) and with Ray (2 actors on a local cluster of 2 CPUs
   started here), each into an empty folder. Pairs per minute of the whole run (start-up included)
   and of the work alone (the sum of the per-pair times over the workers), and Ray's overhead as
   the ratio of its wall time to the local engine's with the same 2 workers. Ray's own start
   (`ray.init`) is timed apart. The outputs of all three must be byte-equal.
2. Driver memory: --synthetic pairs (default a million) streamed through the planner (a Plan over a
   lazy sequence of sources: no file, no list of jobs) and an engine, with the per-pair work replaced
   by a trivial one, so that what is measured is the driver's machinery only (listing iterator,
   hand-out with backpressure, totals of the outcomes, progress callback). The resident memory is
   sampled as the pairs pass; flat means the driver does not grow with the number of pairs. The
   local engine in this process takes the full count; Ray and a local pool of 2 processes take
   --synthetic-remote pairs (a round trip per pair makes a million take too long). Then the real
   listing: a tree of --listing pairs of empty files on disk (folders of 100 `*_left.png` /
   `*_right.png`, a tenth of them in `left/` + `right/` folders, under the temporary folder,
   deleted after), planned with `plan_batch` and streamed through the local engine in a fresh
   process, RSS sampled after planning and at every tenth: start, peak and end, and bytes per pair.
   With --before REV, the same run on the `stereocodec` package of git revision REV (unpacked
   beside it), e.g. the revision before the listing streamed.
3. On paper: from the per-pair time measured in part 1, the pairs per minute and the time for a
   million pairs of N nodes of C cores, at Ray's measured efficiency.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/batch_engines.py [PAIRS_DIR] [--repeat 2] [--skip-throughput]
        [--listing 200000] [--before 90b14fd]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import ray

from stereocodec.batch import CodecSpec, Job, Outcome, Plan, Source, plan_batch, run_batch
from stereocodec.batch.local import execute as local_execute
from stereocodec.batch.ray_engine import execute as ray_execute

SPEC = CodecSpec(variant="bisic-fast")


def rss_mb() -> float:
    """Resident memory of this process now (not the peak), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def copies(pairs_dir: Path, repeat: int, root: Path) -> Path:
    """The pairs of `pairs_dir`, each `repeat` times under other names (same files, hard-linked when possible)."""
    for folder in sorted(p for p in pairs_dir.iterdir() if p.is_dir()):
        for i in range(repeat):
            target = root / f"{folder.name}_{i}"
            target.mkdir(parents=True)
            for f in folder.iterdir():
                try:
                    os.link(f, target / f.name)
                except OSError:
                    shutil.copy(f, target / f.name)
    return root


def throughput(pairs_dir: Path, repeat: int, tmp: Path) -> float:
    """Part 1; returns the per-pair seconds of one worker (the local engine, 1 worker)."""
    src = copies(pairs_dir, repeat, tmp / "in")
    n = len(plan_batch(src, tmp))
    print(f"\n## 1. Throughput: {n} full-size pairs ({repeat} copies of each pair of {pairs_dir}), default weights, quality 3")
    rows, outputs = [], []
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - start
    try:
        for label, engine, workers in (("local, 1 worker", "local", 1), ("local, 2 workers", "local", 2), ("ray, 2 actors", "ray", 2)):
            out = tmp / label.replace(", ", "-").replace(" ", "")
            seconds: list[float] = []
            start = time.perf_counter()
            result = run_batch(plan_batch(src, out), SPEC, workers=workers, engine=engine, progress_callback=lambda o: seconds.append(o.seconds))
            wall = time.perf_counter() - start
            assert result.count("done") == n, result.failures
            rows.append((label, wall, sum(seconds)))
            outputs.append(sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*.sbic")))
            print(f"{label:18} {wall:7.1f} s wall  {60 * n / wall:6.2f} pairs/min  "
                  f"work alone {60 * n * workers / sum(seconds):6.2f} pairs/min  ({sum(seconds) / n:.2f} s a pair in a worker)")
    finally:
        ray.shutdown()
    equal = all(o == outputs[0] for o in outputs)
    local2, ray2 = rows[1][1], rows[2][1]
    print(f"ray.init of a local cluster: {ray_start:.1f} s (not in the ray row: a cluster is started once)")
    print(f"Ray overhead: wall of ray, 2 actors / local, 2 workers = {ray2 / local2:.3f}; "
          f"with its start: {(ray2 + ray_start) / local2:.3f}; outputs byte-equal across the three: {equal}")
    return rows[0][2] / n, local2 / ray2


class NoWork:
    """A runner that codes nothing: every pair 'done' at once, so that only the driver is measured."""

    spec = CodecSpec(device="cpu")

    def __call__(self, job: Job) -> Outcome:
        return Outcome(job.name, "done", image_bytes=2_000_000, sbic_bytes=50_000, bpp=0.2)


class Synthetic(Sequence):
    """`n` sources made on demand: a listing that costs nothing to hold, as a streaming one would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Source:  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)
        name = f"rig{i // 1000:04d}/pair{i % 1000:03d}"
        return Source(name, "pair", (Path(f"/data/{name}/left.png"), Path(f"/data/{name}/right.png")))


def stream(label: str, n: int, execute, workers: int) -> float:
    """One synthetic run: RSS before, at each tenth of the pairs, and after."""
    from stereocodec.batch import BatchResult

    samples, result = [rss_mb()], BatchResult()
    every = max(n // 10, 1)

    def record(outcome: Outcome) -> None:
        result.add(outcome)
        if result.pairs % every == 0:
            samples.append(rss_mb())

    start = time.perf_counter()
    execute(Plan(Synthetic(n), Path("/out"), n), NoWork(), workers, record)
    wall = time.perf_counter() - start
    assert result.pairs == n and result.count("done") == n
    print(f"{label:32} {n:>9,} pairs in {wall:6.1f} s; driver RSS MB: start {samples[0]:.1f}, "
          f"max {max(samples):.1f}, end {samples[-1]:.1f} (growth {samples[-1] - samples[1 if len(samples) > 1 else 0]:+.1f} after the first tenth)")
    return n / wall


def listing_tree(root: Path, n: int) -> None:
    """`n` pairs of empty files: folders of 100 `<id>_left.png` + `<id>_right.png`, one in ten folders
    a sequence of `left/` and `right/` folders instead."""
    for start in range(0, n, 100):
        folder = root / f"rig{start // 100_000:02d}" / f"take{start // 100 % 1000:03d}"
        folder.mkdir(parents=True)
        for i in range(start, min(start + 100, n)):
            names = (f"left/{i:07d}.png", f"right/{i:07d}.png") if start // 100 % 10 == 9 else (f"{i:07d}_left.png", f"{i:07d}_right.png")
            for name in names:
                (folder / name).parent.mkdir(exist_ok=True)
                (folder / name).touch()


# argv: PACKAGE_DIR (empty: the installed one) SCRIPT ARGS...: the editable install's finder would win over sys.path
RUN_WITH_PACKAGE = """import runpy, sys
package, script = sys.argv[1:3]
if package:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", "")) or not f.find_spec("stereocodec", None)]
    sys.path.insert(0, package)
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def old_package(revision: str, tmp: Path) -> Path:
    """The stereocodec package of git `revision`, unpacked under `tmp` (for PYTHONPATH)."""
    target = tmp / f"rev-{revision}"
    target.mkdir()
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", revision, "stereocodec"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def listing_run(root: Path) -> None:
    """In a fresh process: plan the tree and stream it through the local engine, with no work per pair;
    one line of RSS figures. Uses only `plan_batch` and the local engine, so that it runs on older revisions too."""
    start = rss_mb()
    t0 = time.perf_counter()
    plan = plan_batch(root, Path("/nonexistent-out"))
    n, planned = len(plan), rss_mb()
    samples, seen = [planned], [0]

    def record(outcome: Outcome) -> None:
        seen[0] += 1
        if seen[0] % max(n // 10, 1) == 0:
            samples.append(rss_mb())

    local_execute(plan, NoWork(), 1, record)
    wall, end = time.perf_counter() - t0, rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux
    assert seen[0] == n
    import stereocodec

    print(f"[{Path(stereocodec.__file__).parents[1]}] {n:,} pairs in {wall:5.1f} s; RSS MB: start {start:.1f}, planned {planned:.1f}, max sampled {max(samples):.1f}, "
          f"end {end:.1f}, peak {peak:.1f}; {(end - start) * 1e6 / n:.0f} B a pair at the end, {(peak - start) * 1e6 / n:.0f} at the peak")


def memory(synthetic: int, remote: int, listing: int, tmp: Path, befores: Sequence[str] = ()) -> float:
    """Part 2; returns the pairs a second the Ray driver hands out and collects (2 actors, no work)."""
    print(f"\n## 2. Driver memory (trivial per-pair work; RSS sampled every tenth of the pairs)")
    stream("local engine, in this process", synthetic, local_execute, 1)
    stream("local engine, 2 processes", remote, local_execute, 2)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        hand_out = stream("ray engine, 2 actors", remote, ray_execute, 2)
    finally:
        ray.shutdown()
    listing_tree(tmp / "listing", listing)
    for label, package in (("listing of this tree", None), *((f"listing of revision {rev}", old_package(rev, tmp)) for rev in befores)):
        proc = subprocess.run([sys.executable, "-c", RUN_WITH_PACKAGE, str(package or ""), __file__, "--listing-run", str(tmp / "listing")],
                              capture_output=True, text=True, check=True)
        print(f"{label:32} {proc.stdout.strip()}")
    shutil.rmtree(tmp / "listing")
    return hand_out


def on_paper(per_pair: float, efficiency: float, hand_out: float) -> None:
    efficiency = min(efficiency, 1.0)  # Ray faster than the local pool is noise, not a gain to multiply
    print(f"\n## 3. On paper: {per_pair:.2f} s a pair in one worker (one core), Ray efficiency {efficiency:.2f} "
          "(local wall / Ray wall, 2 workers, at most 1)")
    for nodes, cores in ((1, 2), (1, 16), (10, 16), (100, 16)):
        rate = nodes * cores * 60 / per_pair * efficiency
        print(f"{nodes:>4} node(s) x {cores:>2} cores: {rate:9.0f} pairs/min; a million pairs in {1e6 / rate / 60:8.1f} h")
    print(f"(assumes one actor per core and shared storage fast enough; the driver handed out {hand_out:.0f} trivial "
          f"pairs a second to 2 actors in part 2, i.e. {60 * hand_out:.0f} a minute, against the rates above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pairs", nargs="?", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "stereo")
    parser.add_argument("--repeat", type=int, default=2, help="copies of each pair in part 1")
    parser.add_argument("--synthetic", type=int, default=1_000_000, help="pairs streamed through the in-process engine in part 2")
    parser.add_argument("--synthetic-remote", type=int, default=20_000, help="pairs streamed through the local pool and Ray in part 2")
    parser.add_argument("--listing", type=int, default=200_000, help="pairs of empty files on disk for the listing's memory in part 2")
    parser.add_argument("--before", action="append", default=[], metavar="REV", help="also measure the listing of git revision REV")
    parser.add_argument("--listing-run", type=Path, default=None, help=argparse.SUPPRESS)  # the fresh process of one listing
    parser.add_argument("--skip-throughput", action="store_true", help="part 2 only (part 3 then needs --per-pair)")
    parser.add_argument("--per-pair", type=float, default=None, help="seconds a pair, for part 3 without part 1")
    args = parser.parse_args()
    if args.listing_run is not None:
        return listing_run(args.listing_run)
    with tempfile.TemporaryDirectory() as tmp:  # memory first, in a process that has coded nothing yet
        hand_out = memory(args.synthetic, args.synthetic_remote, args.listing, Path(tmp), args.before)
        per_pair, efficiency = (args.per_pair, 1.0) if args.skip_throughput else throughput(args.pairs, args.repeat, Path(tmp))
    if per_pair:
        on_paper(per_pair, efficiency, hand_out)


if __name__ == "__main__":
    main()
