"""`genre-batch`: one command, a subcommand per job (the table: ``genre_batch.commands``).

With ``commands`` this is the CLI wing: the only part of ``genre_batch`` that imports the jobs
(``pipelines``). Ray is imported only by the jobs that need it.
"""

from __future__ import annotations

import argparse
import sys

from genre_batch.entry import run_entry_point


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
