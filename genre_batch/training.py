"""Training, without Ray: the genre vocabulary, the tiles a run is fed, and ``TrainLoop``,
one worker's loop as a small class (set up, restore, one pass over a split, checkpoint).

``pipelines/train.py`` runs ``TrainLoop`` inside Ray Train's workers (DDP model, dataset
shards, reports); tests run it on plain torch batches.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from genre_batch.checkpoint import checkpoint_state, ensure_resumable, restore_training_state
from genre_batch.config import FeatureConfig, TrainConfig
from genre_batch.errors import GenreBatchError
from genre_batch.layout import RootLayout
from genre_batch.manifests import RunMetrics
from genre_batch.models import TileAugment, build_model, tiles_to_input
from genre_batch.storage import exists
from genre_batch.tiles import tiles_from_binary

logger = logging.getLogger(__name__)

# A batch as the workers get it: uint8 tiles [B, n_mels, tile_frames] and class ids [B].
TileBatch = tuple[torch.Tensor, torch.Tensor]


def label_vocabulary(songs: pd.DataFrame) -> list[str]:
    """Genres present among the labelled training songs, sorted: class id = position."""
    train = songs[(songs["split"] == "train") & songs["label"].notna()]
    labels = sorted(train["label"].unique().tolist())
    if len(labels) < 2:
        raise GenreBatchError(
            f"training needs at least 2 genres among labelled training songs, found {labels or 'none'}"
        )
    return labels


def collate_tiles(batch: dict[str, np.ndarray], features: FeatureConfig, label_ids: dict[str, int]) -> TileBatch:
    """Parquet columns (``tile`` blobs, ``label``) -> (uint8 tiles [B, F, T], class ids [B])."""
    tiles = torch.from_numpy(tiles_from_binary(batch["tile"], features).copy())
    targets = torch.tensor([label_ids[label] for label in batch["label"]], dtype=torch.long)
    return tiles, targets


def cosine_lr(base: float, epoch: int, epochs: int, floor: float = 0.05) -> float:
    """Learning rate of an epoch: cosine from ``base`` down to ``floor * base`` at the last epoch."""
    progress = epoch / max(1, epochs - 1)
    return float(base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * progress))))


# Blocks of the in-memory splits: ~64 MiB of 256x256 uint8 tiles, so that the workers'
# shards and the shuffle buffer work on several blocks rather than one.
IN_MEMORY_BLOCK_TILES = 1024


def small_split_blocks(fs: Any, paths: list[str], labels: list[str],
                       block_tiles: int = IN_MEMORY_BLOCK_TILES) -> dict[str, list[Any]]:
    """The labelled train and valid tiles of these shards as Arrow tables of at most
    ``block_tiles`` rows each (at least one per split, maybe empty), in song id and tile order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    dataset = pads.dataset(paths, filesystem=fs, format="parquet")
    table = dataset.to_table(
        columns=["song_id", "tile_index", "tile", "label", "split"],
        filter=pc.field("split").isin(["train", "valid"]) & pc.field("label").isin(labels),
    )
    # One order whatever the shards are called (their names are random) or which songs a task
    # put together: the same tiles and seed then train the same model. Song ids are hashes, so
    # this order also mixes the genres that the catalogue's folders keep together.
    table = table.sort_by([("song_id", "ascending"), ("tile_index", "ascending")]).select(["tile", "label", "split"])
    out: dict[str, list[pa.Table]] = {}
    for split in ("train", "valid"):
        part = table.filter(pc.field("split") == split).combine_chunks()
        out[split] = [part.slice(start, block_tiles) for start in range(0, max(part.num_rows, 1), block_tiles)]
    return out


def finished_run(layout: RootLayout, run: str, ingest_version: str, labels: Sequence[str],
                 epochs: int) -> RunMetrics | None:
    """The metrics of ``run`` when it already trained at least ``epochs`` epochs on this ingest
    and these genres (a rerun would resume it and train nothing), else None."""
    if not (exists(layout.model_metrics(run)) and exists(layout.model_file(run))):
        return None
    metrics = RunMetrics.read(layout.model_metrics(run))
    if metrics.ingest_version != ingest_version or list(metrics.labels) != list(labels):
        return None  # other tiles or genres: the Ray path resumes, or says why it cannot
    if metrics.epochs < epochs:
        return None
    how = f"--epochs N with N > {metrics.epochs} continues it, --run NAME starts a new run"
    if metrics.epochs > epochs:
        logger.warning("run %s already trained %d epochs, more than --epochs %d: nothing to train (%s)",
                       run, metrics.epochs, epochs, how)
    else:
        logger.info("run %s already trained its %d epochs: nothing to train (%s)", run, metrics.epochs, how)
    return metrics


@dataclass
class PassTotals:
    """Sums over one pass of a split (summed again across workers before they are ratios)."""

    loss_sum: float = 0.0
    hits: float = 0.0
    seen: float = 0.0


class TrainLoop:
    """One worker's training state and its passes over the data.

    ``wrap_model`` wraps the built model for distributed training (Ray Train's
    ``prepare_model``: DDP and the device); by default the model is only moved to ``device``.
    Seeds are set before the model is built, so a seed gives the same weights, masks and dropout.
    """

    def __init__(
        self,
        config: TrainConfig,
        features: FeatureConfig,
        labels: Sequence[str],
        device: torch.device | str = "cpu",
        seed: int | None = None,
        wrap_model: Callable[[nn.Module], nn.Module] | None = None,
    ) -> None:
        seed = config.seed if seed is None else seed
        torch.manual_seed(seed)
        np.random.seed(seed)
        self.config, self.features, self.labels = config, features, list(labels)
        self.label_ids = {label: i for i, label in enumerate(self.labels)}
        self.device = torch.device(device)
        model = build_model(config.model, len(self.labels))
        self.model = wrap_model(model) if wrap_model else model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.augment = TileAugment.from_configs(config, features).to(self.device)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.start_epoch = 0
        self.history: list[dict[str, float]] = []

    def restore(self, state: dict[str, Any]) -> None:
        """Continue a run from its checkpoint state (same genres and tiles, else ``CheckpointError``)."""
        ensure_resumable(state, self.labels, self.features)
        self.start_epoch = restore_training_state(state, self.model, self.optimizer)
        self.history = [dict(row) for row in state.get("history", [])]

    def run_pass(self, batches: Iterable[TileBatch], train: bool) -> PassTotals:
        """One pass over a split's batches: with ``train``, augmented tiles and optimiser
        steps; without, the plain tiles and no gradients."""
        self.model.train(train)
        self.augment.train(train)
        totals = PassTotals()
        with contextlib.nullcontext() if train else torch.inference_mode():
            for tiles, targets in batches:
                tiles, targets = tiles.to(self.device), targets.to(self.device)
                inputs = tiles_to_input(tiles)
                logits = self.model(self.augment(inputs) if train else inputs)
                loss = self.loss_fn(logits, targets)
                if train:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                totals.loss_sum += loss.item() * len(targets)
                totals.hits += float((logits.argmax(1) == targets).sum())
                totals.seen += len(targets)
        return totals

    def run_epoch(self, epoch: int, train_batches: Iterable[TileBatch],
                  valid_batches: Iterable[TileBatch]) -> dict[str, float]:
        """Epoch ``epoch`` (0-based): the learning rate of its place on the cosine curve (a pure
        function of the epoch, so a resumed run continues the same curve), a training pass, a
        validation pass; returns its metrics (summed over workers) and adds them to the history."""
        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(self.config.learning_rate, epoch, self.config.epochs)
        train, valid = self.run_pass(train_batches, train=True), self.run_pass(valid_batches, train=False)
        loss_sum, hits, seen, v_loss, v_hits, v_seen = self._sum_over_workers(
            train.loss_sum, train.hits, train.seen, valid.loss_sum, valid.hits, valid.seen)
        seconds = time.perf_counter() - started
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": hits / max(seen, 1),
            "valid_loss": v_loss / v_seen if v_seen else float("nan"),
            "valid_accuracy": v_hits / v_seen if v_seen else float("nan"),
            "tiles_per_s": seen / seconds,
            "epoch_seconds": seconds,
        }
        self.history.append(metrics)
        return metrics

    def _sum_over_workers(self, *values: float) -> list[float]:
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def checkpoint_state(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        """A self-describing checkpoint of the epoch just run (``genre_batch.checkpoint``)."""
        return checkpoint_state(
            self.model, self.optimizer, self.labels, self.features, self.config.model, epoch, metrics,
            self.history, extra={"train_config": self.config.to_dict()},
        )

    def describe(self, metrics: dict[str, float]) -> str:
        return (
            f"epoch {int(metrics['epoch'])}/{self.config.epochs}: loss {metrics['train_loss']:.3f} "
            f"acc {metrics['train_accuracy']:.3f} | valid loss {metrics['valid_loss']:.3f} "
            f"acc {metrics['valid_accuracy']:.3f} | {metrics['tiles_per_s']:.0f} tiles/s"
        )

