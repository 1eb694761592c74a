"""`genre-batch`: one command, a subcommand per job. Ray is imported only by jobs that need it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable

from genre_batch.errors import GenreBatchError

logger = logging.getLogger("genre_batch")


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Ray's own loggers are noisy at INFO; its progress bars say what users need.
    for noisy in ("ray", "ray.data", "ray.train", "ray.tune", "filelock", "numba", "fsspec", "s3fs", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count: songs, epochs, workers, neighbours...)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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


def known_cause(exc: BaseException) -> BaseException | None:
    """The failure a user should read, also when Ray wrapped it (RayTaskError and friends
    keep the original exception as ``cause``, Ray Train as ``__cause__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (GenreBatchError, FileNotFoundError)):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the chosen command's arguments are added.

    The jobs' arguments live in ``pipelines.<job>``, whose imports (torch, matplotlib, Ray
    Train's config) cost ~2 s: an answer such as ``similar --song`` should not pay for them.
    """
    from genre_batch import commands

    parser = argparse.ArgumentParser(
        prog="genre-batch",
        description="Genre classification and similar-song search for music catalogues, on Ray.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, add_arguments, _) in commands.COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if argv is None or name == chosen:
            add_arguments(child)
    return parser


def main(argv: list[str] | None = None) -> int:
    from genre_batch import commands

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    _, _, run = commands.COMMANDS[args.command]
    return run_entry_point(lambda: run(args), verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
