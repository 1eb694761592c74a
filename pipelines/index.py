"""Index job: embed every song with the published model, decide genres, build and publish Annoy.

1. Ray Data batch inference over every tile (actor pool, GPU when present), pooled per song:
   embedding = L2-normalised mean of tile embeddings, probabilities = mean of tile softmaxes.
2. The "unknown" threshold is chosen on the validation songs (pooling.choose_threshold).
3. predictions.parquet (one row per song, item_id = Annoy id) and songs.ann are written
   under a new version; the manifest is written last and ``index/LATEST`` moved to it.
   A published version is never modified, so readers that memory-map an index are safe.

    python -m pipelines.index --root URI
"""

from __future__ import annotations

import argparse
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
from genre_batch.artifacts import code_version, published_ingest, published_model_run
from genre_batch.checkpoint import load_model_bundle
from genre_batch.cli import positive_int
from genre_batch.config import IndexConfig, ensure_same_features
from genre_batch.evaluation import add_predicted, save_plots
from genre_batch.index import SongIndex
from genre_batch.layout import RootLayout
from genre_batch.pooling import UNKNOWN, choose_threshold
from genre_batch.storage import check_writable, new_version, publish, read_bytes, upload_file, write_bytes, write_json
from genre_batch.tables import read_frame, write_rows
from pipelines._entry import add_device_flags

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexReport:
    version: str
    songs: int
    unknown: int
    threshold: float
    model_run: str
    seconds: float

    def summary(self) -> str:
        return (
            f"index {self.version}: {self.songs} songs indexed with model {self.model_run}; "
            f"unknown threshold {self.threshold:.3f} ({self.unknown} songs answered 'unknown') "
            f"in {self.seconds:.1f}s"
        )


def prediction_rows(frame: pd.DataFrame, labels: list[str], threshold: float) -> list[dict[str, Any]]:
    """Pooled per-song outputs joined with songs -> rows of the PREDICTIONS schema."""
    rows = []
    for item_id, song in enumerate(frame.itertuples(index=False)):
        probs = np.asarray(song.probs, dtype=np.float32)
        top = np.argsort(-probs, kind="stable")[:3]
        rows.append(
            {
                "item_id": item_id,
                "song_id": song.song_id,
                "path": song.path,
                "label": _optional(song.label),
                "split": song.split,
                "artist": _optional(song.artist),
                "n_tiles": int(song.n_tiles),
                "tiles_correct": int(song.tiles_correct) if song.tiles_correct >= 0 else None,
                "predicted": song.predicted,
                "genre": song.predicted if song.confidence >= threshold else UNKNOWN,
                "confidence": float(song.confidence),
                "top_genres": [labels[i] for i in top],
                "top_probs": [float(probs[i]) for i in top],
                "probs": probs.tolist(),
                "embedding": np.asarray(song.embedding, dtype=np.float32).tolist(),
            }
        )
    return rows


def _optional(value: Any) -> Any:
    """pandas turns missing strings into NaN; Parquet wants null."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


@dataclass
class ModelInUse:
    """The published model an index is built with, checked against the tiles it will see."""

    run: str
    uri: str
    bundle: Any  # genre_batch.checkpoint.ModelBundle
    data: bytes  # the checkpoint as read: the index keeps a copy of exactly these bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @classmethod
    def published(cls, layout: RootLayout, ingest: Any) -> "ModelInUse":
        run = published_model_run(layout.root)
        uri = layout.model_file(run)
        data = read_bytes(uri)
        bundle = load_model_bundle(data)
        # The model must have been trained on tiles made exactly like these.
        ensure_same_features(bundle.feature_config, ingest.feature_config, f"ingest {ingest.version}")
        return cls(run, uri, bundle, data)


def embed_songs(ingest: Any, model: ModelInUse, tile_uris: list[str], config: IndexConfig, use_gpu: bool) -> pd.DataFrame:
    """Pooled per-song outputs (song_id, n_tiles, tiles_correct, probs, embedding) of these shards."""
    from pipelines.inference import predict_songs

    return predict_songs(tile_uris, model.uri, ingest.feature_config, use_gpu=use_gpu, batch_size=config.batch_size)


def publish_index(
    layout: RootLayout,
    ingest: Any,
    model: ModelInUse,
    pooled: pd.DataFrame,
    songs: pd.DataFrame,
    config: IndexConfig,
    started: float,
) -> IndexReport:
    """Decide genres, write predictions + Annoy under a new version, then move index/LATEST."""
    labels = list(model.bundle.labels)
    frame = add_predicted(
        pooled.merge(songs[["song_id", "path", "label", "split", "artist"]], on="song_id", how="inner"), labels
    ).sort_values("song_id", kind="stable").reset_index(drop=True)
    valid = frame[(frame["split"] == "valid") & frame["label"].isin(labels)]
    threshold = choose_threshold(
        valid["confidence"].to_numpy(float),
        (valid["predicted"] == valid["label"]).to_numpy(bool),
        target_accuracy=config.target_accuracy,
        min_coverage=config.min_coverage,
        floor_quantile=config.floor_quantile,
    )
    version = new_version()
    rows = prediction_rows(frame, labels, threshold.threshold)
    metadata = {
        "feature_config": ingest.feature_config.to_dict(),
        "labels": labels,
        "model_run": model.run,
        "ingest_version": ingest.version,
        "threshold": threshold.threshold,
        "version": version,
    }
    write_rows(rows, schemas.predictions_schema(model.bundle.model_config.embedding_dim),
               layout.predictions_table(version), metadata)
    vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
    song_ids = [row["song_id"] for row in rows]
    index = SongIndex.build(song_ids, vectors, n_trees=config.n_trees, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "songs.ann")
        index.save(local)
        upload_file(local, layout.annoy_file(version))
    # The version carries the model that made its embeddings: resuming or retraining the run
    # later rewrites models/<run>/model.pt, and `similar --audio` must keep matching the index.
    write_bytes(layout.index_model_file(version), model.data)
    save_plots(
        layout.index_dir(version),
        {
            "embedding_map.png": lambda path: plots.plot_embedding_map(
                vectors, [row["label"] or f"({row['genre']})" for row in rows], path
            )
        },
    )
    manifest = {
        "kind": "index",
        "version": version,
        "model_run": model.run,
        "model": model.uri,
        "model_sha256": model.sha256,
        "ingest_version": ingest.version,
        "labels": labels,
        "feature_config": ingest.feature_config.to_dict(),
        "model_config": model.bundle.model_config.to_dict(),
        "embedding_dim": int(vectors.shape[1]),
        "metric": "angular",
        "n_trees": config.n_trees,
        "songs": len(rows),
        "threshold": threshold.to_dict(),
        "files": {"annoy": "songs.ann", "predictions": "predictions.parquet", "model": "model.pt"},
        "code_version": code_version(),
    }
    write_json(layout.index_manifest(version), manifest)
    publish(layout.index_area, version)
    return IndexReport(
        version=version,
        songs=len(rows),
        unknown=sum(1 for row in rows if row["genre"] == UNKNOWN),
        threshold=threshold.threshold,
        model_run=model.run,
        seconds=time.perf_counter() - started,
    )


def run_index(
    root: str, config: IndexConfig = IndexConfig(), use_gpu: bool | None = None, address: str | None = None
) -> IndexReport:
    """``use_gpu`` None: inference on GPUs when the cluster has any."""
    from pipelines._ray import ensure_ray, use_gpus

    started = time.perf_counter()
    check_writable(root)
    layout = RootLayout(root)
    ingest = published_ingest(root)
    model = ModelInUse.published(layout, ingest)
    songs = read_frame(ingest.songs_uri)
    ensure_ray(address)
    pooled = embed_songs(ingest, model, ingest.tile_uris, config, use_gpus(use_gpu))
    return publish_index(layout, ingest, model, pooled, songs, config, started)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = IndexConfig()
    parser.add_argument("--root", required=True, help="storage root (published ingest and model)")
    parser.add_argument("--n-trees", type=positive_int, default=defaults.n_trees, help="Annoy trees")
    parser.add_argument("--target-accuracy", type=float, default=defaults.target_accuracy,
                        help="accuracy the accepted validation songs must reach (unknown rule)")
    parser.add_argument("--min-coverage", type=float, default=defaults.min_coverage,
                        help="share of validation songs the unknown rule must keep")
    parser.add_argument("--floor-quantile", type=float, default=defaults.floor_quantile,
                        help="unknown below this quantile of the confidences of the right validation answers "
                             "(audio unlike the training songs); 0: off")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="tiles per inference batch")
    add_device_flags(parser, "inference")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> IndexReport:
    config = IndexConfig(
        n_trees=args.n_trees,
        target_accuracy=args.target_accuracy,
        min_coverage=args.min_coverage,
        floor_quantile=args.floor_quantile,
        batch_size=args.batch_size,
    )
    return run_index(args.root, config, use_gpu=args.use_gpu, address=args.address)


def main(argv: list[str] | None = None) -> int:
    from pipelines._entry import job_main

    return job_main("index", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
