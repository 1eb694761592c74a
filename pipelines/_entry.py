"""The command-line entry point every job module shares (`python -m pipelines.<job>`)."""

from __future__ import annotations

import argparse
from typing import Any, Callable


def job_main(
    name: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    from_args: Callable[[argparse.Namespace], Any],
    argv: list[str] | None = None,
) -> int:
    """Parse the job's flags, run it, print its one-line summary; exit 0 only on success."""
    from genre_batch.cli import run_entry_point

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
                        help=f"{what} on GPUs (default: on GPUs when the cluster has any)")
    device.add_argument("--cpu", dest="use_gpu", action="store_const", const=False, help=f"{what} on CPUs only")

