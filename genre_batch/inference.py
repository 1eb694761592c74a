"""The one path from tiles to a model's answers (pure torch and numpy, no Ray).

uint8 tiles -> ``tiles_to_input`` -> the model -> softmax probabilities and embeddings
(``infer_tiles``), then pooled per song. Batch inference (``pipelines/inference.py``, in Ray
Data actors), the nightly's small deltas (``predict_songs_in_process``) and ``classify`` /
``similar --audio`` (``answers.py``) all run it, so they cannot drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from genre_batch.config import FeatureConfig
from genre_batch.pooling import merge_song_sums, pooled_songs, song_sums
from genre_batch.tiles import tiles_from_binary

if TYPE_CHECKING:
    from genre_batch.checkpoint import ModelBundle
    from genre_batch.models import EmbeddingModel

logger = logging.getLogger(__name__)

# Tiles per forward pass: a long file's tiles go through the model a batch at a time.
INFERENCE_BATCH_TILES = 64


@dataclass(frozen=True)
class TileOutputs:
    probs: np.ndarray  # float32 [n_tiles, n_classes], softmax rows
    embeddings: np.ndarray  # float32 [n_tiles, embedding_dim], the penultimate layer


def infer_tiles(
    model: EmbeddingModel, tiles: np.ndarray, device: Any = "cpu", batch_size: int = INFERENCE_BATCH_TILES
) -> TileOutputs:
    """uint8 tiles ``[n, n_mels, tile_frames]`` -> softmax probabilities and embeddings, in
    batches of ``batch_size`` tiles; ``model`` in eval mode on ``device``."""
    import torch

    from genre_batch.models import tiles_to_input

    probs, embeddings = [], []
    with torch.inference_mode():
        for start in range(0, len(tiles), batch_size):
            # A copy: stored tiles are read-only views of the Parquet buffer, which torch refuses to wrap.
            batch = torch.from_numpy(np.array(tiles[start : start + batch_size])).to(device)
            logits, embedding = model.forward_with_embedding(tiles_to_input(batch))
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            embeddings.append(embedding.float().cpu().numpy())
    if not probs:
        raise ValueError("no tiles to run the model on")
    return TileOutputs(np.concatenate(probs), np.concatenate(embeddings))


class TileClassifier:
    """A trained model ready for tiles: on its device, with its label vocabulary and the
    feature config it was trained on (tiles made otherwise are refused when it is loaded)."""

    def __init__(self, bundle: ModelBundle, device: Any = "cpu") -> None:
        self.bundle = bundle
        self.device = device
        self.model = bundle.model.to(device).eval()
        self.label_ids = {label: i for i, label in enumerate(bundle.labels)}

    @classmethod
    def load(cls, checkpoint: bytes, features: FeatureConfig, device: Any = "cpu") -> "TileClassifier":
        """A genre model or a pretrain run's encoder (its one-class head's outputs mean nothing;
        whoever decides genres checks which it is, ``indexing.ModelInUse``)."""
        from genre_batch.checkpoint import load_model_bundle

        return cls(load_model_bundle(checkpoint, expected_features=features, allow_pretrain=True), device)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    @property
    def features(self) -> FeatureConfig:
        return self.bundle.feature_config

    def outputs(self, tiles: np.ndarray) -> TileOutputs:
        return infer_tiles(self.model, tiles, self.device)

    def song_sums(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A batch of tile rows (``song_id``, ``tile`` blobs, ``label``) -> one row of sums per
        song in it (``pooling.song_sums``): pooling is a mean, so batches can be reduced where
        they are computed and merged later."""
        outputs = self.outputs(tiles_from_binary(batch["tile"], self.features))
        label_ids = np.array([self.label_ids.get(label, -1) if label else -1 for label in batch["label"]], np.int64)
        return song_sums(batch["song_id"], outputs.probs, outputs.embeddings, label_ids)


POOLED_COLUMNS = ["song_id", "n_tiles", "tiles_correct", "probs", "embedding", "votes"]


def pooled_frame(parts: Sequence[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Per-batch song sums -> one row per song (sorted by id), columns ``POOLED_COLUMNS``:
    ``tiles_correct`` is -1 for an unlabelled song, ``probs`` [C], ``embedding`` [D] and
    ``votes`` [C] arrays."""
    if not parts:
        return pd.DataFrame(columns=POOLED_COLUMNS)
    pooled = pooled_songs(merge_song_sums(parts))
    return pd.DataFrame({
        "song_id": pooled["song_id"],
        "n_tiles": pooled["n_tiles"],
        "tiles_correct": pooled["tiles_correct"],
        "probs": list(pooled["probs"]),
        "embedding": list(pooled["embedding"]),
        "votes": list(pooled["votes"]),
    })


def predict_songs_in_process(
    tile_uris: Sequence[str], classifier: TileClassifier, song_ids: set[str], batch_size: int = INFERENCE_BATCH_TILES
) -> pd.DataFrame:
    """The pooled outputs of these songs, whose tiles lie in these shards, computed in this
    process: for a handful of songs (a nightly delta) starting Ray workers and a model actor
    costs far more than the work. The same kernel and merge as Ray Data batch inference."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from genre_batch.tables import read_table

    wanted = pa.array(sorted(song_ids), pa.string())
    parts = []
    for uri in tile_uris:
        table = read_table(uri, ["song_id", "tile", "label"])
        table = table.filter(pc.is_in(table["song_id"], wanted))
        for start in range(0, table.num_rows, batch_size):
            chunk = table.slice(start, batch_size)
            parts.append(classifier.song_sums(
                {name: np.asarray(chunk[name].to_pylist(), dtype=object) for name in ("song_id", "tile", "label")}
            ))
    return pooled_frame(parts)
