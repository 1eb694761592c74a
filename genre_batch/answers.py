"""Answers from a published index: similar songs, genres of new files, playlists, evaluation. No Ray.

New audio is featurised with the exact ``FeatureConfig`` stored in the index manifest (the
one its model was trained on), and the model is the one the index was built with.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from genre_batch import metrics as m
from genre_batch import schemas
from genre_batch.artifacts import IndexVersion, IngestVersion, load_ingest_version, published_index
from genre_batch.config import ensure_same_features
from genre_batch.errors import DamagedFileError, GenreBatchError
from genre_batch.evaluation import split_metrics
from genre_batch.index import SongIndex, UnknownSongError, centre_vectors, cosine_spread, recall_at_k
from genre_batch.playlist import Playlist, make_playlist, resolve_history
from genre_batch.decision import SongDecision, rule_scores
from genre_batch.pooling import UNKNOWN, VOTE_FLOOR, GenreDecision, decide_genre, pool_song, tile_votes
from genre_batch.ingest import (
    DEFAULT_MAX_DURATION_S, IN_MEMORY_BYTES, FileSource, content_hash_of_source, opener_of, tiles_of_file,
)
from genre_batch.storage import (
    FileSum,
    download_file,
    filesystem,
    is_local,
    normalise_uri,
    read_bytes,
    storage_errors,
)
from genre_batch.tables import read_frame, read_table

if TYPE_CHECKING:
    from genre_batch.inference import TileClassifier

logger = logging.getLogger(__name__)


# Columns of ``predictions`` that pandas holds as plain values (no per-row arrays).
SCALAR_COLUMNS = [f.name for f in schemas.PREDICTIONS if not pa.types.is_list(f.type) and not pa.types.is_fixed_size_list(f.type)]


def list_column_matrix(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """A list column whose rows all have one length -> float32 ``[rows, length]``, without a
    Python object per row."""
    import pyarrow.compute as pc

    array = column.combine_chunks()
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    lengths = pc.list_value_length(array)
    width = pc.min_max(lengths)
    if array.null_count or width["min"] != width["max"]:
        raise GenreBatchError(f"predictions column {name!r}: rows of different lengths or nulls")
    return np.asarray(array.flatten(), dtype=np.float32).reshape(len(array), width["max"].as_py())


def predictions_matrix(uri: str, column: str) -> np.ndarray:
    """``embedding`` or ``probs`` of a predictions table as one float32 matrix, rows in item id order."""
    table = read_table(uri, ["item_id", column])
    order = np.argsort(table.column("item_id").to_numpy(), kind="stable")  # Arrow's sort_by: 35x slower
    return list_column_matrix(table.column(column), column)[order]


def cache_dir() -> str:
    return os.environ.get("GENRE_BATCH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "genre-batch"))


def local_copy(uri: str, expected: FileSum | None = None) -> str:
    """A local path to memory-map. Versions are immutable, so a cached copy never goes stale;
    a download is checked against ``expected`` (size and SHA-256) before it is kept, a local
    file by its size (``load_index_version`` did) and a cached copy by its size."""
    if is_local(uri):
        return normalise_uri(uri)
    key = hashlib.sha256(normalise_uri(uri).encode()).hexdigest()[:16]
    local = os.path.join(cache_dir(), key, os.path.basename(uri))
    if os.path.exists(local) and expected is not None and os.path.getsize(local) != expected.size:
        os.unlink(local)  # a cached copy cut short (a full disk): fetch it again
    if not os.path.exists(local):
        tmp = f"{local}.part-{os.getpid()}"
        download_file(uri, tmp)
        if expected is not None and FileSum.of_local(tmp) != expected:
            os.unlink(tmp)
            raise DamagedFileError(f"{uri} is damaged: its bytes do not match the size and SHA-256 its manifest lists")
        os.replace(tmp, local)
    return local


def read_audio_source(uri: str) -> FileSource:
    """A query file: its bytes when small, else an opener that streams it (as ingest reads)."""
    fs, path = filesystem(uri)
    with storage_errors("read", uri):
        size = fs.size(path)
    if size is None or size <= IN_MEMORY_BYTES:
        return read_bytes(uri)

    def open_file() -> Any:
        with storage_errors("read", uri):
            return fs.open(path, "rb")
    return open_file


@dataclass(frozen=True)
class AudioAnswer:
    source: str
    decision: GenreDecision
    embedding: np.ndarray
    n_tiles: int
    content_hash: str


@dataclass(frozen=True)
class Neighbour:
    song_id: str
    similarity: float
    genre: str
    genre_source: str  # "label" or "predicted"
    path: str
    artist: str | None = None
    title: str | None = None


class PublishedIndex:
    """The published index version of a root, loaded lazily: table, Annoy file, model."""

    def __init__(self, root: str, version: IndexVersion | None = None) -> None:
        self.root = root
        self.version = version or published_index(root)

    @property
    def threshold(self) -> float:
        return self.version.manifest.threshold.threshold

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """One row per song in item id order, without the list columns (``vectors`` reads
        ``embedding`` and ``probs``): on 1M songs 0.2 s instead of 6 s, for `similar`."""
        frame = read_frame(self.version.predictions_uri, SCALAR_COLUMNS)
        return frame.sort_values("item_id").reset_index(drop=True)

    def vectors(self, column: str = "embedding") -> np.ndarray:
        """``embedding`` [songs, dim] or ``probs`` [songs, genres] as one float32 matrix, rows in
        item id order (the rows of ``predictions``), read straight from Arrow."""
        return predictions_matrix(self.version.predictions_uri, column)

    @property
    def song_decision(self) -> SongDecision:
        """How the index decided its songs (an index from before the vote: the mean rule)."""
        return self.version.manifest.song_decision or SongDecision("mean", VOTE_FLOOR, "mean", {})

    @property
    def embedding_mean(self) -> np.ndarray | None:
        mean = self.version.manifest.embedding_mean
        return None if mean is None else np.asarray(mean, dtype=np.float32)

    def song_vectors(self) -> np.ndarray:
        """The song vectors as similar-song search sees them (centred on the catalogue's mean
        when the index is): the vectors of songs.ann, in item id order."""
        return centre_vectors(self.vectors("embedding"), self.embedding_mean)

    @cached_property
    def by_song(self) -> pd.DataFrame:
        return self.predictions.set_index("song_id", drop=False)

    @cached_property
    def index(self) -> SongIndex:
        return SongIndex.load(local_copy(self.version.annoy_uri, self.version.checksum("songs.ann")),
                              self.predictions["song_id"].tolist(), self.version.manifest.embedding_dim)

    @cached_property
    def model(self) -> TileClassifier:
        # The copy inside the version: the model that made these embeddings, even after its
        # training run was resumed or replaced. Relative to the root, so a moved root works.
        from genre_batch.checkpoint import load_model_bundle  # torch: ~1.7 s, only for audio queries
        from genre_batch.inference import TileClassifier

        data = read_bytes(self.version.layout.index_model_file(self.version.version))
        if hashlib.sha256(data).hexdigest() != self.version.manifest.model_sha256:
            raise GenreBatchError(f"index {self.version.version}: model.pt does not match its manifest")
        bundle = load_model_bundle(data, allow_pretrain=self.version.manifest.genres is not None)
        ensure_same_features(self.version.feature_config, bundle.feature_config, "the index's model")
        return TileClassifier(bundle)

    # ---------------------------------------------------------------- audio
    def analyse_audio(self, uri: str, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> AudioAnswer:
        """Decode and featurise a file exactly as ingest did (streamed: an hours-long file in
        bounded memory, its first ``max_duration_s``), run the model a batch of tiles at a
        time, pool the tiles."""
        return self.analyse_source(read_audio_source(uri), uri, max_duration_s)

    def analyse_source(self, source: FileSource, name: str,
                       max_duration_s: float = DEFAULT_MAX_DURATION_S) -> AudioAnswer:
        """``analyse_audio`` of a file's bytes (an upload) or opener; ``name`` only names it in
        messages and answers."""
        config = self.version.feature_config
        content_hash = content_hash_of_source(source)
        _, tiles = tiles_of_file(opener_of(source), config, name, max_duration_s)
        outputs = self.model.outputs(tiles.tiles)
        song_probs, embedding = pool_song(outputs.probs, outputs.embeddings)
        # The index's rule, so a catalogue file gets the genre the index gave it.
        scores = rule_scores(self.song_decision.rule, song_probs[None], tile_votes(outputs.probs).sum(axis=0)[None],
                             np.array([len(tiles)]))[0]
        return AudioAnswer(
            source=name,
            decision=decide_genre(scores, self.model.labels, self.threshold),
            embedding=embedding,
            n_tiles=len(tiles),
            content_hash=content_hash,
        )

    # ---------------------------------------------------------------- neighbours
    def _neighbour(self, song_id: str, similarity: float) -> Neighbour:
        row = self.by_song.loc[song_id]
        has_label = isinstance(row["label"], str)
        return Neighbour(
            song_id=song_id,
            similarity=round(float(similarity), 4),
            genre=row["label"] if has_label else row["genre"],
            genre_source="label" if has_label else "predicted",
            path=row["path"],
            artist=row["artist"] if isinstance(row["artist"], str) else None,
            title=self.titles.get(song_id),
        )

    @cached_property
    def titles(self) -> dict[str, str]:
        """Song id -> title tag, for the songs that have one."""
        songs = self.catalogue_songs[self.catalogue_songs["title"].notna()]
        return dict(zip(songs["song_id"], songs["title"].astype(str)))

    def song_id_of(self, song: str) -> str:
        """A song's id from its id, its path or URI, or its path relative to the catalogue."""
        plays, _ = resolve_history([(song, 1.0)], self.predictions, catalogue=self.catalogue)
        if not plays:
            raise UnknownSongError(f"song {song!r} is not in index {self.version.version} (by id or path)")
        return next(iter(plays))

    def similar_to_song(self, song_id: str, k: int = 10) -> list[Neighbour]:
        if song_id not in self.index:
            raise UnknownSongError(f"song {song_id!r} is not in index {self.version.version}")
        return [self._neighbour(sid, sim) for sid, sim in self.index.query_song(song_id, k)]

    def similar_to_audio(self, uri: str, k: int = 10) -> tuple[AudioAnswer, list[Neighbour]]:
        answer = self.analyse_audio(uri)
        return answer, self.similar_to_answer(answer, k, path=normalise_uri(uri))

    def similar_to_answer(self, answer: AudioAnswer, k: int = 10, path: str | None = None) -> list[Neighbour]:
        """The songs nearest an analysed file. The file itself is excluded when it is in the
        catalogue (same ``path``, or the same bytes)."""
        exclude = set(self.predictions.loc[self.predictions["path"] == path, "song_id"]) if path else set()
        exclude |= self.songs_with_hash(answer.content_hash)
        hits = self.index.query_vector(centre_vectors(answer.embedding, self.embedding_mean), k, exclude=exclude)
        return [self._neighbour(sid, sim) for sid, sim in hits]

    @cached_property
    def ingest(self) -> IngestVersion:
        """The ingest version the index was built from."""
        return load_ingest_version(self.version.layout, self.version.manifest.ingest_version)

    @property
    def catalogue(self) -> str:
        """The catalogue URI the index's songs were ingested from (paths relative to it work)."""
        return self.ingest.manifest.catalogue

    @cached_property
    def catalogue_songs(self) -> pd.DataFrame:
        """The ingest's songs table, the columns that answers use (read once per index)."""
        return read_frame(self.ingest.songs_uri, ["song_id", "content_hash", "relative_path", "title", "label_source"])

    def songs_with_hash(self, content_hash: str) -> set[str]:
        songs = self.catalogue_songs
        return set(songs.loc[songs["content_hash"] == content_hash, "song_id"])

    # ---------------------------------------------------------------- playlists
    def playlist(self, history: Sequence[tuple[str, float]], n: int = 20, variety: float = 0.3) -> Playlist:
        """A playlist for ``(song id or path, plays)`` pairs; entries not in the index are
        reported in ``Playlist.skipped`` (the rule: ``genre_batch.playlist``)."""
        plays, skipped = resolve_history(history, self.predictions, catalogue=self.catalogue)
        labels = list(self.version.manifest.labels)  # the order of the ``probs`` column
        return make_playlist(
            self.predictions, self.song_vectors(), self.vectors("probs"), labels, plays,
            n=n, variety=variety, skipped=skipped,
        )

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, k: int = 10) -> dict[str, Any]:
        """Song/tile/per-genre accuracy, the unknown rule and genre precision@k of `similar`."""
        labels = list(self.version.manifest.labels)
        frame = self.predictions
        frame = frame.assign(tiles_correct=frame["tiles_correct"].fillna(0))
        out: dict[str, Any] = {"index_version": self.version.version, "model_run": self.version.manifest.model_run}
        if self.version.manifest.genres is not None:  # a pretrain run's index: similarity only
            out["genres"] = self.version.manifest.genres
            for split in ("valid", "test"):
                part = frame[frame["split"] == split]
                # The songs' own labels, hidden from the model, score its neighbours.
                out[split] = {f"genre_precision_at_{k}": self._precision_at_k(part[part["label"].notna()], k)}
            return self._similarity_report(out, frame, k)
        for split in ("valid", "test"):
            part = frame[frame["split"] == split]
            numbers = split_metrics(part, labels).to_dict()
            known = part[part["label"].isin(labels)]
            numbers["unknown_rule"] = m.unknown_rule_report(
                known["label"].tolist(), known["predicted"].tolist(),
                known["confidence"].to_numpy(float), self.threshold,
            ).to_dict()
            numbers[f"genre_precision_at_{k}"] = self._precision_at_k(known, k)
            out[split] = numbers
        out["unknown_threshold"] = self.version.manifest.threshold.to_dict()
        out["song_decision"] = self.song_decision.to_dict()
        return self._similarity_report(out, frame, k)

    def _similarity_report(self, out: dict[str, Any], frame: pd.DataFrame, k: int) -> dict[str, Any]:
        out["unlabelled_songs"] = int(frame["label"].isna().sum())
        raw = self.vectors("embedding")  # read once: as stored, and as searched
        vectors = centre_vectors(raw, self.embedding_mean)
        out[f"annoy_recall_at_{k}"] = recall_at_k(self.index, vectors, k=min(k, len(frame) - 1), n_queries=200) \
            if len(frame) > 1 else float("nan")
        out["similarity"] = {
            "centred": self.embedding_mean is not None,
            "cosine_of_random_pairs": cosine_spread(vectors),
            "uncentred_cosine_of_random_pairs": cosine_spread(raw),
        }
        return out

    def _precision_at_k(self, queries: pd.DataFrame, k: int) -> float:
        neighbour_genres = [[n.genre for n in self.similar_to_song(sid, k)] for sid in queries["song_id"]]
        return m.precision_at_k(queries["label"].tolist(), neighbour_genres)


# A labels CSV (path, genre, artist) with the reasons beside it.
FILLED_GENRE_COLUMNS = ["path", "genre", "source", "confidence", "predicted", "artist", "song_id"]


def filled_genres(predictions: pd.DataFrame, unlabelled_only: bool = False) -> pd.DataFrame:
    """Every song's genre, in the columns of a labels CSV: the label where there is one
    (``source`` label), else the model's genre (predicted), else none (unknown: the model's
    confidence is under the index's threshold; ``predicted`` still says its best guess).

    An unknown song's ``genre`` is empty, not "unknown", so the table is a labels CSV that
    ``ingest --labels`` reads back as it is (paths are full URIs, which it accepts).
    """
    rows = predictions[predictions["label"].isna()] if unlabelled_only else predictions
    labelled = rows["label"].notna()
    unknown = ~labelled & (rows["genre"] == UNKNOWN)
    out = pd.DataFrame({
        "path": rows["path"],
        "genre": rows["label"].where(labelled, rows["genre"].where(~unknown, "")),
        "source": np.select([labelled, unknown], ["label", "unknown"], "predicted"),
        "confidence": rows["confidence"].astype(float).round(4),
        "predicted": rows["predicted"],
        "artist": rows["artist"],
        "song_id": rows["song_id"],
    })
    return out.sort_values("path", kind="stable").reset_index(drop=True)[FILLED_GENRE_COLUMNS]


def format_decision(decision: GenreDecision) -> str:
    top = ", ".join(f"{label} {prob:.2f}" for label, prob in decision.top)
    return f"{decision.genre} (confidence {decision.confidence:.2f}; top: {top})"
