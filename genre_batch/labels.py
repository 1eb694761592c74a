"""Where genre labels come from: folder names, a CSV, or the files' own tags."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from typing import IO, Callable

import mutagen

from genre_batch.errors import LabelError
from genre_batch.splits import SPLITS

logger = logging.getLogger(__name__)

LABEL_SOURCES = ("folder", "csv", "tags", "none")


def normalise_label(label: str | None) -> str | None:
    if label is None:
        return None
    label = " ".join(label.split()).strip().casefold()
    return label or None


@dataclass(frozen=True)
class LabelRow:
    genre: str | None
    artist: str | None = None
    split: str | None = None


def label_from_folder(relative_path: str) -> str | None:
    """``<genre>/<file>`` (the GTZAN layout): the immediate parent folder; root files have none."""
    parts = relative_path.split("/")
    return normalise_label(parts[-2]) if len(parts) >= 2 else None


def parse_labels_csv(text: str, source: str = "labels CSV") -> dict[str, LabelRow]:
    """Columns ``path,genre`` and optionally ``artist``, ``split``; path relative to the catalogue
    (``catalogue.keyed_by_relative_path`` also takes full paths under it)."""
    reader = csv.DictReader(io.StringIO(text))
    # Headers as spreadsheets write them ("Path", " Genre") name the same columns.
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
    columns = set(reader.fieldnames)
    missing = {"path", "genre"} - columns
    if missing:
        raise LabelError(f"{source}: missing column(s) {sorted(missing)}; found {sorted(columns)}")
    rows: dict[str, LabelRow] = {}
    for line_no, row in enumerate(reader, start=2):
        path = (row.get("path") or "").strip().replace("\\", "/").removeprefix("./")
        if not path:
            raise LabelError(f"{source}, line {line_no}: empty path")
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            raise LabelError(f"{source}, line {line_no}: split {split!r} is not one of {SPLITS}")
        if path in rows:
            raise LabelError(f"{source}, line {line_no}: {path} is listed twice")
        rows[path] = LabelRow(
            genre=normalise_label(row.get("genre")),
            artist=(row.get("artist") or "").strip() or None,
            split=split,
        )
    return rows


@dataclass(frozen=True)
class Tags:
    title: str | None = None
    artist: str | None = None
    genre: str | None = None


def read_tags(data: bytes | Callable[[], IO[bytes]]) -> Tags:
    """ID3 / Vorbis comment / MP4 tags via mutagen, from the file's bytes or an opener (mutagen
    reads the tag blocks, not the audio); a file without readable tags has none."""
    try:
        if isinstance(data, (bytes, bytearray)):
            tagged = mutagen.File(io.BytesIO(data), easy=True)
        else:
            with data() as handle:
                tagged = mutagen.File(handle, easy=True)
    except Exception as exc:  # mutagen raises many types on odd files; tags are optional
        logger.debug("no readable tags: %s", exc)
        return Tags()
    if tagged is None or not tagged.tags:
        return Tags()

    from mutagen.id3 import ID3

    # WAV and AIFF keep ID3 in a chunk, which mutagen's easy mode leaves as plain ID3 frames.
    frames = {"title": "TIT2", "artist": "TPE1", "genre": "TCON"} if isinstance(tagged.tags, ID3) else {}

    def first(key: str) -> str | None:
        values = tagged.tags.get(frames.get(key, key)) if hasattr(tagged.tags, "get") else None
        values = getattr(values, "text", values)
        return str(values[0]).strip() or None if values else None

    return Tags(title=first("title"), artist=first("artist"), genre=normalise_label(first("genre")))
