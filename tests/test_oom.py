"""A task that Ray's memory monitor kills is retried a bounded number of times, then its files
are tried one by one, and a file whose task dies again is an error row (stage ``worker``, Ray's
reason); the job ends instead of retrying without end.

The fault is real: the ingest runs as a user runs it, in a process of its own whose private Ray
starts with a memory threshold below what the machine already uses, so the monitor kills every
task it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from genre_batch.commands import write_demo_catalogue

pytestmark = pytest.mark.slow


def test_tasks_killed_for_memory_end_as_error_rows_not_endless_retries(tmp_path):
    catalogue, root = tmp_path / "music", tmp_path / "root"
    write_demo_catalogue(catalogue, n_songs=3, seed=1, min_duration_s=6.0, max_duration_s=7.0)
    env = {**os.environ, "RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "100",
           "RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path / "home")}
    for key in ("RAY_ADDRESS", "RAY_task_oom_retries"):
        env.pop(key, None)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "genre_batch.cli", "ingest", "--catalogue", str(catalogue), "--root", str(root),
         "--files-per-task", "2"],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "none of the" in lines[0] and "nothing published" in lines[0], done.stderr[-3000:]
    assert "infinite oom retries" not in done.stderr
    errors = pd.read_parquet(next(root.glob("ingest/*/errors.parquet")))
    files = sorted(p.relative_to(catalogue).as_posix() for p in catalogue.rglob("*.mp3"))
    assert sorted(errors["relative_path"]) == files  # every file accounted for
    assert (errors["stage"] == "worker").all() and errors["message"].str.contains("died 3 times").all()
    assert errors["message"].str.contains("memory").all(), errors["message"].tolist()
    assert not (root / "ingest" / "LATEST").exists()
    assert seconds < 400
