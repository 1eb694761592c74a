"""Batch inference over tiles (Ray Data), pooled per song without a shuffle. Shared by `train`
(evaluation), `index` and `nightly`; the kernel itself is the library's
(``genre_batch.inference``), which ``classify`` runs too.

CPU stages (read, decode of tile blobs) and the model stage are separate: the model lives in
a small actor pool that loads it once per actor, on a GPU when the cluster has one.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from genre_batch.config import FeatureConfig
from genre_batch.evaluation import PredictSongs
from genre_batch.inference import POOLED_COLUMNS, TileClassifier, pooled_frame, predict_songs_in_process
from genre_batch.layout import shard_uris
from genre_batch.storage import filesystem, pyarrow_filesystem, read_bytes

logger = logging.getLogger(__name__)

# Up to this many tiles, inference runs in the calling process: starting Ray workers and a
# model actor costs seconds, the work itself milliseconds (measured in RESULTS.md).
LOCAL_MAX_TILES = 2000


class TileModel:
    """Ray Data callable class: a batch of tile blobs -> per-song sums of the model's outputs.

    Reducing each batch to one row per song where it is computed (pooling is a mean, so it
    can be done in parts) means no shuffle of tile outputs and about one row per song
    travelling back, instead of a row per tile.
    """

    def __init__(self, model_uri: str, features: dict[str, Any], use_gpu: bool, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.classifier = TileClassifier.load(read_bytes(model_uri), FeatureConfig.from_dict(features), device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.classifier.song_sums(batch)


def predict_songs(
    tile_uris: list[str],
    model_uri: str,
    features: FeatureConfig,
    *,
    splits: tuple[str, ...] | None = None,
    use_gpu: bool = False,
    batch_size: int = 64,
) -> pd.DataFrame:
    """Per-song pooled outputs for every song in the given tile shards (optionally some splits).

    Returns columns song_id, n_tiles, tiles_correct (-1 if unlabelled), probs [C], embedding [D].
    """
    import ray
    from ray.data.expressions import col

    from pipelines._ray import cluster_cpus, cluster_gpus

    if not tile_uris:
        return pd.DataFrame(columns=POOLED_COLUMNS)
    fs, _ = pyarrow_filesystem(tile_uris[0])
    paths = [filesystem(uri)[1] for uri in tile_uris]
    dataset = ray.data.read_parquet(paths, filesystem=fs, columns=["song_id", "tile", "label", "split"])
    if splits is not None:
        dataset = dataset.filter(expr=col("split").is_in(list(splits)))
    if use_gpu:
        # One actor per GPU; with none up yet (use_gpus has said so) the pending GPU actor
        # is what makes an autoscaling cluster start a GPU node: never fall back to CPU silently.
        actors = max(1, cluster_gpus())
    else:
        # Leave one CPU to the read tasks: an actor pool that takes every CPU starves them
        # and the job hangs silently (seen with Ray 2.60 on 2 cores).
        actors = max(1, cluster_cpus() - 1)
    sums = dataset.map_batches(
        TileModel,
        fn_constructor_kwargs={"model_uri": model_uri, "features": features.to_dict(), "use_gpu": use_gpu},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
        num_gpus=1 if use_gpu else 0,
        num_cpus=0 if use_gpu else 1,
    )
    frame = pooled_frame(list(sums.iter_batches(batch_size=None, batch_format="numpy")))
    logger.info("pooled %d songs from %d tile shards", len(frame), len(tile_uris))
    return frame


def runs_locally(songs: pd.DataFrame, use_gpu: bool, local_max_tiles: int = LOCAL_MAX_TILES) -> bool:
    """Whether ``predict_songs_of`` serves these songs in this process (no Ray needed)."""
    return int(songs["n_tiles"].sum()) <= local_max_tiles and not use_gpu


def predict_songs_of(
    songs: pd.DataFrame,
    ingest_area: str,
    model_uri: str,
    features: FeatureConfig,
    *,
    use_gpu: bool = False,
    batch_size: int = 64,
    splits: tuple[str, ...] | None = None,
    local_max_tiles: int = LOCAL_MAX_TILES,
) -> pd.DataFrame:
    """Pooled outputs of these songs (rows of a songs table): in this process when their tiles
    are few and no GPU is asked for, else Ray Data batch inference over their shards.

    ``splits`` narrows what the Ray Data path reads when the songs are those of some splits.
    """
    shards = shard_uris(ingest_area, songs["tiles_file"])
    wanted = set(songs["song_id"])
    if runs_locally(songs, use_gpu, local_max_tiles):
        classifier = TileClassifier.load(read_bytes(model_uri), features)
        return predict_songs_in_process(shards, classifier, wanted, batch_size=batch_size)
    pooled = predict_songs(shards, model_uri, features, splits=splits, use_gpu=use_gpu, batch_size=batch_size)
    return pooled[pooled["song_id"].isin(wanted)].reset_index(drop=True)


def songs_predictor(ingest_area: str, model_uri: str, features: FeatureConfig, *, use_gpu: bool = False,
                    batch_size: int = 64) -> PredictSongs:
    """``predict_songs_of`` with this model fixed: the predict function that the library's
    evaluation (``genre_batch.evaluation``) takes."""
    def predict(songs: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
        return predict_songs_of(songs, ingest_area, model_uri, features, use_gpu=use_gpu,
                                batch_size=batch_size, splits=splits)

    return predict
