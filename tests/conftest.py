"""Shared fixtures: one local Ray (2 CPUs) per test session, isolated from the user's ~/.ray."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server on 127.0.0.1 for the whole session.

    Its endpoint and test credentials go into the environment the standard way
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), before any Ray starts, so Ray workers
    inherit them exactly as they would on a cluster node.
    """
    from tests.servers import start_s3_server

    server = start_s3_server(str(tmp_path_factory.mktemp("s3") / "moto.log"))
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def ray_local(s3_server):
    """A private local Ray with 2 CPUs per test module (modules that start their own
    cluster must not see a second Ray instance), with the S3 server's environment.

    Ray 2.60 writes an auth token under $HOME; a temporary HOME keeps tests from touching
    the developer's, and a short temp dir keeps Ray's socket paths under the OS limit.
    """
    import ray

    home = tempfile.mkdtemp(prefix="gb-home-")
    temp_dir = tempfile.mkdtemp(prefix="gb-ray-", dir="/tmp")
    previous_home = os.environ.get("HOME")
    os.environ["HOME"] = home
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genre-batch-numba-cache"))
    from pipelines._ray import quiet_ray_data

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="ERROR",
             runtime_env={"env_vars": {"NUMBA_CACHE_DIR": os.environ["NUMBA_CACHE_DIR"]}})
    quiet_ray_data()
    yield ray
    ray.shutdown()
    if previous_home is not None:
        os.environ["HOME"] = previous_home


@pytest.fixture(scope="module")
def one_torch_thread():
    """Several intra-op threads on a busy 2-core machine spin-wait each other: 100x slower steps."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
