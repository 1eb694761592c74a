"""The benchmarks' demo catalogue: written once with ``genre_batch.commands.write_demo_catalogue``
(``genre_batch.synth.write_catalogue`` in a process pool) and reused by later runs (of either
benchmark) when it holds the same songs."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

MARKER = ".benchmark-catalogue.json"

logger = logging.getLogger("benchmarks.catalogue")


def parse_source_format(text: str) -> tuple[int, int] | None:
    """``44100x2`` -> (44100, 2); ``mixed`` -> None (the demo's mix of rates and channels)."""
    if text == "mixed":
        return None
    rate, _, channels = text.partition("x")
    return int(rate), int(channels)


def prepare_catalogue(directory: Path, songs: int, duration_s: float, seed: int, source_format: str) -> float:
    """Write (or reuse) the catalogue in ``directory``; returns the seconds spent writing it."""
    from genre_batch.catalogue import list_catalogue
    from genre_batch.commands import write_demo_catalogue

    directory.mkdir(parents=True, exist_ok=True)
    wanted = {"songs": songs, "duration_s": duration_s, "seed": seed, "broken_file": False,
              "source_format": source_format}
    marker = directory / MARKER
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        if len(list_catalogue(str(directory), "folder")) == songs:
            logger.info("reusing the catalogue in %s", directory)
            return 0.0
    logger.info("writing %d songs of %.0f s (%s) to %s", songs, duration_s, source_format, directory)
    marker.unlink(missing_ok=True)
    started = time.perf_counter()
    write_demo_catalogue(directory, songs, seed, min_duration_s=duration_s, max_duration_s=duration_s,
                         with_broken_file=False, source_format=parse_source_format(source_format))
    seconds = time.perf_counter() - started
    found = len(list_catalogue(str(directory), "folder"))
    if found != songs:
        raise SystemExit(f"{directory} holds {found} audio files, expected {songs}: use an empty directory")
    marker.write_text(json.dumps(wanted))
    return seconds
