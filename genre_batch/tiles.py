"""Tile columns <-> arrays, and the feature config a tile shard carries: the one place that
knows how a tile is stored in Parquet."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from genre_batch import schemas
from genre_batch.config import FeatureConfig, ensure_same_features
from genre_batch.errors import ConfigMismatchError
from genre_batch.storage import pyarrow_filesystem, storage_errors

# A song row's key, not a column: the size and SHA-256 of its tile shard, on their way from
# the writer (a Ray task, the nightly) to the version's manifest (artifacts.publish_ingest_version).
TILES_SUM = "tiles_sum"


def tiles_from_binary(values: Sequence[bytes] | np.ndarray, config: FeatureConfig) -> np.ndarray:
    """A column of tile blobs -> uint8 [n, n_mels, tile_frames] (one copy, no per-tile arrays)."""
    blob = b"".join(values)
    if len(blob) != len(values) * config.tile_bytes:
        raise ConfigMismatchError(
            f"tile blobs are not {config.n_mels}x{config.tile_frames} bytes each "
            f"({len(blob)} bytes for {len(values)} tiles)"
        )
    return np.frombuffer(blob, dtype=np.uint8).reshape(len(values), *config.tile_shape)


# Footers read at once when checking shards: the reads are small and wait on storage (an
# object store answers in tens of milliseconds), so threads overlap them.
_FOOTER_READERS = 16


def shard_feature_config(uri: str) -> FeatureConfig | None:
    """The feature config a tile shard carries in its Parquet metadata (None: it carries none)."""
    fs, path = pyarrow_filesystem(uri)
    with storage_errors("read", uri):
        return schemas.feature_config_of(pq.read_schema(path, filesystem=fs))


def check_tile_shards(uris: Sequence[str], expected: FeatureConfig) -> None:
    """Raise ``ConfigMismatchError`` naming the first shard (in the given order) whose stored
    feature config differs from ``expected``, and every field that differs."""
    if not uris:
        return
    with ThreadPoolExecutor(max_workers=min(_FOOTER_READERS, len(uris))) as pool:
        found = list(pool.map(shard_feature_config, uris))
    for uri, config in zip(uris, found):
        if config is None:
            raise ConfigMismatchError(f"tile shard {uri} carries no feature config: it was not written by ingest")
        ensure_same_features(expected, config, f"tile shard {uri}")
