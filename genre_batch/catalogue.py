"""The catalogue: which audio files there are, their ids, and their labels."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from genre_batch.decode import is_audio_path
from genre_batch.errors import LabelError
from genre_batch.labels import LABEL_SOURCES, LabelRow, label_from_folder, parse_labels_csv
from genre_batch.storage import normalise_uri, read_text, relative_to, walk_files

logger = logging.getLogger(__name__)


def song_id_for(relative_path: str) -> str:
    """Stable id from the catalogue-relative path: a replaced file keeps its id."""
    return hashlib.sha1(relative_path.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CatalogueFile:
    song_id: str
    uri: str
    relative_path: str
    size_bytes: int
    mtime: str
    label: str | None
    label_source: str
    artist: str | None
    split_override: str | None
    etag: str | None = None  # object stores only; with size and mtime it tells when a file changed


def keyed_by_relative_path(rows: dict[str, LabelRow], root: str, source: str) -> dict[str, LabelRow]:
    """Labels CSV rows by catalogue-relative path. The documented form is relative; a full path
    or URI under the catalogue (as music libraries export them) is accepted too. One outside
    the catalogue is kept as it is, to be reported with the paths that name no file."""
    keyed: dict[str, LabelRow] = {}
    for path, row in rows.items():
        if "://" in path or path.startswith(("/", "~")):
            try:
                path = relative_to(path, root)
            except ValueError:
                pass
        if path in keyed:
            raise LabelError(f"{source}: {path} is listed twice (by relative and by full path)")
        keyed[path] = row
    return keyed


def list_catalogue(catalogue_uri: str, labels: str = "folder", strict_labels: bool = True) -> list[CatalogueFile]:
    """List audio files (by extension, case-insensitive) and attach labels.

    ``labels`` is ``folder`` (parent folder name), ``tags`` (read later, from the bytes),
    ``none``, or the URI of a CSV with columns ``path,genre[,artist][,split]``. A CSV row
    naming no file is a ``LabelError`` (a wrong prefix would leave everything unlabelled);
    with ``strict_labels=False`` (the nightly job: files get removed) it is only logged.
    """
    root = normalise_uri(catalogue_uri)
    csv_rows: dict[str, LabelRow] | None = None
    mode = labels
    if labels not in LABEL_SOURCES:
        try:
            text = read_text(labels, "labels CSV")
        except FileNotFoundError:
            raise LabelError(f"labels CSV {labels} does not exist") from None
        csv_rows = keyed_by_relative_path(parse_labels_csv(text, source=labels), root, labels)
        mode = "csv"
    files: list[CatalogueFile] = []
    skipped = 0
    for info in walk_files(root):
        relative = relative_to(info.uri, root)
        if not is_audio_path(relative):
            skipped += 1
            continue
        row = (csv_rows or {}).get(relative)
        if mode == "folder":
            label, artist, split = label_from_folder(relative), None, None
        elif mode == "csv":
            label, artist, split = (row.genre, row.artist, row.split) if row else (None, None, None)
        else:  # tags: filled in from the file's bytes during ingest; none: unlabelled
            label, artist, split = None, None, None
        files.append(
            CatalogueFile(
                song_id=song_id_for(relative),
                uri=info.uri,
                relative_path=relative,
                size_bytes=info.size,
                mtime=info.mtime,
                etag=info.etag or None,
                label=label,
                label_source=mode if label else "none",
                artist=artist,
                split_override=split,
            )
        )
    if csv_rows is not None:
        unknown = sorted(set(csv_rows) - {f.relative_path for f in files})
        if unknown:
            message = f"{labels}: {len(unknown)} path(s) not found in {root}, e.g. {unknown[:3]}"
            if strict_labels:
                raise LabelError(message)
            logger.warning("%s (removed from the catalogue?)", message)
    logger.info("catalogue %s: %d audio files, %d other files skipped", root, len(files), skipped)
    return files
