"""Shared fixtures: a real S3 server per session (started only for the modules that use it),
a private local Ray (2 CPUs) per module."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

import pytest

# One thread per numeric library in the test processes and in everything they start. Two
# pytest-xdist workers share 2 cores with the Ray workers and servers they start; a driver that
# also ran torch's and OpenBLAS's 2-thread pools beside them oversubscribed the cores (a
# parallel region waits for its slowest thread): 112-130 s against 99-103 s on the chain and
# model tests. Set before numpy or torch is imported here, so their pools start at 1; a value
# given by hand is kept.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")


@contextmanager
def environ_set(values: dict[str, str]) -> Iterator[None]:
    """Set these environment variables, and put back what was there (or nothing) afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server on 127.0.0.1 for the whole session.

    Its endpoint and test credentials go into the environment the standard way
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), before any Ray starts, so Ray workers
    inherit them exactly as they would on a cluster node.
    """
    from tests.servers import start_s3_server

    server = start_s3_server(str(tmp_path_factory.mktemp("s3") / "moto.log"))
    with environ_set(server.env):
        yield server
    server.stop()


@contextmanager
def local_ray() -> Iterator[object]:
    """A private local Ray with 2 CPUs, in this process's environment.

    Token auth off, knowingly: a throwaway Ray on loopback. With Ray 2.60's default (token
    on), the first ``ray.init`` sets RAY_AUTH_MODE=token in this process and caches the token
    of that HOME in C++, so a later module's Ray under a new HOME finds no token and its GCS
    aborts. The CLI tests that run in subprocesses keep Ray's default. A temporary HOME keeps
    tests away from the developer's ~/.ray, a short temp dir keeps socket paths under the limit.
    """
    import ray

    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genre-batch-numba-cache"))
    from pipelines._ray import LOCAL_RAY_TRAIN_ENV, quiet_ray_data

    home, temp_dir = tempfile.mkdtemp(prefix="gb-home-"), tempfile.mkdtemp(prefix="gb-ray-", dir="/tmp")
    # The workers inherit this environment, as a user's local Ray does (ensure_ray): a
    # runtime_env instead would make Ray discard the workers it pre-starts and start others.
    with environ_set({"HOME": home, "RAY_AUTH_MODE": "disabled", **LOCAL_RAY_TRAIN_ENV}):
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="ERROR")
        quiet_ray_data()
        try:
            yield ray
        finally:
            ray.shutdown()
            for path in (home, temp_dir):  # a run of the suite leaves nothing in /tmp
                shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_local():
    """A private local Ray per test module (modules that start their own cluster must not see
    a second Ray instance). No S3 server: a module whose Ray workers talk to S3 takes
    ``ray_local_s3``."""
    with local_ray() as ray:
        yield ray


@pytest.fixture(scope="module")
def ray_local_s3(s3_server):
    """``ray_local`` started inside the S3 server's environment, so that its workers inherit
    the endpoint and credentials exactly as they would on a cluster node."""
    with local_ray() as ray:
        yield ray


@pytest.fixture(scope="module")
def one_torch_thread():
    """Several intra-op threads on a busy 2-core machine spin-wait each other: 100x slower steps."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# The longest files (from minutes down to ~15 s each under two pytest-xdist workers, measured
# with --durations), longest first: started first, they run beside the many short files instead
# of leaving one worker alone at the end.
LONGEST_FIRST = ("test_nightly.py", "test_cluster.py", "test_pretrain_job.py", "test_chain.py", "test_serve.py",
                 "test_ray_logs.py", "test_compare.py", "test_s3.py", "test_store_failures.py", "test_train_data.py",
                 "test_oom.py", "test_tagging.py", "test_killed_driver.py", "test_synth.py", "test_cluster_files.py",
                 "test_s3_faults.py", "test_bad_inputs.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: in-file order kept
