"""Shared fixtures: the read-only ../shared folder and helpers to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stereocodec.store import archive_root

# Small per-step tensor work is fastest single-threaded, and a 2-core CI machine runs the
# CLI subprocesses beside this process: keep the test process itself on one thread.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def need_shared(*parts: str) -> Path:
    """Path inside ../shared; skip in a user's clone, fail in CI where it must exist."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"../shared/{'/'.join(parts)} not present (a user's clone without the shared reference data)"
        if os.environ.get("CI"):
            pytest.fail(msg + " but CI is set")
        pytest.skip(msg)
    return path


def need_archive() -> None:
    """Skip a test that needs archived weights where the weights archive is not installed; fail in
    CI, whose install (.ci/run) includes it."""
    if archive_root() is None:
        msg = "the weights archive is not installed (pip install --no-build-isolation -e ./archive)"
        if os.environ.get("CI"):
            pytest.fail(msg + " but CI is set")
        pytest.skip(msg)


def run_cli(*args: str | Path, check: bool | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `stereo-codec` as a real subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "stereocodec", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    if check is True:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_clean_error(proc: subprocess.CompletedProcess) -> None:
    """A refused input: non-zero exit, one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
