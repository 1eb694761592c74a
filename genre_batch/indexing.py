"""An index version from a model's per-song outputs (no Ray).

``publish_index_version`` decides every song's genre (the "unknown" threshold chosen on the
validation songs), writes the predictions table, the Annoy index, a copy of the model, the
embedding map and, last, the manifest, then moves ``index/LATEST``. A published version is
never modified, so readers that memory-map an index are safe.

For the nightly job: ``index_delta`` says which songs the published index lacks or holds stale
embeddings of, and ``pooled_from_predictions`` gives back the stored outputs of the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from genre_batch import plots, schemas
from genre_batch.artifacts import IndexVersion, IngestVersion, published_model_run
from genre_batch.checkpoint import KIND_KEY, PRETRAIN_KIND, ModelBundle, load_model_bundle
from genre_batch.config import IndexConfig, ensure_same_features
from genre_batch.decision import SongDecision, choose_decision, rule_scores, song_answers
from genre_batch.evaluation import save_plots
from genre_batch.index import SongIndex, catalogue_mean, centre_vectors
from genre_batch.layout import RootLayout
from genre_batch.manifests import IndexManifest
from genre_batch.nulls import null_if_nan
from genre_batch.pooling import UNKNOWN, ThresholdChoice, choose_threshold
from genre_batch.storage import FileSum, check_version_name, new_version, publish, read_bytes, upload_file, write_bytes
from genre_batch.tables import read_frame, write_rows

logger = logging.getLogger(__name__)


@dataclass
class ModelInUse:
    """The published model an index is built with, checked against the tiles it will see."""

    run: str
    uri: str
    bundle: ModelBundle
    data: bytes  # the checkpoint as read: the index keeps a copy of exactly these bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_pretrain(self) -> bool:
        """A self-supervised run: embeddings, but no genres."""
        return self.bundle.extra.get(KIND_KEY) == PRETRAIN_KIND

    @classmethod
    def published(cls, layout: RootLayout, ingest: IngestVersion) -> "ModelInUse":
        """The genre model ``models/LATEST`` names."""
        return cls.of_run(layout, ingest, published_model_run(layout.root), allow_pretrain=False)

    @classmethod
    def of_run(cls, layout: RootLayout, ingest: IngestVersion, run: str, allow_pretrain: bool = True) -> "ModelInUse":
        """The best model of training run ``run``, or a pretrain run's encoder (``index --model``)."""
        check_version_name(run, "--model")
        uri = layout.model_file(run)
        data = read_bytes(uri)
        bundle = load_model_bundle(data, allow_pretrain=allow_pretrain)
        # The model must have been trained on tiles made exactly like these.
        ensure_same_features(bundle.feature_config, ingest.feature_config, f"ingest {ingest.version}")
        return cls(run, uri, bundle, data)


@dataclass(frozen=True)
class IndexReport:
    version: str
    songs: int
    unknown: int
    threshold: float
    model_run: str
    seconds: float

    def summary(self) -> str:
        genres = ("no genres (a pretrain run: every song 'unknown')" if self.threshold >= NO_GENRES_THRESHOLD
                  else f"unknown threshold {self.threshold:.3f} ({self.unknown} songs answered 'unknown')")
        return f"index {self.version}: {self.songs} songs indexed with model {self.model_run}; {genres} in {self.seconds:.1f}s"


def prediction_rows(frame: pd.DataFrame, labels: list[str], threshold: float) -> list[dict[str, Any]]:
    """Pooled per-song outputs joined with songs, with ``predicted``, ``confidence`` and the
    decision rule's ``scores`` -> rows of the PREDICTIONS schema."""
    rows = []
    for item_id, song in enumerate(frame.itertuples(index=False)):
        scores = np.asarray(song.scores, dtype=np.float32)
        top = np.argsort(-scores, kind="stable")[:3]
        rows.append(
            {
                "item_id": item_id,
                "song_id": song.song_id,
                "path": song.path,
                "label": null_if_nan(song.label),
                "split": song.split,
                "artist": null_if_nan(song.artist),
                "n_tiles": int(song.n_tiles),
                "tiles_correct": int(song.tiles_correct) if song.tiles_correct >= 0 else None,
                "predicted": song.predicted,
                "genre": song.predicted if song.confidence >= threshold else UNKNOWN,
                "confidence": float(song.confidence),
                "top_genres": [labels[i] for i in top],
                "top_probs": [float(scores[i]) for i in top],
                "probs": np.asarray(song.probs, dtype=np.float32).tolist(),
                "votes": np.asarray(song.votes, dtype=np.float32).tolist(),
                "embedding": np.asarray(song.embedding, dtype=np.float32).tolist(),
            }
        )
    return rows


# The unknown rule of an index without genres: no confidence reaches it.
NO_GENRES_THRESHOLD = 2.0


def no_genre_decisions(pooled: pd.DataFrame, songs: pd.DataFrame,
                       run: str) -> tuple[list[dict[str, Any]], ThresholdChoice, str]:
    """Prediction rows of a pretrain run's index: embeddings, every genre ``unknown`` (and why)."""
    frame = pooled.merge(songs[["song_id", "path", "label", "split", "artist"]], on="song_id", how="inner") \
        .sort_values("song_id", kind="stable").reset_index(drop=True)
    rows = prediction_rows(frame.assign(predicted=UNKNOWN, confidence=0.0, scores=[np.zeros(0)] * len(frame)),
                           [], NO_GENRES_THRESHOLD)
    for row in rows:
        row["probs"], row["votes"] = [], []
    reason = (f"every genre is unknown: {run} is a self-supervised (pretrain) run, which learned to tell songs "
              f"apart but knows no genres; train a genre model from it (genre-batch train --init {run}) and index that")
    threshold = ThresholdChoice(threshold=NO_GENRES_THRESHOLD, coverage=0.0, accuracy=float("nan"), target_accuracy=0.0,
                                min_coverage=0.0, floor_quantile=0.0, n_songs=0, rule=reason)
    return rows, threshold, reason


def _matrix(column: pd.Series, width: int) -> np.ndarray:
    return np.stack(column.to_numpy()).astype(np.float64) if len(column) else np.zeros((0, width))


def decide_genres(pooled: pd.DataFrame, songs: pd.DataFrame, labels: list[str],
                  config: IndexConfig) -> tuple[list[dict[str, Any]], ThresholdChoice, SongDecision]:
    """Per-song outputs -> prediction rows (in song id order: item id = row), the unknown
    threshold and the decision rule, both chosen on the labelled validation songs."""
    frame = pooled.merge(songs[["song_id", "path", "label", "split", "artist"]], on="song_id", how="inner") \
        .sort_values("song_id", kind="stable").reset_index(drop=True)
    probs, votes = _matrix(frame["probs"], len(labels)), _matrix(frame["votes"], len(labels))
    n_tiles = frame["n_tiles"].to_numpy(np.int64)
    valid = ((frame["split"] == "valid") & frame["label"].isin(labels)).to_numpy(bool)
    truth = frame.loc[valid, "label"].map({label: i for i, label in enumerate(labels)}).to_numpy(np.int64)
    decision = choose_decision(config.decision, probs[valid], votes[valid], n_tiles[valid], truth)
    scores = rule_scores(decision.rule, probs, votes, n_tiles)
    top, confidence = song_answers(decision.rule, probs, votes, n_tiles)
    frame = frame.assign(predicted=[labels[i] for i in top], confidence=confidence, scores=list(scores))
    threshold = choose_threshold(
        confidence[valid], top[valid] == truth,
        target_accuracy=config.target_accuracy, min_coverage=config.min_coverage, floor_quantile=config.floor_quantile,
    )
    logger.info("%s", decision.describe())
    return prediction_rows(frame, labels, threshold.threshold), threshold, decision


def publish_index_version(
    layout: RootLayout,
    ingest: IngestVersion,
    model: ModelInUse,
    pooled: pd.DataFrame,
    songs: pd.DataFrame,
    config: IndexConfig,
    started: float,
) -> IndexReport:
    """Decide genres, write predictions + Annoy under a new version, then move index/LATEST."""
    labels = [] if model.is_pretrain else list(model.bundle.labels)
    genres_note: str | None = None
    if model.is_pretrain:
        rows, threshold, genres_note = no_genre_decisions(pooled, songs, model.run)
        decision: SongDecision | None = None
    else:
        rows, threshold, decision = decide_genres(pooled, songs, labels, config)
    version = new_version()
    metadata = {
        "feature_config": ingest.feature_config.to_dict(),
        "labels": labels,
        "model_run": model.run,
        "ingest_version": ingest.version,
        "threshold": threshold.threshold,
        "version": version,
    }
    files = IndexManifest.FILES
    sums = {files["predictions"]: write_rows(rows, schemas.predictions_schema(model.bundle.model_config.embedding_dim),
                                             layout.predictions_table(version), metadata)}
    vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
    mean = catalogue_mean(vectors) if config.centre else None
    sums[files["annoy"]] = write_annoy(layout.annoy_file(version), [row["song_id"] for row in rows],
                                       centre_vectors(vectors, mean), config.n_trees)
    # The version carries the model that made its embeddings: resuming or retraining the run
    # later rewrites models/<run>/model.pt, and `similar --audio` must keep matching the index.
    write_bytes(layout.index_model_file(version), model.data)
    sums[files["model"]] = FileSum.of(model.data)
    save_plots(layout.index_dir(version), {"embedding_map.png": lambda path: plots.plot_embedding_map(
        vectors, [row["label"] or f"({row['genre']})" for row in rows], path)})
    IndexManifest(
        version=version, model_run=model.run, model_uri=model.uri, model_sha256=model.sha256,
        ingest_version=ingest.version, labels=tuple(labels), feature_config=ingest.feature_config,
        model_config=model.bundle.model_config, embedding_dim=int(vectors.shape[1]), n_trees=config.n_trees,
        songs=len(rows), threshold=threshold, embedding_mean=None if mean is None else tuple(mean.tolist()),
        song_decision=decision, checksums=sums, genres=genres_note,
    ).write(layout.index_manifest(version))
    publish(layout.index_area, version)
    return IndexReport(
        version=version,
        songs=len(rows),
        unknown=sum(1 for row in rows if row["genre"] == UNKNOWN),
        threshold=threshold.threshold,
        model_run=model.run,
        seconds=time.perf_counter() - started,
    )


def write_annoy(uri: str, song_ids: list[str], vectors: np.ndarray, n_trees: int) -> FileSum:
    """Build the Annoy index of these song vectors (item i = song_ids[i]) and store it at
    ``uri``; returns its size and checksum."""
    index = SongIndex.build(song_ids, vectors, n_trees=n_trees, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "songs.ann")
        index.save(local)
        upload_file(local, uri)
        return FileSum.of_local(local)


# ---------------------------------------------------------------- what the nightly re-embeds
@dataclass(frozen=True)
class IndexDelta:
    """How the published index differs from the songs in force."""

    index: IndexVersion  # the published index compared
    stale: set[str]  # songs it lacks, or holds the embedding of other bytes for
    removed: set[str]  # songs it holds that are gone

    @property
    def up_to_date(self) -> bool:
        return not (self.stale or self.removed)


def index_delta(
    layout: RootLayout, index: IndexVersion | None, songs: pd.DataFrame, model: ModelInUse
) -> IndexDelta | None:
    """Compare the published index with the songs table (by song id and content hash).

    None means every song must be embedded: no index yet, another model (another run, or
    the same run resumed: other weights), or the index's ingest version is no longer readable.
    """
    if index is None or (index.manifest.model_run, index.manifest.model_sha256) != (model.run, model.sha256):
        return None
    if index.manifest.song_decision is None and index.manifest.genres is None:
        return None  # an index from before the votes were kept: they must be counted
    try:
        indexed = read_frame(layout.songs_table(index.manifest.ingest_version), ["song_id", "content_hash"])
    except FileNotFoundError:
        return None
    indexed_hash = dict(zip(indexed["song_id"], indexed["content_hash"]))
    in_index = set(read_frame(index.predictions_uri, ["song_id"])["song_id"])
    stale = {
        sid for sid, digest in zip(songs["song_id"], songs["content_hash"])
        if sid not in in_index or indexed_hash.get(sid) != digest
    }
    return IndexDelta(index=index, stale=stale, removed=in_index - set(songs["song_id"]))


def pooled_from_predictions(predictions: pd.DataFrame, song_ids: set[str]) -> pd.DataFrame:
    """Stored per-song outputs in the shape batch inference returns, for songs not re-embedded."""
    kept = predictions[predictions["song_id"].isin(song_ids)]
    return pd.DataFrame(
        {
            "song_id": kept["song_id"].to_numpy(),
            "n_tiles": kept["n_tiles"].to_numpy(np.int32),
            "tiles_correct": kept["tiles_correct"].fillna(-1).to_numpy(np.int32),
            "probs": [np.asarray(p, np.float32) for p in kept["probs"]],
            "embedding": [np.asarray(e, np.float32) for e in kept["embedding"]],
            "votes": [np.asarray(v, np.float32) for v in kept["votes"]],
        }
    )
