"""What a user sees of Ray's worker logs: Ray's own noise dropped, every other line kept.

Each case is a fresh driver process (Ray reads its log filter once, when it is imported) that
starts a local Ray through ``pipelines._ray`` as the CLI does, and a task that prints the noise
Ray's actors print (copied from a real `genre-batch demo` log) between lines of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipelines import RAY_LOG_FILTER
from tests.servers import stop_ray_under

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

NOISE_LINES = (
    "Failed to query Ray Train Controller actor state. State API may be temporarily unavailable. "
    "Continuing to monitor.",
    "[2026-12-02 09:43:19,122 E 2428 2458] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' "
    "and ID: '3be344e3a34a732261d1076501000000' has constructor arguments in the object store and "
    "max_restarts > 0. If the arguments in the object store go out of scope or are lost, the actor "
    "restart will fail. See https://github.com/ray-project/ray/issues/53727 for more details.",
    "/venv/lib/python3.11/site-packages/ray/data/_internal/execution/interfaces/execution_options.py:436: "
    "RayDeprecationWarning: `ExecutionOptions.exclude_resources` is deprecated and will be removed after "
    "January 2027. Use `ExecutionOptions.label_selector` to constrain Ray Data work to labeled nodes.",
    "  self.exclude_resources = exclude_resources",
    "Progress bars disabled. To enable, set `ray.data.DataContext.get_current().enable_progress_bars = True`.",
    "Reporting training result 1: TrainingReport(checkpoint=Checkpoint(filesystem=local, path=/tmp/demo2/models/"
    "cnn-20261202T131533Z-660729/ray/checkpoint_2026-12-02_13-16-04.066523), metrics={'epoch': 1, "
    "'train_loss': 1.4030030105617373, 'valid_accuracy': 0.18235294117647058}, validation=False) from rank 0",
    "✔️  Dataset train_0357iiBmyHpVeHBXA0cvsX_0 execution finished in 0.00 seconds",
    "✔️  Dataset valid_0357iiIH8CjgWZl0kn2NRe_11 execution finished in 0.00 seconds",
)
KEPT_LINES = (
    "epoch 1/12: loss 1.421 acc 0.516 | valid loss 2.692 acc 0.214 | 83 tiles/s",
    "decode failed for song.mp3: Failed to query the file's header",
    "worker says: self.exclude_resources = exclude_resources was not the whole line",
    "✔️  Dataset dataset_0357iSTxY9bwtomJynF1Hf_0 execution finished in 4.68 seconds",
)
# What the task prints, in order: Ray's noise between lines of its own.
PRINTED_LINES = (*KEPT_LINES[:1], *NOISE_LINES, *KEPT_LINES[1:])

DRIVER = """
import sys, time
from pipelines._ray import ensure_ray
import ray

ensure_ray(num_cpus=1)

@ray.remote(num_cpus=1)
def speak(lines):
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    return len(lines)

lines = {lines!r}
ray.get(speak.remote(lines))
assert ray.data.range(3).take_all()  # stdout is a pipe: no progress bars, and no hint about them
time.sleep(3)  # the log monitor forwards worker output about once a second
ray.shutdown()
print("driver done", flush=True)
"""


def start_driver(skip_regex: str | None, scratch: str) -> subprocess.Popen:
    """A driver process; ``skip_regex`` None: the variable unset, as on a user's machine."""
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_DEDUP_LOGS_SKIP_REGEX", "RAY_ADDRESS")}
    # Its own HOME (Ray's auth token) and temp root (sessions, sockets) under ``scratch`` (short:
    # Ray's socket paths have a limit): two run side by side.
    env["HOME"] = tempfile.mkdtemp(prefix="home-", dir=scratch)
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-", dir=scratch)
    if skip_regex is not None:
        env["RAY_DEDUP_LOGS_SKIP_REGEX"] = skip_regex
    return subprocess.Popen([sys.executable, "-c", DRIVER.format(lines=list(PRINTED_LINES))], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    """Both drivers at once (one CPU each): the default filter, and the filter turned off."""
    scratch = tempfile.mkdtemp(prefix="gb-logs-", dir="/tmp")
    try:
        drivers = {"default": start_driver(None, scratch), "off": start_driver("", scratch)}
        printed = {name: driver.communicate(timeout=180)[0] for name, driver in drivers.items()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for name, driver in drivers.items():
        assert driver.returncode == 0 and "driver done" in printed[name], printed[name]
    return printed


def worker_lines(output: str) -> list[str]:
    """What the task printed, as the driver shows it, less the ``(speak pid=...)`` prefix."""
    prefix = re.compile(r"^(?:\x1b\[\d+m)?\(speak pid=\d+\)(?:\x1b\[0m)? ")
    return [prefix.sub("", line) for line in output.splitlines() if prefix.match(line)]


def test_the_patterns_are_what_the_driver_is_given():
    env = {key: value for key, value in os.environ.items() if key != "RAY_DEDUP_LOGS_SKIP_REGEX"}
    script = "import pipelines, ray._private.ray_constants as c; print(c.RAY_DEDUP_LOGS_SKIP_REGEX)"
    printed = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout.strip()
    assert printed == RAY_LOG_FILTER


def test_ray_noise_is_dropped_and_every_other_line_kept(outputs):
    assert worker_lines(outputs["default"]) == list(KEPT_LINES), outputs["default"]


def test_no_advice_to_turn_on_the_progress_bars_we_turned_off(outputs):
    assert "driver done" in outputs["default"]
    assert "Progress bars disabled" not in outputs["default"], outputs["default"]


def test_an_empty_filter_shows_every_line(outputs):
    assert worker_lines(outputs["off"]) == list(PRINTED_LINES), outputs["off"]


# ------------------------------------------------------------------ Ray Train beside another Ray
TRAIN_DRIVER = """
import contextlib, time
from pipelines._ray import ensure_ray, train_controller_knows_its_ray
ensure_ray(num_cpus=1)
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
def loop(config):
    time.sleep(2.5)  # the cleaner asks the State API about its controller every second
trainer = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=1),
                       run_config=RunConfig(name="beside", storage_path={storage!r}))
with (train_controller_knows_its_ray() if {fixed} else contextlib.nullcontext()):
    trainer.fit()
import ray
print("actor classes:", sorted({{actor["ActorClassName"] for actor in ray._private.state.actors().values()}}))
print("driver done")
"""


def test_training_beside_another_ray_prints_no_cleaner_traceback(tmp_path):
    """With a second Ray on the host, Ray Train's PlacementGroupCleaner found "multiple active
    Ray instances" and printed a 30-line traceback; given its own Ray's address it does not. The
    unfixed driver runs beside it, so the test proves the second Ray does trigger it."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "disabled"}
    other = tempfile.mkdtemp(prefix="gb-other-", dir="/tmp")
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}", "--num-cpus=0",
                    "--include-dashboard=false", f"--temp-dir={other}"], env=env, check=True, capture_output=True,
                   timeout=120)
    try:
        drivers = {fixed: subprocess.Popen(
            [sys.executable, "-c", TRAIN_DRIVER.format(storage=str(tmp_path / f"runs-{fixed}"), fixed=fixed)],
            env={**env, "HOME": str(tmp_path / f"home-{fixed}")}, cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True) for fixed in (True, False)}
        printed = {fixed: driver.communicate(timeout=300)[0] for fixed, driver in drivers.items()}
    finally:
        stop_ray_under(other)
        shutil.rmtree(other, ignore_errors=True)
    assert "driver done" in printed[True] and "driver done" in printed[False], printed
    assert "Found multiple active Ray instances" in printed[False], "the second Ray did not trigger it"
    assert "Found multiple active Ray instances" not in printed[True], printed[True]
    assert "Traceback" not in without_transient_resource_request_warning(printed[True]), printed[True]
    # A local Ray (ensure_ray) runs no preemption watcher: one machine has no node to drain.
    classes = re.search(r"actor classes: (.*)", printed[True])
    assert classes and "TrainController" in classes.group(1) and "PreemptionWatcher" not in classes.group(1), printed[True]


def without_transient_resource_request_warning(printed: str) -> str:
    """The output without Ray Train's warning that its controller's first resource request timed
    out (5 s) and its traceback: Ray calls it "safe to ignore" when the CPU is overloaded, as it
    is when other test files' Rays run beside these three (pytest-xdist)."""
    return re.sub(r"[^\n]*Failed to send resource request.*?GetTimeoutError[^\n]*\n", "", printed, flags=re.S)
