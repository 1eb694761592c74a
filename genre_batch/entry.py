"""What every entry point shares: logging setup, argparse types, the runner that turns a known
failure into one line, and the frame of a job's ``python -m pipelines.<job>``.

A leaf: it imports nothing of this project, so the CLI (``genre_batch.cli``) and the jobs
(``pipelines.*``) both use it without importing each other.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Any, Callable

# Loggers of the libraries we drive; at INFO they print what users have nothing to do with.
NOISY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "filelock", "numba", "fsspec", "s3fs", "botocore")


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Ray's own loggers are noisy at INFO; its progress bars say what users need.
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count: songs, epochs, workers, neighbours...)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number within [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {text}")
    return value


# The last line of one of our errors in a remote traceback that Ray kept only as text (it
# pickles exceptions without their ``__cause__``: a Ray Data UDF's error arrives as
# UserCodeException with our error in its message).
_REMOTE_ERROR = re.compile(r"^genre_batch\.errors\.(\w+): (.+)$", re.MULTILINE)


class RemoteFailure(Exception):
    """One of our errors, raised in a Ray worker, known to the driver by its message only."""

    user_facing = True


def known_cause(exc: BaseException) -> BaseException | None:
    """The failure a user should read, also when Ray wrapped it (RayTaskError and friends
    keep the original exception as ``cause``, Ray Train as ``__cause__``).

    Errors raised on purpose say so with a true ``user_facing`` class attribute (every
    ``genre_batch.errors.GenreBatchError`` does); a missing file is one too. One of ours that
    Ray kept only as remote traceback text is found by its last line (``RemoteFailure``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    remote: RemoteFailure | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if remote is None and (found := _REMOTE_ERROR.findall(str(current))):
            remote = RemoteFailure(found[-1][1].strip())
        inner = getattr(current, "cause", None)
        if isinstance(inner, BaseException):
            # A Ray wrapper: it may also be an instance of the cause's class (RayTaskError(X)),
            # with the remote traceback as its message; the cause itself says it in one line.
            current = inner
            continue
        if getattr(current, "user_facing", False) is True or isinstance(current, FileNotFoundError):
            return current
        current = current.__cause__
    return remote


def run_entry_point(body: Callable[[], object], verbose: bool | None = None) -> int:
    """Run a command: exit 0 on success, 1 with a one-line message on a known failure."""
    if verbose is None:
        verbose = bool(os.environ.get("GENRE_BATCH_VERBOSE"))
    configure_logging(verbose)
    try:
        result = body()
    except Exception as exc:
        known = known_cause(exc)
        if known is None:
            raise
        print(f"error: {known}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) and not isinstance(result, bool) else 0


def job_main(
    name: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    from_args: Callable[[argparse.Namespace], Any],
    argv: list[str] | None = None,
) -> int:
    """``python -m pipelines.<name>``: parse the job's flags, run it, print its one-line summary;
    exit 0 only on success."""
    parser = argparse.ArgumentParser(
        prog=f"python -m pipelines.{name}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run_entry_point(lambda: print(from_args(parser.parse_args(argv)).summary()))


def add_device_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """``--gpu`` / ``--cpu`` for a job whose ``what`` runs on GPUs when the cluster has them
    (``args.use_gpu``: True, False, or None for "when there are any")."""
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", dest="use_gpu", action="store_const", const=True, default=None,
                        help=f"{what} on GPUs; fails at once on a local Ray without one "
                             "(default: on GPUs when the cluster has any)")
    device.add_argument("--cpu", dest="use_gpu", action="store_const", const=False,
                        help=f"{what} on CPUs only, even where there are GPUs")
