"""The JSON of every answer, one shape for the CLI's ``--json`` and the HTTP API.

Each reply names the index version that answered it, so a client (or a test) can tell which
published version an answer came from when ``index/LATEST`` moves between requests.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import pandas as pd

from genre_batch.answers import AudioAnswer, Neighbour, PublishedIndex
from genre_batch.playlist import Playlist


def classify_reply(index: PublishedIndex, name: str, answer: AudioAnswer) -> dict[str, Any]:
    """``classify --json``'s entry for one file, ``POST /api/classify``'s body."""
    return {"file": name, "n_tiles": answer.n_tiles, **answer.decision.to_dict(),
            "index_version": index.version.version}


def similar_song_reply(index: PublishedIndex, song_id: str, neighbours: Sequence[Neighbour]) -> dict[str, Any]:
    return {"query": {"song_id": song_id}, "neighbours": [asdict(n) for n in neighbours],
            "index_version": index.version.version}


def similar_audio_reply(index: PublishedIndex, name: str, answer: AudioAnswer,
                        neighbours: Sequence[Neighbour]) -> dict[str, Any]:
    return {"query": {"audio": name, "n_tiles": answer.n_tiles, **answer.decision.to_dict()},
            "neighbours": [asdict(n) for n in neighbours], "index_version": index.version.version}


def playlist_reply(index: PublishedIndex, playlist: Playlist) -> dict[str, Any]:
    return {"index_version": index.version.version, **playlist.to_dict()}


SONG_FIELDS = ("song_id", "path", "relative_path", "title", "artist", "genre", "genre_source", "confidence")


def song_rows(index: PublishedIndex, query: str = "", limit: int = 50) -> list[dict[str, Any]]:
    """Songs of the index whose path, artist or title holds ``query`` (case-insensitive, plain
    text, not a pattern), in path order, at most ``limit``; every song when ``query`` is empty."""
    predictions = index.predictions[["song_id", "path", "artist", "label", "genre", "confidence"]]
    songs = predictions.merge(index.catalogue_songs[["song_id", "relative_path", "title"]], on="song_id", how="left")
    needle = query.strip().casefold()
    if needle:
        hit = np.zeros(len(songs), dtype=bool)
        for column in ("path", "artist", "title"):
            hit |= songs[column].fillna("").str.casefold().str.contains(needle, regex=False).to_numpy(bool)
        songs = songs[hit]
    songs = songs.sort_values("path", kind="stable").head(limit)
    labelled = songs["label"].notna()
    songs = songs.assign(
        genre=songs["label"].where(labelled, songs["genre"]),
        genre_source=np.where(labelled, "label", "predicted"),
        confidence=songs["confidence"].astype(float).round(4),
    )
    return [{field: _plain(row[field]) for field in SONG_FIELDS} for _, row in songs.iterrows()]


def _plain(value: Any) -> Any:
    """A table cell as JSON: missing values are null."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value.item() if isinstance(value, np.generic) else value
