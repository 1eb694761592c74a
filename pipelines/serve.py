"""Serve job: the web page and the HTTP API on Ray Serve, over the published index of a root.

1. Parse; check that the root has a published index and that the port is free (one line each).
2. Ray Serve: ``--replicas`` replicas of one FastAPI deployment (``genre_batch.web.app``) on the
   same Ray the batch jobs use; each follows ``index/LATEST`` (``genre_batch.web.follower``):
   a newly published index is loaded beside the old one and swapped in, requests in flight
   finish on the version they started on.
3. Serve until Ctrl-C or SIGTERM, then shut Serve down.

    python -m pipelines.serve --root URI [--host 127.0.0.1] [--port 8000] [--replicas N] [--max-upload-mb 50]

On a cluster run by a config file (``serve run``, KubeRay's RayService; cluster/kuberay/
rayservice.yaml) the application is ``pipelines.serve:build_app`` with the same settings as
arguments (``root``, ``replicas``, ``max_upload_mb``, ``poll_s``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

from genre_batch.artifacts import published_index
from genre_batch.entry import positive_int
from genre_batch.errors import ConfigError, GenreBatchError
from genre_batch.web.follower import POLL_S

logger = logging.getLogger(__name__)

APP_NAME = "genre-batch"


@dataclass(frozen=True)
class ServeConfig:
    root: str
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_upload_mb: float = 50.0
    poll_s: float = POLL_S  # how often each replica reads index/LATEST

    def __post_init__(self) -> None:
        if not 0 < self.max_upload_mb <= 4096:
            raise ConfigError(f"--max-upload-mb must be within (0, 4096], got {self.max_upload_mb:g}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be within 1-65535, got {self.port}")


@dataclass(frozen=True)
class ServeReport:
    url: str
    replicas: int
    index_version: str
    served_s: float

    def summary(self) -> str:
        replicas = f"{self.replicas} replica{'s' if self.replicas > 1 else ''}"
        return f"served {self.url} ({replicas}, index {self.index_version} at start) for {self.served_s:.0f} s; stopped"


@serve.deployment(name=APP_NAME, max_ongoing_requests=16, health_check_period_s=5)
@serve.ingress()
class CatalogueServer:
    """One replica: an index follower and the FastAPI app over it."""

    def __init__(self, root: str, max_upload_mb: float, poll_s: float) -> None:
        from genre_batch.entry import configure_logging
        from genre_batch.web.follower import IndexFollower

        configure_logging(False)
        self.max_upload_mb = max_upload_mb
        self.follower = IndexFollower(root, poll_s=poll_s).start()

    def __serve_build_asgi_app__(self) -> Any:
        from genre_batch.web.app import create_app

        return create_app(self.follower, self.max_upload_mb)

    def check_health(self) -> None:
        self.follower.current()  # unhealthy (restarted by Serve) while no index has loaded

    def __del__(self) -> None:
        self.follower.stop()


def replica_cpus(replicas: int) -> float:
    """CPUs reserved per replica: one, or a share when the cluster has fewer than ``replicas``
    (a replica that reserved a whole CPU of 2 would leave batch jobs none)."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    return round(min(1.0, cpus / (replicas + 1)), 3)


def build_app(args: dict[str, Any]) -> Any:
    """The application for ``serve run`` / a RayService config: ``{"root": URI, "replicas": N,
    "max_upload_mb": X, "poll_s": S}``."""
    config = ServeConfig(root=str(args["root"]), replicas=int(args.get("replicas", 1)),
                         max_upload_mb=float(args.get("max_upload_mb", 50.0)),
                         poll_s=float(args.get("poll_s", POLL_S)))
    return application(config, cpus=float(args["replica_cpus"]) if "replica_cpus" in args else 1.0)


def application(config: ServeConfig, cpus: float) -> Any:
    return CatalogueServer.options(  # type: ignore[attr-defined]  # serve.deployment made it a Deployment
        num_replicas=config.replicas, ray_actor_options={"num_cpus": cpus},
    ).bind(config.root, config.max_upload_mb, config.poll_s)


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise GenreBatchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def run_serve(config: ServeConfig, address: str | None = None, stop: threading.Event | None = None) -> ServeReport:
    """Serve until ``stop`` is set (Ctrl-C or SIGTERM set it)."""
    from pipelines._ray import ensure_ray

    version = published_index(config.root).version  # no index: one line now, not a replica that never starts
    check_port_free(config.host, config.port)
    ensure_ray(address)
    stop = stop or _stop_on_signals()
    serve.start(http_options={"host": config.host, "port": config.port},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    serve.run(application(config, replica_cpus(config.replicas)), name=APP_NAME, route_prefix="/",
              logging_config={"log_level": "WARNING", "enable_access_log": False})
    url = f"http://{config.host}:{config.port}/"
    logger.info("serving index %s on %s with %d replicas (Ctrl-C stops)", version, url, config.replicas)
    print(f"serving {url} (index {version}, {config.replicas} replica{'s' if config.replicas > 1 else ''}); "
          "Ctrl-C stops", flush=True)
    started = time.monotonic()
    try:
        stop.wait()
    finally:
        serve.shutdown()
    return ServeReport(url, config.replicas, version, time.monotonic() - started)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServeConfig(root="")
    parser.add_argument("--root", required=True, help="storage root with a published index")
    parser.add_argument("--host", default=defaults.host,
                        help="address to listen on (0.0.0.0: every interface; only on a network you trust)")
    parser.add_argument("--port", type=positive_int, default=defaults.port, help="HTTP port")
    parser.add_argument("--replicas", type=positive_int, default=defaults.replicas,
                        help="Ray Serve replicas (each loads the index and the model)")
    parser.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb,
                        help="largest audio upload accepted; larger ones get 413")
    parser.add_argument("--poll", type=float, default=defaults.poll_s, dest="poll_s",
                        help="seconds between reads of index/LATEST (a new index is picked up without a restart)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> ServeReport:
    if args.poll_s <= 0:
        raise ConfigError(f"--poll must be over 0 seconds, got {args.poll_s:g}")
    config = ServeConfig(root=args.root, host=args.host, port=args.port, replicas=args.replicas,
                         max_upload_mb=args.max_upload_mb, poll_s=args.poll_s)
    return run_serve(config, address=args.address)


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("serve", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
