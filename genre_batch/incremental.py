"""What changed in a catalogue since the last ingest, and what of the last ingest stays:
bookkeeping for the nightly job.

A file is *unchanged* when its size, modification time and (on object stores) ETag match
the songs table; when one differs its content hash decides, so a file that was merely
touched or copied is not decoded again. Files that failed before are retried only when they
changed, or when asked to; a file that could not even be *read* (storage trouble, not the
file's fault) is always retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from genre_batch.catalogue import CatalogueFile
from genre_batch.ingest import rewrite_shard_without
from genre_batch.layout import RootLayout
from genre_batch.nulls import null_if_nan
from genre_batch.storage import FileSum, join, sha256_of
from genre_batch.tagging import tag_only_change
from genre_batch.tiles import TILES_SUM


@dataclass
class CatalogueDiff:
    new: list[CatalogueFile] = field(default_factory=list)
    changed: list[CatalogueFile] = field(default_factory=list)
    retried: list[CatalogueFile] = field(default_factory=list)  # failed before, decoded again
    removed: list[str] = field(default_factory=list)  # song ids no longer in the catalogue
    unchanged: list[str] = field(default_factory=list)  # song ids kept as they are
    touched: dict[str, CatalogueFile] = field(default_factory=dict)  # song id -> listing (same bytes)
    retagged: dict[str, str] = field(default_factory=dict)  # song id -> new content hash (tags changed only)
    still_failed: list[str] = field(default_factory=list)  # relative paths whose error row is kept

    @property
    def to_ingest(self) -> list[CatalogueFile]:
        return self.new + self.changed + self.retried

    @property
    def is_empty(self) -> bool:
        return not (self.new or self.changed or self.retried or self.removed or self.touched)

    def counts(self) -> dict[str, int]:
        return {
            "new": len(self.new),
            "changed": len(self.changed),
            "retried": len(self.retried),
            "removed": len(self.removed),
            "unchanged": len(self.unchanged),
            "failed_kept": len(self.still_failed),
        }


def same_listing(row: Any, file: CatalogueFile) -> bool:
    """Whether a table row (song or error) was listed with this file's size, mtime and ETag."""
    stored_etag = row.etag if isinstance(row.etag, str) else None  # a pandas null is NaN
    return row.size_bytes == file.size_bytes and row.mtime == file.mtime and stored_etag == file.etag


def diff_catalogue(
    listing: Sequence[CatalogueFile],
    songs: pd.DataFrame,
    errors: pd.DataFrame,
    content_hash: Callable[[CatalogueFile], str],
    retry_failed: bool = False,
    retagged: Mapping[str, str] | None = None,
) -> CatalogueDiff:
    """Compare a fresh listing with the published songs and errors tables.

    ``content_hash`` is called only for files whose size or mtime changed. ``retagged`` (new
    hash -> old, from `tag` runs' logs) marks a file whose bytes changed by tag writes alone:
    its audio, and so its tiles, stay.
    """
    diff = CatalogueDiff()
    known = {row.relative_path: row for row in songs.itertuples(index=False)}
    failed = {row.relative_path: row for row in errors.itertuples(index=False)}
    listed = set()
    for file in listing:
        listed.add(file.relative_path)
        song = known.get(file.relative_path)
        if song is not None:
            if same_listing(song, file):
                diff.unchanged.append(song.song_id)
            elif (now := content_hash(file)) == song.content_hash:
                diff.unchanged.append(song.song_id)
                diff.touched[song.song_id] = file
            elif retagged and tag_only_change(now, song.content_hash, retagged):
                diff.unchanged.append(song.song_id)
                diff.touched[song.song_id] = file
                diff.retagged[song.song_id] = now
            else:
                diff.changed.append(file)
            continue
        error = failed.get(file.relative_path)
        if error is not None and not retry_failed and error.stage != "read" and same_listing(error, file):
            diff.still_failed.append(file.relative_path)
        elif error is not None:
            diff.retried.append(file)
        else:
            diff.new.append(file)
    diff.removed = [row.song_id for row in songs.itertuples(index=False) if row.relative_path not in listed]
    return diff


def content_hash_of(file: CatalogueFile) -> str:
    """SHA-256 of a catalogue file's bytes, as the songs table records it."""
    return sha256_of(file.uri)


def carry_over_songs(layout: RootLayout, songs: pd.DataFrame, diff: CatalogueDiff, version: str) -> list[dict[str, Any]]:
    """Rows of the songs that stay, for the new ``version``: touched files get their new
    listing facts, and a shard that also held a dropped (removed or changed) song is copied
    into the new version without it (the old shard stays: earlier versions still read it)."""
    dropped = set(diff.removed) | {s.song_id for s in diff.changed}
    kept = songs[~songs["song_id"].isin(dropped)].copy()
    for column in ("mtime", "etag", "size_bytes"):  # touched files: same audio, new listing facts
        kept[column] = [getattr(diff.touched[sid], column) if sid in diff.touched else value
                        for sid, value in zip(kept["song_id"], kept[column])]
    kept["content_hash"] = [diff.retagged.get(sid, value) for sid, value in zip(kept["song_id"], kept["content_hash"])]
    dirty = set(songs.loc[songs["song_id"].isin(dropped), "tiles_file"])
    sums: dict[str, FileSum] = {}
    for shard in sorted(dirty & set(kept["tiles_file"])):
        new_file, written = rewrite_shard_without(
            join(layout.ingest_area, shard), layout.tiles_dir(version), dropped, layout.tiles_prefix(version)
        )
        kept.loc[kept["tiles_file"] == shard, "tiles_file"] = new_file
        if new_file is not None and written is not None:
            sums[new_file] = written
    rows = rows_of(kept)
    for row in rows:  # the copies' checksums travel to the manifest with their rows
        if row["tiles_file"] in sums:
            row[TILES_SUM] = sums[row["tiles_file"]].to_dict()
    return rows


def kept_error_rows(errors: pd.DataFrame, diff: CatalogueDiff) -> list[dict[str, Any]]:
    """Error rows of the files that failed before and were not decoded again."""
    return rows_of(errors[errors["relative_path"].isin(diff.still_failed)])


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table read back through pandas -> rows to write again (its NaNs as nulls)."""
    return [{key: null_if_nan(value) for key, value in row.items()} for row in frame.to_dict("records")]
