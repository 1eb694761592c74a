"""Connecting to Ray: a local instance by default, a cluster when RAY_ADDRESS (or --address) says so."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from genre_batch.errors import GenreBatchError

logger = logging.getLogger(__name__)

# Retries of a task that died (killed for memory, a lost node) before its work is given up.
OOM_RETRIES = 2
TASK_RETRIES = 2

# Ray Train's controller looks at its workers this often (Ray's default: every 2 s), so a
# finished run used to wait up to 2 s to be noticed, and the controller's shutdown adds more:
# 4.8 s of a 13.4 s two-epoch demo run went between the last epoch and fit() returning, 1.3 s
# at 0.5 s. Set for a local Ray here; cluster/runtime_env.yaml and the image set it on a cluster.
RAY_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
# A local Ray is one machine, whose node no autoscaler drains: Ray Train's preemption watcher
# (an actor process per run, watching for drained nodes) only costs there, ~2 of the ~17
# CPU-seconds that an empty training run costs on 2 cores. Clusters keep it.
LOCAL_RAY_TRAIN_ENV = {**RAY_TRAIN_ENV, "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}

# The address this process joined (--address or RAY_ADDRESS, set by ensure_ray); None: a
# private local Ray.
_joined_address: str | None = None


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process.

    Inside ``ray job submit`` the job driver already has RAY_ADDRESS set, so the same code
    joins the cluster there and starts a private local instance on a laptop.
    """
    global _joined_address
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        _joined_address = _joined_address or address
        return
    _joined_address = address
    # A task the memory monitor kills is retried this many times, then fails (Ray's default:
    # without end). Read by this driver's core worker, so it holds on a cluster too.
    os.environ.setdefault("RAY_task_oom_retries", str(OOM_RETRIES))
    # librosa compiles numba code on first use; a writable cache shared by the workers
    # means each worker process pays it once per machine, not once per process.
    env_vars = {"NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", "/tmp/genre-batch-numba-cache")}
    os.environ.setdefault("NUMBA_CACHE_DIR", env_vars["NUMBA_CACHE_DIR"])
    for key, value in (RAY_TRAIN_ENV if address else LOCAL_RAY_TRAIN_ENV).items():
        os.environ.setdefault(key, value)  # inherited by a local Ray's controller and workers
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        # On a cluster the job's runtime env (cluster/runtime_env.yaml) and the image set
        # the environment; Ray refuses to merge a driver runtime_env that sets the same
        # env var as the job's ("Failed to merge the Job's runtime env"), so pass none.
        check_reachable(address)
        with ray_start_errors(f"join the Ray cluster at {address}"):
            ray.init(address=address, **kwargs)
    else:
        # Local workers inherit this process's environment (NUMBA_CACHE_DIR included); a
        # runtime_env would make Ray discard its pre-started workers and start new ones.
        # Token authentication stays on (Ray's default); the notice that says so on every
        # start is dropped (_not_the_token_notice).
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_not_the_token_notice)
        with ray_start_errors("start a local Ray"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
    quiet_ray_data()
    resources = ray.cluster_resources()
    # Ray Data reads Parquet footers with a pool of actors, 32 by default whatever the cluster
    # (~200 MB each: on 2 cores the index's workers summed 7.8 GB for 250 shards,
    # benchmarks/scale.py); here one per CPU (the footers are small reads; their speed with fewer
    # actors is not measured yet).
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", str(max(2, min(32, int(resources.get("CPU", 2))))))
    logger.info(
        "Ray: %s CPUs, %s GPUs (%s)",
        int(resources.get("CPU", 0)),
        int(resources.get("GPU", 0)),
        address or "local",
    )


REACH_TIMEOUT_S = 5.0
REACH_ATTEMPTS = 3


def check_reachable(address: str) -> None:
    """A cluster address that nothing listens on is one line within ~15 s (``ray.init`` would
    keep reconnecting for minutes). ``auto`` / ``local`` and names without a port are Ray's to
    resolve."""
    import socket
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise GenreBatchError(f"--address {address!r}: not host:port, ray://host:port or http://host:port") from None
    if not host or port is None:
        return
    for attempt in range(REACH_ATTEMPTS):
        try:
            with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S):
                return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if attempt + 1 < REACH_ATTEMPTS:
                time.sleep(1.0)
    raise GenreBatchError(f"could not join the Ray cluster at {address}: nothing answers on {host}:{port} "
                          f"({reason}, {REACH_ATTEMPTS} tries of {REACH_TIMEOUT_S:g} s); is the head running "
                          "(`ray start --head`), and is the address right?")


@contextmanager
def ray_start_errors(what: str) -> Iterator[None]:
    """Ray that cannot start or be reached is one line (a socket path over the OS's limit under a
    long TMPDIR, no cluster at the address), not Ray's traceback."""
    try:
        yield
    except (OSError, ConnectionError, RuntimeError) as exc:
        message = " ".join(str(exc).split())
        raise GenreBatchError(f"could not {what}: {message[:500]}") from exc


def cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def object_store_bytes() -> float:
    return float(ray.cluster_resources().get("object_store_memory", 0.0))


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def use_gpus(asked: bool | None) -> bool:
    """``--gpu`` / ``--cpu`` as asked; neither (None): GPUs when the cluster has any.

    ``--gpu`` where there is no GPU: a cluster's autoscaler may add a GPU node for the
    pending workers, so there the job waits, and says so. A private local Ray never grows:
    a job waiting there for a GPU would wait forever without a word, so it fails now.
    """
    if asked is None:
        return cluster_gpus() > 0
    if asked and cluster_gpus() == 0:
        if _joined_address is None:
            raise GenreBatchError(
                "--gpu: the local Ray has no GPU (none found on this machine), so the job "
                "would wait for one forever; run without --gpu, or join a cluster with GPU nodes "
                "(--address or RAY_ADDRESS)"
            )
        logger.warning("--gpu: no GPU in the cluster yet; waiting for the autoscaler to add one")
    return asked


def _not_the_token_notice(record: logging.LogRecord) -> bool:
    # "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt
    # out.": printed on every start of the private local Ray, which keeps Ray's default.
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _not_the_progress_bar_hint(record: logging.LogRecord) -> bool:
    # Ray Data's answer to progress bars turned off: "Progress bars disabled. To enable, set ...",
    # advice against what quiet_ray_data chose on purpose.
    return not record.getMessage().startswith("Progress bars disabled.")


def quiet_ray_data() -> None:
    """Progress bars on a terminal; elsewhere (CI, job logs) no per-second progress lines."""
    from ray.data import DataContext

    logging.getLogger("ray.data._internal.progress").addFilter(_not_the_progress_bar_hint)
    context = DataContext.get_current()
    interactive = sys.stderr.isatty()
    context.enable_progress_bars = interactive
    context.enable_operator_progress_bars = interactive
    context.print_on_execution_start = False


@contextmanager
def one_stage_execution() -> Iterator[None]:
    """Ray Data without per-operator resource reservation, inside this block.

    Ray Data reserves a share of the cluster for each operator (``op_resource_reservation_ratio``)
    so that no stage of a multi-stage pipeline starves the next. A job whose work is one fused
    map stage (ingest: file records -> map_batches) gains nothing from it and loses throughput:
    measured on 2 CPUs, the ingest ran its tasks on 1.2 CPUs on average (200 songs: 6.9 s, warm
    workers) and on 1.8 without the reservation (4.4 s, as a process pool).
    """
    from ray.data import DataContext

    context = DataContext.get_current()
    previous = context.op_resource_reservation_enabled
    context.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        context.op_resource_reservation_enabled = previous


@contextmanager
def failed_blocks_allowed() -> Iterator[None]:
    """Ray Data goes on past blocks whose task failed for good (their rows are missing from
    the result; the caller finds and handles them), inside this block."""
    from ray.data import DataContext

    context = DataContext.get_current()
    previous = context.max_errored_blocks
    context.max_errored_blocks = -1
    try:
        yield
    finally:
        context.max_errored_blocks = previous


@contextmanager
def train_controller_knows_its_ray() -> Iterator[None]:
    """Ray Train with this Ray's own address in its controller's environment, inside this block.

    Ray Train's PlacementGroupCleaner (an actor the controller starts) asks the State API about
    the controller every second. A worker finds that API by ``RAY_ADDRESS``, else by looking for
    Ray processes on the host; with a second Ray there (another user's, a test's) the lookup
    fails with "Found multiple active Ray instances" and a 30-line traceback. Ray Train passes
    the controller a fixed list of variables (``ENV_VARS_TO_PROPAGATE``); ``RAY_ADDRESS`` joins it
    here, set to the address this driver is connected to, and both are restored afterwards.
    """
    from ray.train.v2._internal import constants

    names = constants.ENV_VARS_TO_PROPAGATE
    added = "RAY_ADDRESS" not in names
    previous = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = previous or ray.get_runtime_context().gcs_address
    names.add("RAY_ADDRESS")
    try:
        yield
    finally:
        if added:
            names.discard("RAY_ADDRESS")
        if previous is None:
            os.environ.pop("RAY_ADDRESS", None)
        else:
            os.environ["RAY_ADDRESS"] = previous

