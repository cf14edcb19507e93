"""`batch --engine ray` on a real local Ray cluster: the local engine's bytes, a killed worker's pair
retried, reruns that skip, the CLI joining a cluster through RAY_ADDRESS.

One cluster (2 CPUs) for the module, started here; the pairs are 96x64 crops of the shared pairs,
coded with the shipped default weights.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from conftest import need_shared, run_cli
from test_batch import outputs, summary, write_pair
from stereocodec import decode
from stereocodec.batch import CodecSpec, Job, plan_batch, run_batch

try:
    import ray
except ImportError:  # the optional extra is not installed
    if os.environ.get("CI"):
        pytest.fail('ray is not installed but CI is set (.ci/run installs the extra: pip install -e ".[test,ray]")', pytrace=False)
    pytest.skip('ray is not installed (pip install -e ".[ray]")', allow_module_level=True)

H, W = 64, 96
SPEC = CodecSpec(variant="bisic-fast")  # the shipped default weights, one load per actor
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster of 2 CPUs for this module; its address, for a CLI to join."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Two 96x64 crops of each shared pair, at different places: six pairs in a tree."""
    stereo = need_shared("data", "stereo")
    root = tmp_path_factory.mktemp("crops")
    for folder in sorted(p for p in stereo.iterdir() if p.is_dir()):
        views = [Image.open(next(folder.glob(f"{side}.*"))).convert("RGB") for side in ("left", "right")]
        for i, (x, y) in enumerate(((0, 0), (views[0].width // 2, views[0].height // 2))):
            (root / folder.name / f"crop{i}").mkdir(parents=True)
            for side, view in zip(("left", "right"), views):
                view.crop((x, y, x + W, y + H)).save(root / folder.name / f"crop{i}" / f"{side}.png")
    return root


@pytest.fixture(scope="module")
def local(pairs: Path, tmp_path_factory) -> Path:
    """The local engine's outputs for the same pairs and options: what Ray must write."""
    out = tmp_path_factory.mktemp("local")
    result = run_batch(plan_batch(pairs, out), SPEC)
    assert result.count("done") == 6, result.failures
    return out


def same_bytes(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and len(files) == 6
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_ray_writes_the_local_bytes_with_backpressure_and_a_rerun_skips_all(cluster, pairs: Path, local: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    taken, ahead = [], []  # jobs the engine took from the listing; how far ahead of the outcomes it was

    def listing() -> Iterator[Job]:  # a generator: the engine sees no length and must not drain it
        for job in plan_batch(pairs, out):
            taken.append(job.name)
            yield job

    done: list[str] = []
    result = run_batch(listing(), SPEC, workers=2, engine="ray",
                       progress_callback=lambda o: (done.append(o.name), ahead.append(len(taken) - len(done))))
    assert (result.count("done"), result.count("failed")) == (6, 0), result.failures
    assert sorted(done) == sorted(taken) and max(ahead) <= 2 - 1  # at most one job per actor in hand
    same_bytes(local, out)
    before = outputs(out)
    again = run_batch(plan_batch(pairs, out), SPEC, workers=2, engine="ray")
    assert (again.count("skipped"), again.count("done")) == (6, 0)
    assert outputs(out) == before
    redone = run_batch(plan_batch(pairs, out), SPEC, quality=1, workers=2, engine="ray")  # the settings check
    assert redone.count("done") == 6 and all(decode(p)[0].shape == (H, W, 3) for p in out.rglob("*.sbic"))


def busy_workers() -> list[int]:
    """Process ids of the Ray actors of the batch that are running a job now (Ray titles them so)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::BatchWorker.run"):
                found.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            pass
    return found


def test_a_worker_killed_in_the_middle_of_a_job_is_replaced_and_its_pair_redone(cluster, pairs: Path, local: Path, tmp_path: Path) -> None:
    out, first, killed = tmp_path / "ray", threading.Event(), []

    def kill_a_busy_worker() -> None:  # as the out-of-memory killer would, while the job runs
        first.wait(120)
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            for pid in busy_workers()[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    result = run_batch(plan_batch(pairs, out), SPEC, workers=2, engine="ray", progress_callback=lambda _: first.set())
    killer.join()
    assert killed, "no busy worker was seen to kill"
    assert (result.count("done"), result.count("failed"), result.retried) == (6, 0, 1), result.failures
    same_bytes(local, out)  # every pair present, whole, and as the local engine writes it
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    for sbic in out.rglob("*.sbic"):
        assert decode(sbic)[0].shape == (H, W, 3)


def test_cli_joins_the_cluster_of_ray_address_and_reports_a_bad_pair(cluster: str, pairs: Path, local: Path, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    for pair in pairs.glob("*/*"):
        target = src / pair.relative_to(pairs)
        target.mkdir(parents=True)
        for f in pair.iterdir():
            (target / f.name).write_bytes(f.read_bytes())
    write_pair(src / "broken", 0, broken_right=True)
    args = ("batch", src, "-o", out, "--engine", "ray", "--workers", "2")
    proc = run_cli(*args, env={"RAY_ADDRESS": cluster, **ONE_THREAD})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    table = summary(proc.stdout)
    assert (table["pairs"], table["done"], table["failed"]) == ("7", "6", "1"), proc.stdout
    assert re.search(r"^failed: broken: .*right\.png", proc.stdout, re.M), proc.stdout
    same_bytes(local, out)
    again = run_cli(*args, env={"RAY_ADDRESS": cluster, **ONE_THREAD})
    assert summary(again.stdout)["skipped (valid output exists)"] == "6", again.stdout
    assert ray.cluster_resources().get("CPU") == 2  # the CLI left the cluster it joined running
