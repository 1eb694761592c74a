"""The nightly's bookkeeping: what changed in a catalogue since the published songs/errors tables."""

from __future__ import annotations

import dataclasses

import pandas as pd

from genre_batch import schemas
from genre_batch.catalogue import CatalogueFile
from genre_batch.incremental import diff_catalogue
from tests.audio_helpers import catalogue_file

T0, T1 = "2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00"


def listed(path: str, size: int = 100, mtime: str = T0, etag: str | None = None) -> CatalogueFile:
    return dataclasses.replace(catalogue_file(path, size_bytes=size), mtime=mtime, etag=etag)


def songs_of(*rows: tuple[CatalogueFile, str]) -> pd.DataFrame:
    """A songs table holding these files (with their content hashes), other columns empty."""
    records = [{"song_id": f.song_id, "relative_path": f.relative_path, "size_bytes": f.size_bytes,
                "mtime": f.mtime, "etag": f.etag, "content_hash": digest} for f, digest in rows]
    return pd.DataFrame(records, columns=[field.name for field in schemas.SONGS])


def errors_of(*rows: tuple[CatalogueFile, str]) -> pd.DataFrame:
    records = [{"relative_path": f.relative_path, "size_bytes": f.size_bytes, "mtime": f.mtime,
                "etag": f.etag, "stage": stage} for f, stage in rows]
    return pd.DataFrame(records, columns=[field.name for field in schemas.ERRORS])


class Hashes:
    """Content hashes by path, counting which files had to be read."""

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests, self.read = digests, []

    def __call__(self, file: CatalogueFile) -> str:
        self.read.append(file.relative_path)
        return self.digests[file.relative_path]


def test_new_changed_touched_removed_and_unchanged():
    same, touched, changed, gone = (listed(f"rock/{n}.mp3") for n in ("same", "touched", "changed", "gone"))
    songs = songs_of((same, "h-same"), (touched, "h-touched"), (changed, "h-changed"), (gone, "h-gone"))
    hashes = Hashes({"rock/touched.mp3": "h-touched", "rock/changed.mp3": "h-new"})
    now = [same, listed("rock/touched.mp3", mtime=T1), listed("rock/changed.mp3", size=120), listed("jazz/new.mp3")]
    diff = diff_catalogue(now, songs, errors_of(), hashes)
    assert [f.relative_path for f in diff.new] == ["jazz/new.mp3"]
    assert [f.relative_path for f in diff.changed] == ["rock/changed.mp3"]
    assert diff.removed == [gone.song_id]
    assert sorted(diff.unchanged) == sorted([same.song_id, touched.song_id])
    assert diff.touched[touched.song_id].mtime == T1  # same bytes: only the listing facts move
    # Only files whose listing differs are read to hash them.
    assert sorted(hashes.read) == ["rock/changed.mp3", "rock/touched.mp3"]


def test_an_etag_change_is_a_change_even_with_the_same_size_and_mtime():
    before = listed("rock/a.mp3", etag="etag-1")
    now = listed("rock/a.mp3", etag="etag-2")
    diff = diff_catalogue([now], songs_of((before, "h-old")), errors_of(), Hashes({"rock/a.mp3": "h-new"}))
    assert [f.relative_path for f in diff.changed] == ["rock/a.mp3"]
    same = diff_catalogue([before], songs_of((before, "h-old")), errors_of(), Hashes({}))
    assert same.is_empty and same.unchanged == [before.song_id]


def test_failed_files_are_retried_when_changed_asked_or_unreadable():
    broken, fixed, unreadable = listed("a/broken.mp3"), listed("a/fixed.mp3"), listed("a/unreadable.mp3")
    errors = errors_of((broken, "decode"), (fixed, "decode"), (unreadable, "read"))
    now = [broken, listed("a/fixed.mp3", size=200), unreadable]
    diff = diff_catalogue(now, songs_of(), errors, Hashes({}))
    assert diff.still_failed == ["a/broken.mp3"]  # same bytes as when it failed: not decoded again
    # Changed since it failed, and one that could not even be read (storage, not the file).
    assert [f.relative_path for f in diff.retried] == ["a/fixed.mp3", "a/unreadable.mp3"]
    asked = diff_catalogue(now, songs_of(), errors, Hashes({}), retry_failed=True)
    assert len(asked.retried) == 3 and asked.still_failed == []


def test_no_change_is_empty():
    files = [listed("a/1.mp3"), listed("a/2.mp3", etag="e")]
    diff = diff_catalogue(files, songs_of((files[0], "h1"), (files[1], "h2")), errors_of(), Hashes({}))
    assert diff.is_empty and diff.counts()["unchanged"] == 2
