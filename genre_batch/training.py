"""Training, without Ray: the genre vocabulary, the tiles a run is fed, and ``TrainLoop``,
one worker's loop as a small class (set up, restore, one pass over a split, checkpoint).

``pipelines/train.py`` runs ``TrainLoop`` inside Ray Train's workers (DDP model, dataset
shards, reports); tests run it on plain torch batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from genre_batch.artifacts import IngestVersion, published_ingest
from genre_batch.checkpoint import (
    checkpoint_state, ensure_resumable, init_from_pretrain, restore_training_state, unwrap_model,
)
from genre_batch.config import FeatureConfig, TrainConfig
from genre_batch.errors import GenreBatchError
from genre_batch.layout import RootLayout
from genre_batch.manifests import RunMetrics
from genre_batch.models import TileAugment, build_model, tiles_to_input
from genre_batch.models.augment import mixup
from genre_batch.storage import check_writable, exists
from genre_batch.tables import read_frame
from genre_batch.tiles import tiles_from_binary

logger = logging.getLogger(__name__)

# Where a checkpoint keeps the raw (still training) weights when its model is their moving average.
RAW_WEIGHTS = "raw_model_state"
EMA_UPDATES = "ema_updates"  # optimiser steps the moving average has seen

# A batch as the workers get it: uint8 tiles [B, n_mels, tile_frames], class ids [B] and each
# tile's song as a row of the validation songs (-1: not one of them) [B].
TileBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# What a run's best epoch is chosen on (TrainConfig.select_on): validation *song* accuracy (a
# song = the mean of its tiles' probabilities, as `index` decides it) or tile accuracy.
SELECTION_METRICS = {"song": "valid_song_accuracy", "tile": "valid_accuracy"}


@dataclass(frozen=True)
class TrainingInputs:
    """What a job that trains or fits on a root reads first: its published ingest (every tile
    shard checked against the version's feature config), the songs table, the genres."""

    layout: RootLayout
    ingest: IngestVersion
    songs: pd.DataFrame
    labels: list[str]


def training_inputs(root: str, writable: bool = True) -> TrainingInputs:
    """Load (and check) a root's training inputs; ``writable``: fail first if outputs cannot
    be written under the root."""
    if writable:
        check_writable(root)
    ingest = published_ingest(root)
    ingest.check_tiles()
    songs = read_frame(ingest.songs_uri)
    return TrainingInputs(RootLayout(root), ingest, songs, label_vocabulary(songs))


def label_vocabulary(songs: pd.DataFrame) -> list[str]:
    """Genres present among the labelled training songs, sorted: class id = position."""
    train = songs[(songs["split"] == "train") & songs["label"].notna()]
    labels = sorted(train["label"].unique().tolist())
    if len(labels) < 2:
        raise GenreBatchError(
            f"training needs at least 2 genres among labelled training songs, found {labels or 'none'}"
        )
    return labels


def collate_tiles(batch: dict[str, np.ndarray], features: FeatureConfig, label_ids: dict[str, int],
                  song_rows: dict[str, int] | None = None) -> TileBatch:
    """Parquet columns (``tile`` blobs, ``label``, ``song_id``) -> (uint8 tiles [B, F, T], class
    ids [B], song rows [B]: each tile's position in ``song_rows``, -1 for songs not in it)."""
    tiles = torch.from_numpy(tiles_from_binary(batch["tile"], features).copy())
    targets = torch.tensor([label_ids[label] for label in batch["label"]], dtype=torch.long)
    rows = song_rows or {}
    songs = batch.get("song_id")
    song_index = torch.tensor([rows.get(song, -1) for song in songs] if songs is not None else [-1] * len(targets),
                              dtype=torch.long)
    return tiles, targets, song_index


def selection_metric(config: TrainConfig) -> str:
    return SELECTION_METRICS[config.select_on]


def early_stop_reached(history: Sequence[dict[str, float]], metric: str, patience: int) -> bool:
    """Whether the last ``patience`` epochs did not beat the best score of the epochs before
    them (0: never; epochs without a score, NaN, do not count)."""
    if patience <= 0 or len(history) <= patience:
        return False
    scores = [float(row.get(metric, float("nan"))) for row in history]
    before = [s for s in scores[:-patience] if s == s]
    recent = [s for s in scores[-patience:] if s == s]
    return bool(before and recent) and max(recent) <= max(before)


# Tiles read for the per-band statistics: enough for a stable mean and spread of every band.
BAND_STATISTICS_TILES = 4096


def band_statistics(tile_uris: Sequence[str], song_ids: set[str], features: FeatureConfig,
                    max_tiles: int = BAND_STATISTICS_TILES) -> tuple[list[float], list[float]]:
    """Mean and standard deviation per mel band of these songs' tiles in model-input units
    (``tiles_to_input``), from at most ``max_tiles`` tiles, read in shard order: the
    statistics a ``band_norm`` model normalises its input with."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from genre_batch.tables import read_table

    wanted = pa.array(sorted(song_ids), pa.string())
    total = np.zeros(features.n_mels)
    squares = np.zeros(features.n_mels)
    tiles_read = 0
    for uri in tile_uris:
        if tiles_read >= max_tiles:
            break
        table = read_table(uri, ["song_id", "tile"])
        table = table.filter(pc.is_in(table["song_id"], wanted)).slice(0, max_tiles - tiles_read)
        if not table.num_rows:
            continue
        tiles = tiles_to_input(tiles_from_binary(table["tile"].to_pylist(), features).copy()).double()[:, 0]
        total += tiles.sum(dim=(0, 2)).numpy()
        squares += (tiles ** 2).sum(dim=(0, 2)).numpy()
        tiles_read += tiles.shape[0]
    if not tiles_read:
        raise GenreBatchError("band_norm: no training tiles to take band statistics from")
    frames = tiles_read * features.tile_frames
    mean = total / frames
    return mean.tolist(), np.sqrt(np.maximum(squares / frames - mean ** 2, 0.0)).tolist()


def ema_decay_at(decay: float, updates: int) -> float:
    """The moving average's decay after ``updates`` steps: ``min(decay, (1 + n) / (10 + n))``, a
    warm-up (as TensorFlow's ExponentialMovingAverage with ``num_updates``), so that a short
    run's average is not dominated by its first, untrained weights."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


TensorList = tuple[torch.Tensor, ...] | list[torch.Tensor]


def warmup_ema(decay: float) -> Callable[[TensorList, TensorList, torch.Tensor | int], None]:
    """``AveragedModel``'s ``multi_avg_fn``: the averaged tensors move towards the current ones
    by ``1 - ema_decay_at(decay, n)``."""
    def update(averaged: TensorList, current: TensorList, num_averaged: torch.Tensor | int) -> None:
        weight = 1.0 - ema_decay_at(decay, int(num_averaged))
        floating = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)
        for a, c in zip(averaged, current):  # counters (BatchNorm's num_batches_tracked) are copied
            if not a.is_floating_point():
                a.copy_(c)
    return update


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
    table = table.sort_by([("song_id", "ascending"), ("tile_index", "ascending")]).select(
        ["song_id", "tile", "label", "split"])
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
    stopped = early_stop_reached(list(metrics.history), selection_metric(metrics.train_config),
                                 metrics.train_config.patience)
    if metrics.epochs < epochs:
        if not stopped:
            return None
        logger.info("run %s stopped early after %d epochs (patience %d): nothing to train (--run NAME starts a new run)",
                    run, metrics.epochs, metrics.train_config.patience)
        return metrics
    how = f"--epochs N with N > {metrics.epochs} continues it, --run NAME starts a new run"
    if metrics.epochs > epochs:
        logger.warning("run %s already trained %d epochs, more than --epochs %d: nothing to train (%s)",
                       run, metrics.epochs, epochs, how)
    else:
        logger.info("run %s already trained its %d epochs: nothing to train (%s)", run, metrics.epochs, how)
    return metrics


@dataclass
class PassTotals:
    """Sums over one pass of a split (summed again across workers before they are ratios);
    with validation songs, their summed tile probabilities and labels."""

    loss_sum: float = 0.0
    hits: float = 0.0
    seen: float = 0.0
    song_probs: torch.Tensor | None = None  # [songs, classes]
    song_targets: torch.Tensor | None = None  # [songs], -1 where no tile was seen

    def add_songs(self, rows: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch's tile probabilities to their songs' sums (rows -1: no validation song)."""
        if self.song_probs is None or self.song_targets is None:
            return
        known = rows >= 0
        self.song_probs.index_add_(0, rows[known], torch.softmax(logits[known].double(), dim=1))
        self.song_targets[rows[known]] = targets[known]

    def song_accuracy(self) -> float:
        if self.song_probs is None or self.song_targets is None:
            return float("nan")
        seen = self.song_targets >= 0
        if not bool(seen.any()):
            return float("nan")
        return float((self.song_probs[seen].argmax(dim=1) == self.song_targets[seen]).double().mean())


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
        valid_songs: Sequence[str] = (),
        band_stats: tuple[Sequence[float], Sequence[float]] | None = None,
        init_state: Mapping[str, Any] | None = None,
    ) -> None:
        seed = config.seed if seed is None else seed
        torch.manual_seed(seed)
        np.random.seed(seed)
        self.config, self.features, self.labels = config, features, list(labels)
        self.label_ids = {label: i for i, label in enumerate(self.labels)}
        # The validation songs' rows: their tiles' probabilities are summed per song, as
        # `index` pools them, to score (and choose) epochs on song accuracy.
        self.song_rows = {song: row for row, song in enumerate(valid_songs)}
        self.device = torch.device(device)
        # With band_norm the model carries the bands' statistics (ModelConfig.input_bands).
        self.model_config = (dataclasses.replace(config.model, input_bands=features.n_mels) if config.band_norm
                             else config.model)
        model = build_model(self.model_config, len(self.labels))
        if config.band_norm:
            if band_stats is None:
                raise ValueError("band_norm needs the training tiles' band statistics (training.band_statistics)")
            model.set_band_statistics(*(np.asarray(values) for values in band_stats))
        if init_state is not None:  # a pretrain run's encoder; this model's own new genre head
            init_from_pretrain(model, init_state, features)
            if config.band_norm and band_stats is not None:  # this run's band statistics, not the pretrain run's
                model.set_band_statistics(*(np.asarray(values) for values in band_stats))
        self.model = wrap_model(model) if wrap_model else model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.augment = TileAugment.from_configs(config, features).to(self.device)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        # The averaged weights (BatchNorm statistics too) are validated and saved; the raw
        # ones keep training.
        self.ema = (AveragedModel(unwrap_model(self.model), multi_avg_fn=warmup_ema(config.ema_decay),
                                  use_buffers=True) if config.ema_decay > 0 else None)
        self.start_epoch = 0
        self.history: list[dict[str, float]] = []

    @property
    def evaluated_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def restore(self, state: dict[str, Any]) -> None:
        """Continue a run from its checkpoint state (same genres and tiles, else ``CheckpointError``).
        With a moving average, the checkpoint's model is the average and the raw weights ride
        along in ``extra``."""
        ensure_resumable(state, self.labels, self.features)
        raw = state.get("extra", {}).get(RAW_WEIGHTS)
        self.start_epoch = restore_training_state({**state, "model_state": raw} if raw is not None else state,
                                                  self.model, self.optimizer)
        if self.ema is not None:
            self.ema.module.load_state_dict(state["model_state"])
            # The average's step count goes on from where it was: at 0 the next update would
            # copy the raw weights over the average, and the warm-up would start again.
            self.ema.n_averaged.fill_(int(state.get("extra", {}).get(EMA_UPDATES, 1)))
        self.history = [dict(row) for row in state.get("history", [])]

    def run_pass(self, batches: Iterable[TileBatch | tuple[torch.Tensor, torch.Tensor]], train: bool) -> PassTotals:
        """One pass over a split's batches: with ``train``, augmented tiles and optimiser
        steps; without, the plain tiles, no gradients, and the validation songs' summed
        probabilities (tiles whose song row is -1 count for tile accuracy only)."""
        self.model.train(train)
        self.evaluated_model.train(train)
        self.augment.train(train)
        totals = PassTotals()
        if not train and self.song_rows:
            totals.song_probs = torch.zeros(len(self.song_rows), len(self.labels), dtype=torch.float64,
                                            device=self.device)
            totals.song_targets = torch.full((len(self.song_rows),), -1, dtype=torch.long, device=self.device)
        with contextlib.nullcontext() if train else torch.inference_mode():
            for tiles, targets, *song_index in batches:
                tiles, targets = tiles.to(self.device), targets.to(self.device)
                inputs = tiles_to_input(tiles)
                if train:
                    logits, loss = self._training_step_outputs(inputs, targets)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    if self.ema is not None:
                        self.ema.update_parameters(unwrap_model(self.model))
                else:
                    logits = self.evaluated_model(inputs)
                    loss = self.loss_fn(logits, targets)
                    if song_index:
                        totals.add_songs(song_index[0].to(self.device), logits, targets)
                totals.loss_sum += loss.item() * len(targets)
                totals.hits += float((logits.argmax(1) == targets).sum())
                totals.seen += len(targets)
        return totals

    def _training_step_outputs(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and loss of a training batch: augmented, and with mixup the loss of the blend
        weighted between each tile's genre and its partner's."""
        augmented = self.augment(inputs)
        if self.config.mixup_alpha <= 0:
            logits = self.model(augmented)
            return logits, self.loss_fn(logits, targets)
        mixed, partner, weight = mixup(augmented, self.config.mixup_alpha)
        logits = self.model(mixed)
        return logits, weight * self.loss_fn(logits, targets) + (1 - weight) * self.loss_fn(logits, targets[partner])

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
        self._songs_over_workers(valid)
        seconds = time.perf_counter() - started
        metrics = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": hits / max(seen, 1),
            "valid_loss": v_loss / v_seen if v_seen else float("nan"),
            "valid_accuracy": v_hits / v_seen if v_seen else float("nan"),
            "valid_song_accuracy": valid.song_accuracy(),
            "tiles_per_s": seen / seconds,
            "epoch_seconds": seconds,
        }
        self.history.append(metrics)
        return metrics

    @staticmethod
    def _distributed() -> bool:
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def _sum_over_workers(self, *values: float) -> list[float]:
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self._distributed():
            dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def _songs_over_workers(self, totals: PassTotals) -> None:
        """Each worker saw a share of every song's tiles: sum the probabilities; a song's label
        is the one any worker saw (-1 elsewhere, so the maximum)."""
        import torch.distributed as dist

        if totals.song_probs is not None and totals.song_targets is not None and self._distributed():
            dist.all_reduce(totals.song_probs)
            dist.all_reduce(totals.song_targets, op=dist.ReduceOp.MAX)

    def should_stop(self) -> bool:
        """Early stopping: ``config.patience`` epochs without a better selection score."""
        return early_stop_reached(self.history, selection_metric(self.config), self.config.patience)

    def checkpoint_state(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        """A self-describing checkpoint of the epoch just run (``genre_batch.checkpoint``): the
        evaluated weights as the model, the raw ones in ``extra`` when they differ."""
        extra: dict[str, Any] = {"train_config": self.config.to_dict()}
        if self.ema is not None:
            extra[RAW_WEIGHTS] = unwrap_model(self.model).state_dict()
            extra[EMA_UPDATES] = int(self.ema.n_averaged)
        return checkpoint_state(
            self.evaluated_model, self.optimizer, self.labels, self.features, self.model_config, epoch, metrics,
            self.history, extra=extra,
        )

    def describe(self, metrics: dict[str, float]) -> str:
        return (
            f"epoch {int(metrics['epoch'])}/{self.config.epochs}: loss {metrics['train_loss']:.3f} "
            f"acc {metrics['train_accuracy']:.3f} | valid loss {metrics['valid_loss']:.3f} "
            f"acc {metrics['valid_accuracy']:.3f} song acc {metrics['valid_song_accuracy']:.3f} | "
            f"{metrics['tiles_per_s']:.0f} tiles/s"
        )

