"""Shared fixtures: one local Ray (2 CPUs) per test session, isolated from the user's ~/.ray."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray with 2 CPUs, shut down after the session.

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
