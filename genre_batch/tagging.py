"""Fill in a library's genre tags from the published index, with provenance and an undo.

The rule, per song of the index (``plan_tags``):
1. the genre to write is the song's own label when it came from a labels CSV or its folder
   (source ``label``), else the index's genre (source ``predicted``), never ``unknown``, and only
   when its confidence is at least ``min_confidence`` (default: the index's unknown threshold);
2. ``--genre-map`` renames it to the library's spelling;
3. a file whose tag already says it is left alone; a file with another genre tag is left alone
   unless ``replace_all`` (``--all``); a file whose bytes differ from the ingested ones (its
   content hash) is skipped: the genre was computed for other audio.

Writing (``write_tags``) copies the file beside itself, tags the copy (mutagen rewrites tag
blocks, never audio frames), notes the change in the run's journal, then renames the copy over
the file: a crash leaves the old file or the new one. The run's log, ``<root>/tags/<run>.parquet``
(``schemas.TAGS``), has each file's old and new tag and content hash; ``undo_tags`` restores the
old tags from it, and ``retag_hashes`` lets ``nightly`` recognise a tag-only change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pandas as pd

from genre_batch import schemas
from genre_batch.errors import GenreBatchError
from genre_batch.labels import normalise_label
from genre_batch.layout import RootLayout
from genre_batch.pooling import UNKNOWN
from genre_batch.storage import (
    download_file, exists, is_local, join, list_prefix, normalise_uri, read_bytes, sha256_of,
)
from genre_batch.tables import read_frame, write_rows
from genre_batch.tagfiles import TagFileError, UnsupportedTagFormat, read_file_tags, write_file_tags

logger = logging.getLogger(__name__)

TAGS_AREA = "tags"
COPY_SUFFIX = ".genre-batch-tag"  # a copy being tagged, beside its file; renamed over it when done


@dataclass(frozen=True)
class TagOptions:
    replace_all: bool = False  # --all: also replace genre tags that disagree
    min_confidence: float | None = None  # None: the index's unknown threshold
    genre_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TagPlanRow:
    path: str
    relative_path: str
    song_id: str
    format: str | None
    current: str | None  # the genre tag now
    current_provenance: str | None  # our provenance tag now, if a run of ours wrote the genre
    new: str | None  # the genre to write
    source: str  # label / predicted / none
    confidence: float | None
    action: str  # write / skip
    reason: str  # why (for both)
    content_hash: str  # of the ingested bytes


class TagError(GenreBatchError):
    """A tag run that cannot go on (a store that cannot be edited, a log that is missing)."""


def parse_genre_map(text: str, source: str = "genre map") -> dict[str, str]:
    """``model_genre,library_genre`` per line (a header line ``genre,...`` is allowed)."""
    import csv
    import io

    mapping: dict[str, str] = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise TagError(f"{source}, line {line_no}: want 'model_genre,library_genre', got {','.join(row)[:80]!r}")
        key = normalise_label(row[0]) or ""
        if line_no == 1 and key in ("genre", "model_genre", "model"):
            continue
        if key in mapping:
            raise TagError(f"{source}, line {line_no}: {row[0].strip()!r} is mapped twice")
        mapping[key] = row[1].strip()
    return mapping


def decide(song: Any, threshold: float, options: TagOptions) -> tuple[str | None, str, float | None, str]:
    """(genre to write or None, source, confidence, reason) of one predictions + songs row."""
    confidence = None if pd.isna(song.confidence) else float(song.confidence)
    if isinstance(song.label, str) and song.label_source in ("csv", "folder"):
        return options.genre_map.get(song.label, song.label), "label", None, f"its label ({song.label_source})"
    if song.genre == UNKNOWN:
        return None, "none", confidence, f"unknown: confidence {confidence:.2f} under the index's threshold {threshold:.2f}"
    floor = threshold if options.min_confidence is None else options.min_confidence
    if confidence is not None and confidence < floor:
        return None, "predicted", confidence, f"confidence {confidence:.2f} under --min-confidence {floor:.2f}"
    genre = options.genre_map.get(song.genre, song.genre)
    return genre, "predicted", confidence, f"predicted with confidence {confidence:.2f}"


def plan_tags(predictions: pd.DataFrame, songs: pd.DataFrame, threshold: float, options: TagOptions,
              current_hash: Callable[[str], str] = sha256_of) -> list[TagPlanRow]:
    """What a run would write and skip, and why, for every song of the index (path order)."""
    table = predictions[["song_id", "path", "label", "genre", "confidence"]].merge(
        songs[["song_id", "relative_path", "label_source", "content_hash"]], on="song_id", how="left")
    rows = []
    for song in table.sort_values("path").itertuples(index=False):
        genre, source, confidence, reason = decide(song, threshold, options)

        def row(action: str, why: str, kind: str | None = None, current: str | None = None,
                provenance: str | None = None) -> TagPlanRow:
            return TagPlanRow(song.path, song.relative_path, song.song_id, kind, current, provenance, genre, source,
                              confidence, action, why, song.content_hash)

        try:
            with tags_readable(song.path) as path:
                tags = read_file_tags(path)
        except (UnsupportedTagFormat, TagFileError, OSError) as exc:
            rows.append(row("skip", str(exc).split(": ", 1)[-1]))
            continue
        current = tags.genre
        if genre is None:
            rows.append(row("skip", reason, tags.format, current, tags.provenance))
        elif current is not None and normalise_label(current) == normalise_label(genre):
            rows.append(row("skip", f"its tag already says {current}", tags.format, current, tags.provenance))
        elif current is not None and not options.replace_all:
            rows.append(row("skip", f"has a genre tag ({current}); --all replaces it", tags.format, current, tags.provenance))
        elif current_hash(song.path) != song.content_hash:
            rows.append(row("skip", "changed since it was ingested (its content hash differs)", tags.format, current, tags.provenance))
        else:
            rows.append(row("write", reason, tags.format, current, tags.provenance))
    return rows


@contextlib.contextmanager
def tags_readable(uri: str) -> Iterator[str]:
    """A local path to read a file's tags from: the file itself, or for a remote file a
    temporary copy, removed afterwards."""
    if is_local(uri):
        yield normalise_uri(uri)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gb-tag-") as folder:
        path = os.path.join(folder, os.path.basename(uri))
        download_file(uri, path)
        yield path


# ------------------------------------------------------------------ writing
def run_name(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"tag-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def provenance(run: str, model_run: str, index_version: str, source: str, confidence: float | None) -> str:
    parts = {"run": run, "model": model_run, "index": index_version, "source": source}
    if confidence is not None:
        parts["confidence"] = f"{confidence:.3f}"
    return " ".join(f"{key}={value}" for key, value in parts.items())


def refuse_remote(paths: Iterable[str]) -> None:
    for path in paths:
        if not is_local(path):
            raise TagError(f"tag --write: {path} is in object storage, whose objects are not edited in place here; "
                           "write the genres to a CSV with `genre-batch genres --out genres.csv` instead "
                           "(the dry run, without --write, works)")


def retag_file(path: str, genre: str | None, provenance_text: str | None,
               journal: Callable[[str, int], None]) -> tuple[str, int]:
    """Tag a copy beside ``path``, let ``journal(new_hash, new_size)`` record it, then rename the
    copy over the file (one rename: the old file or the new one, never half of either)."""
    import shutil

    copy = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}{COPY_SUFFIX}"
                        f"{os.path.splitext(path)[1]}")
    shutil.copy2(path, copy)
    try:
        write_file_tags(copy, genre, provenance_text)
        with open(copy, "rb+") as handle:
            os.fsync(handle.fileno())
        new_hash, new_size = sha256_of(copy), os.path.getsize(copy)
        journal(new_hash, new_size)
        os.replace(copy, path)
    finally:
        if os.path.exists(copy):
            os.unlink(copy)
    return new_hash, new_size


def remove_dead_copies(paths: Iterable[str]) -> None:
    """Copies that a killed run left beside the files (never the files themselves)."""
    import glob

    for folder in sorted({os.path.dirname(path) for path in paths}):
        for copy in glob.glob(os.path.join(glob.escape(folder), f".*{COPY_SUFFIX}*")):
            os.unlink(copy)


class TagLog:
    """A run's log: a journal line per file, written before its rename (so a killed run still
    has one), and ``<root>/tags/<run>.parquet`` at the end."""

    def __init__(self, layout: RootLayout, run: str) -> None:
        self.uri = join(layout.root, TAGS_AREA, f"{run}.parquet")
        self.rows: list[dict[str, Any]] = []
        self.journal = join(layout.root, TAGS_AREA, f"{run}.journal.jsonl") if is_local(layout.root) else None
        if self.journal:
            os.makedirs(os.path.dirname(self.journal), exist_ok=True)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.journal:
            with open(self.journal, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    def close(self, metadata: dict[str, Any]) -> None:
        write_rows(self.rows, schemas.TAGS, self.uri, metadata)
        if self.journal and os.path.exists(self.journal):
            os.unlink(self.journal)


@dataclass
class TagReport:
    run: str | None
    written: list[dict[str, Any]]
    skipped: list[TagPlanRow]
    log_uri: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "log": self.log_uri, "written": self.written,
                "skipped": [asdict(row) for row in self.skipped]}


def write_tags(layout: RootLayout, plan: Sequence[TagPlanRow], model_run: str, index_version: str,
               run: str | None = None) -> TagReport:
    todo = [row for row in plan if row.action == "write"]
    refuse_remote(row.path for row in todo)
    remove_dead_copies(row.path for row in todo)
    run = run or run_name()
    log = TagLog(layout, run)
    skipped = [row for row in plan if row.action != "write"]
    for row in todo:
        text = provenance(run, model_run, index_version, row.source, row.confidence)
        entry = {"path": row.path, "relative_path": row.relative_path, "song_id": row.song_id, "format": row.format,
                 "old_genre": row.current, "new_genre": row.new, "old_provenance": row.current_provenance,
                 "new_provenance": text, "source": row.source, "confidence": row.confidence,
                 "old_content_hash": row.content_hash}
        if sha256_of(row.path) != row.content_hash:  # changed between the plan and now
            skipped.append(TagPlanRow(**{**asdict(row), "action": "skip",
                                         "reason": "changed since it was ingested (its content hash differs)"}))
            continue
        retag_file(row.path, row.new, text, lambda new_hash, size: log.add(
            {**entry, "new_content_hash": new_hash, "new_size_bytes": size}))
    log.close({"kind": "tag", "run": run, "model_run": model_run, "index_version": index_version})
    logger.info("tag run %s: %d files written, log %s", run, len(log.rows), log.uri)
    return TagReport(run, log.rows, skipped, log.uri)


# ------------------------------------------------------------------ undo and what nightly reads
def read_log(layout: RootLayout, run: str) -> pd.DataFrame:
    """A run's log, or the journal of a run that was killed before it wrote the log."""
    uri = join(layout.root, TAGS_AREA, f"{run}.parquet")
    if exists(uri):
        return read_frame(uri)
    journal = join(layout.root, TAGS_AREA, f"{run}.journal.jsonl")
    if exists(journal):
        lines = read_bytes(journal).decode("utf-8").splitlines()
        return pd.DataFrame([json.loads(line) for line in lines if line.strip()], columns=schemas.TAGS.names)
    raise TagError(f"no tag run {run!r} under {layout.root}/{TAGS_AREA} (neither {run}.parquet nor its journal)")


def undo_tags(layout: RootLayout, run: str, undo_run: str | None = None) -> TagReport:
    """Put back the tags a run replaced, on each file still as that run left it; a file changed
    since (its hash is not the run's new one) is refused and listed."""
    log = read_log(layout, run)
    refuse_remote(log["path"])
    remove_dead_copies(log["path"])
    undo_run = undo_run or f"undo-{run}"
    out = TagLog(layout, undo_run)
    skipped = []
    for entry in log.itertuples(index=False):
        skip = TagPlanRow(entry.path, entry.relative_path, entry.song_id, entry.format, entry.new_genre,
                          entry.new_provenance, entry.old_genre, "undo", None, "skip", "", entry.new_content_hash)
        if not os.path.exists(entry.path):
            skipped.append(TagPlanRow(**{**asdict(skip), "reason": "the file is gone"}))
            continue
        if sha256_of(entry.path) != entry.new_content_hash:
            skipped.append(TagPlanRow(**{**asdict(skip), "reason": f"changed since {run} wrote it; not undone"}))
            continue
        old_genre = None if pd.isna(entry.old_genre) else entry.old_genre
        old_provenance = None if pd.isna(entry.old_provenance) else entry.old_provenance
        row = {"path": entry.path, "relative_path": entry.relative_path, "song_id": entry.song_id,
               "format": entry.format, "old_genre": entry.new_genre, "new_genre": old_genre,
               "old_provenance": entry.new_provenance, "new_provenance": old_provenance, "source": "undo",
               "confidence": None, "old_content_hash": entry.new_content_hash}

        def journal(new_hash: str, size: int, row: dict[str, Any] = row) -> None:
            out.add({**row, "new_content_hash": new_hash, "new_size_bytes": size})
        retag_file(entry.path, old_genre, old_provenance, journal)
    out.close({"kind": "tag-undo", "run": undo_run, "undoes": run})
    return TagReport(undo_run, out.rows, skipped, out.uri)


def retag_hashes(layout: RootLayout) -> dict[str, str]:
    """new content hash -> the hash before, over every tag run and undo of this root (and the
    journals of killed runs): the byte changes that were tags only."""
    area = join(layout.root, TAGS_AREA)
    chain: dict[str, str] = {}
    if not exists(area):
        return chain
    for name in list_prefix(area):
        if name.endswith(".parquet"):
            frame = read_frame(join(area, name), ["old_content_hash", "new_content_hash"])
        elif name.endswith(".journal.jsonl"):
            frame = read_log(layout, name.removesuffix(".journal.jsonl"))
        else:
            continue
        chain.update(zip(frame["new_content_hash"], frame["old_content_hash"]))
    return chain


def tag_only_change(current_hash: str, ingested_hash: str, chain: Mapping[str, str], limit: int = 1000) -> bool:
    """Whether bytes with ``current_hash`` came from ``ingested_hash`` by tag writes alone."""
    for _ in range(limit):
        if current_hash not in chain:
            return False
        current_hash = chain[current_hash]
        if current_hash == ingested_hash:
            return True
    return False
