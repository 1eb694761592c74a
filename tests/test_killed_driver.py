"""A driver killed mid-ingest (SIGKILL: no clean-up code runs) publishes nothing and leaves no
Ray process behind; the version it had begun is garbage that `gc` removes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from genre_batch.cli import main
from genre_batch.commands import write_demo_catalogue
from tests.servers import processes

pytestmark = pytest.mark.slow


def ray_processes_of(session_root: Path) -> list[str]:
    """Command lines of the live processes that belong to the Ray under ``session_root``."""
    mark = str(session_root).encode()
    return [cmdline[:160].decode(errors="replace") for _, cmdline in processes().values() if mark in cmdline]


def test_a_killed_driver_publishes_nothing_and_leaves_no_ray_behind(tmp_path):
    catalogue, root = tmp_path / "music", tmp_path / "root"
    write_demo_catalogue(catalogue, n_songs=12, seed=3, min_duration_s=20.0, max_duration_s=25.0)
    ray_tmp = Path(tempfile.mkdtemp(prefix="gbk-", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen(
        [sys.executable, "-m", "genre_batch.cli", "ingest", "--catalogue", str(catalogue), "--root", str(root),
         "--files-per-task", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(root.glob("ingest/*/tiles/*.parquet")):  # the job is under way: shards are landing
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "the ingest never started writing"
        time.sleep(0.2)
    assert ray_processes_of(ray_tmp), "the job's Ray should be up"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 60
    while ray_processes_of(ray_tmp) and time.monotonic() < deadline:
        time.sleep(1)
    assert ray_processes_of(ray_tmp) == []  # Ray went with its driver
    assert not (root / "ingest" / "LATEST").exists()
    left = list((root / "ingest").iterdir())
    assert len(left) == 1 and not (left[0] / "manifest.json").exists()  # half a version, unpublished
    assert main(["gc", "--root", str(root), "--grace", "0"]) == 0
    assert not left[0].exists()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_ray_that_cannot_start_is_one_line(tmp_path):
    """Ray's sockets live under TMPDIR; a path over the OS's limit stops Ray from starting."""
    catalogue = tmp_path / "music"
    write_demo_catalogue(catalogue, n_songs=2, seed=1, min_duration_s=6.0, max_duration_s=7.0)
    long_tmp = tmp_path / ("x" * 90)
    long_tmp.mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(long_tmp), "HOME": str(tmp_path / "home")}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "genre_batch.cli", "ingest", "--catalogue", str(catalogue),
                           "--root", str(tmp_path / "root")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "could not start a local Ray" in lines[0] and "107 bytes" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
