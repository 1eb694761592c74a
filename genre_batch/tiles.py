"""Tile columns <-> arrays: the one place that knows how a tile is stored in Parquet."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from genre_batch.config import FeatureConfig
from genre_batch.errors import ConfigMismatchError


def tiles_from_binary(values: Sequence[bytes] | np.ndarray, config: FeatureConfig) -> np.ndarray:
    """A column of tile blobs -> uint8 [n, n_mels, tile_frames] (one copy, no per-tile arrays)."""
    blob = b"".join(values)
    if len(blob) != len(values) * config.tile_bytes:
        raise ConfigMismatchError(
            f"tile blobs are not {config.n_mels}x{config.tile_frames} bytes each "
            f"({len(blob)} bytes for {len(values)} tiles)"
        )
    return np.frombuffer(blob, dtype=np.uint8).reshape(len(values), *config.tile_shape)
