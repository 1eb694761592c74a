"""Train job (Ray Train): a TorchTrainer on the published tiles, DDP across workers, CPU or GPU.

Every epoch each worker reports metrics and rank 0 a self-describing checkpoint (weights,
optimiser, label vocabulary, feature and model configs, history) into
``<root>/models/<run>/ray``. Rerunning the same run resumes from its latest checkpoint; a run
that already trained the epochs asked for is not started again.
After training the best checkpoint becomes ``<root>/models/<run>/model.pt``, it is evaluated
on the valid and test songs (tile and song accuracy, per genre, confusion matrix, curves)
and the run is published as ``models/LATEST``. Training runs on GPUs when the cluster has
them (``--cpu`` / ``--gpu`` insist).

    python -m pipelines.train --root URI [--model crnn] [--epochs N] [--workers N] [--gpu | --cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from genre_batch.artifacts import IngestVersion
from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.entry import add_device_flags, positive_int
from genre_batch.errors import GenreBatchError
from genre_batch.evaluation import PredictSongs, evaluate_model, valid_song_accuracy
from genre_batch.layout import RootLayout, shard_uris
from genre_batch.manifests import RunMetrics
from genre_batch.metrics import format_metric
from genre_batch.models import MODEL_REGISTRY
from genre_batch.storage import check_version_name, filesystem, publish, pyarrow_filesystem, read_bytes, upload_file
from genre_batch.tables import read_frame
from genre_batch.training import (
    band_statistics, collate_tiles, finished_run, selection_metric, small_split_blocks, training_inputs,
)

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"


# ---------------------------------------------------------------- per-worker training loop
def tile_batch_collator(features: FeatureConfig, label_ids: dict[str, int], song_rows: dict[str, int]) -> Any:
    """Ray Data collate function: Parquet columns -> (uint8 tiles [B, F, T], class ids [B],
    validation song rows [B])."""
    from ray.data.collate_fn import NumpyBatchCollateFn

    class TileBatchCollator(NumpyBatchCollateFn):
        # Ray types the return as CollatedData, a TypeVar of no generic class: any type is one.
        def __call__(self, batch: dict[str, np.ndarray]) -> tuple[Any, Any, Any]:  # type: ignore[override]
            return collate_tiles(batch, features, label_ids, song_rows)

    return TileBatchCollator()


class ResumableLoop(Protocol):
    start_epoch: int

    def restore(self, state: dict[str, Any]) -> None: ...

    def checkpoint_state(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]: ...


def resume_from_checkpoint(loop: ResumableLoop, rank: int, progress: logging.Logger) -> None:
    """In a Ray Train worker: continue ``loop`` from the run's latest checkpoint, if it has one."""
    import ray.train

    from genre_batch.checkpoint import load_checkpoint_state

    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            loop.restore(load_checkpoint_state(os.path.join(directory, CHECKPOINT_FILE)))
        if rank == 0:
            progress.info("resuming from epoch %d", loop.start_epoch)


def report_epoch(loop: ResumableLoop, epoch: int, metrics: dict[str, float], rank: int) -> None:
    """In a Ray Train worker: report an epoch's metrics, with rank 0's checkpoint of it."""
    import ray.train
    from ray.train import Checkpoint

    from genre_batch.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as directory:
        report_checkpoint = None
        if rank == 0:
            save_checkpoint(loop.checkpoint_state(epoch, metrics), os.path.join(directory, CHECKPOINT_FILE))
            report_checkpoint = Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=report_checkpoint)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's worker function: the library's ``TrainLoop`` fed from this worker's dataset
    shards, a DDP model, a checkpoint reported by rank 0 every epoch."""
    import ray.train
    import torch
    from ray.train.torch import get_device, prepare_model

    from genre_batch.training import TrainLoop

    # Ray Train V2 echoes a worker's print() twice; its log records reach the driver once.
    progress = logging.getLogger("genre_batch.train")
    progress.setLevel(logging.INFO)
    # Ray Train logs two lines per checkpoint at INFO; our epoch line says what users need.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config: TrainConfig = config["train_config"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    loop = TrainLoop(train_config, config["features"], config["labels"], device=get_device(),
                     seed=train_config.seed + rank, wrap_model=prepare_model, valid_songs=config["valid_songs"],
                     band_stats=config.get("band_stats"), init_state=config.get("init_state"))
    resume_from_checkpoint(loop, rank, progress)
    collate = tile_batch_collator(config["features"], loop.label_ids, loop.song_rows)
    # --batch-size is the global batch: each of N workers takes 1/N of it, so N workers make
    # the same optimiser steps as one (DDP averages their gradients) and reach the same quality.
    worker_batch = max(1, train_config.batch_size // world)
    for epoch in range(loop.start_epoch, train_config.epochs):
        train_batches = ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=worker_batch, collate_fn=collate, local_shuffle_buffer_size=train_config.shuffle_buffer_tiles,
            local_shuffle_seed=train_config.seed + epoch * 1000 + rank,
        )
        valid_batches = ray.train.get_dataset_shard("valid").iter_torch_batches(
            batch_size=worker_batch * 2, collate_fn=collate)
        metrics = loop.run_epoch(epoch, train_batches, valid_batches)
        if rank == 0:
            progress.info("%s", loop.describe(metrics))
        report_epoch(loop, epoch, metrics, rank)
        if loop.should_stop():  # every worker has the same summed scores, so all stop together
            if rank == 0:
                progress.info("stopping early: %d epochs without a better %s", train_config.patience,
                              selection_metric(train_config))
            break


# ---------------------------------------------------------------- the job's Ray stages
# Splits whose tiles take less than this share of the object store are read once and kept
# there (Ray Train's advice for small datasets): otherwise every epoch re-runs the Parquet
# read, which on a small catalogue costs more than the epoch itself.
IN_MEMORY_SHARE = 0.2
# Up to this many bytes of tiles the driver reads the cache itself (about three copies at its peak).
DRIVER_READ_BYTES = 128 * 2**20


def tile_datasets(ingest: IngestVersion, labels: list[str], songs: pd.DataFrame) -> dict[str, Any]:
    """Ray Data datasets of the labelled train and valid tiles, cached in memory when small."""
    import ray
    from ray.data.expressions import col

    from pipelines._ray import object_store_bytes

    fs, _ = pyarrow_filesystem(ingest.tile_uris[0])
    paths = [filesystem(uri)[1] for uri in ingest.tile_uris]
    used = songs["split"].isin(["train", "valid"]) & songs["label"].isin(labels)
    used_bytes = int(songs.loc[used, "n_tiles"].sum()) * ingest.feature_config.tile_bytes
    if used_bytes <= DRIVER_READ_BYTES:
        # Small: one pyarrow read here costs milliseconds where a Ray Data read job costs
        # seconds of task start-up per split.
        logger.info("tiles cached in the object store (read by the driver)")
        return {split: ray.data.from_arrow(blocks) for split, blocks in small_split_blocks(fs, paths, labels).items()}
    tiles = ray.data.read_parquet(paths, filesystem=fs, columns=["song_id", "tile_index", "tile", "label", "split"])
    # Arrow-native predicates: no Python call per tile.
    splits = {split: tiles.filter(expr=(col("split") == split) & col("label").is_in(labels))
              for split in ("train", "valid")}
    if used_bytes <= IN_MEMORY_SHARE * object_store_bytes():
        # Built by Ray Data's tasks, so the driver holds none of it (its memory stays flat as the
        # catalogue grows, benchmarks/scale.py); in the fixed order of the driver's read.
        logger.info("tiles cached in the object store (read by Ray Data)")
        return {split: part.sort(["song_id", "tile_index"]).select_columns(["song_id", "tile", "label", "split"])
                .materialize() for split, part in splits.items()}
    logger.info("tiles streamed from storage each epoch")
    return {split: part.select_columns(["song_id", "tile", "label", "split"]) for split, part in splits.items()}


@dataclass(frozen=True)
class FittedModel:
    model_uri: str  # models/<run>/model.pt: the best epoch's checkpoint
    best_epoch: int
    history: list[dict[str, float]]  # every epoch's numbers, resumed ones included


def fit_model(layout: RootLayout, ingest: IngestVersion, songs: pd.DataFrame, labels: list[str], run: str,
              config: TrainConfig) -> FittedModel:
    """Ray Train: ``config.num_workers`` DDP workers over the labelled tiles, resuming ``run``
    if it has checkpoints; the best epoch (on ``config.select_on``: validation song or tile
    accuracy; without validation songs, the last) becomes ``models/<run>/model.pt``. ``config.use_gpu`` is decided (not None)."""
    from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines._ray import cluster_cpus, train_controller_knows_its_ray

    workers = config.num_workers
    # Leave one CPU to the Ray Data tasks that read the tiles: workers that take every CPU
    # starve them and training hangs ("Cluster resources are not enough..."). On a small
    # machine that means fractional CPUs per worker.
    spare = max(1.0, cluster_cpus() - 1.0)
    cpus_per_worker = min(1.0, spare / workers) if cluster_cpus() > 1 else 1.0
    storage_fs, storage_path = pyarrow_filesystem(layout.model_dir(run))
    score = selection_metric(config)
    valid_songs = sorted(songs.loc[(songs["split"] == "valid") & songs["label"].isin(labels), "song_id"])
    band_stats = band_statistics_of(ingest, songs, labels) if config.band_norm else None
    init_state = pretrain_state(layout, config.init, ingest.feature_config, config.model) if config.init else None
    logger.info("training %s on %d genres %s with %d worker(s)%s%s", run, len(labels), labels, workers,
                " on GPU" if config.use_gpu else "", f", from pretrain run {config.init}" if config.init else "")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train_config": config, "features": ingest.feature_config, "labels": labels,
                           "valid_songs": valid_songs, "band_stats": band_stats, "init_state": init_state,
                           "threads_per_worker": max(1, int(spare // workers))},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(config.use_gpu),
                                     resources_per_worker=None if config.use_gpu else {"CPU": cpus_per_worker}),
        run_config=RunConfig(
            name="ray", storage_path=storage_path, storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute=score,
                                               checkpoint_score_order="max"),
        ),
        datasets=tile_datasets(ingest, labels, songs),
        # One worker reads the whole of each split: no split coordinator actors to start.
        dataset_config=DataConfig(datasets_to_split=["train", "valid"] if workers > 1 else []),
    )
    with train_controller_knows_its_ray():
        result = trainer.fit()
    if result.error:
        raise GenreBatchError(f"training failed: {result.error}")
    if result.checkpoint is None or result.metrics is None:
        raise GenreBatchError(f"training run {run} ended without a checkpoint")
    scored = [pair for pair in result.best_checkpoints or [] if np.isfinite(pair[1].get(score, np.nan))]
    best_checkpoint, best_metrics = (max(scored, key=lambda pair: pair[1][score]) if scored
                                     else (result.checkpoint, result.metrics))
    with best_checkpoint.as_directory() as directory:
        upload_file(os.path.join(directory, CHECKPOINT_FILE), layout.model_file(run))
    with result.checkpoint.as_directory() as directory:  # the latest holds every epoch's numbers
        history = _history(os.path.join(directory, CHECKPOINT_FILE))
    return FittedModel(layout.model_file(run), int(best_metrics.get("epoch", 0)), history)


def pretrain_state(layout: RootLayout, run: str, features: FeatureConfig, model: ModelConfig | None = None) -> dict[str, Any]:
    """The checkpoint of pretrain run ``run`` (``models/<run>/model.pt``), checked before any
    worker starts: a pretrain run of these tiles and of ``model``'s family and sizes."""
    from genre_batch.checkpoint import is_pretrain, load_checkpoint_state
    from genre_batch.config import ensure_same_features

    check_version_name(run, "--init")
    state = load_checkpoint_state(read_bytes(layout.model_file(run)))
    if not is_pretrain(state):
        raise GenreBatchError(f"--init {run}: models/{run} is a genre model, not a pretrain run (genre-batch pretrain)")
    ensure_same_features(FeatureConfig.from_dict(state["feature_config"]), features, f"pretrain run {run}")
    stored = ModelConfig.from_dict(state["model_config"])
    if model is not None and (stored.name, stored.channels, stored.hidden) != (model.name, model.channels, model.hidden):
        raise GenreBatchError(f"--init {run}: a pretrained {stored.name} {list(stored.channels)}, but this run trains a "
                              f"{model.name} {list(model.channels)}: give --model {stored.name}")
    return state


def band_statistics_of(ingest: IngestVersion, songs: pd.DataFrame, labels: list[str]) -> tuple[list[float], list[float]]:
    """The labelled training songs' per-band statistics (library, in the driver: a few thousand tiles)."""
    train = songs[(songs["split"] == "train") & songs["label"].isin(labels)]
    shards = shard_uris(ingest.layout.ingest_area, train["tiles_file"])
    return band_statistics(shards, set(train["song_id"]), ingest.feature_config)


def _history(local_checkpoint: str) -> list[dict[str, float]]:
    from genre_batch.checkpoint import load_checkpoint_state

    return [dict(row) for row in load_checkpoint_state(local_checkpoint).get("history", [])]


def evaluate_run(layout: RootLayout, ingest: IngestVersion, songs: pd.DataFrame, labels: list[str], run: str,
                 config: TrainConfig, fitted: FittedModel, predict: PredictSongs) -> RunMetrics:
    """Evaluate a fitted run's best model on the valid and test songs (plots beside it) and
    write ``models/<run>/metrics.json``."""
    evaluation = evaluate_model(predict, songs, labels, layout.model_dir(run), fitted.history)
    metrics = RunMetrics(
        run=run, ingest_version=ingest.version, labels=tuple(labels), best_epoch=fitted.best_epoch,
        history=tuple(fitted.history), feature_config=ingest.feature_config, train_config=config,
        valid=evaluation["valid"], test=evaluation["test"],
    )
    metrics.write(layout.model_metrics(run))
    return metrics


def train_and_evaluate(layout: RootLayout, ingest: IngestVersion, songs: pd.DataFrame, labels: list[str],
                       run: str, config: TrainConfig) -> RunMetrics:
    """Fit ``run``, evaluate it and write its metrics; publishing the run is the caller's choice."""
    from pipelines.inference import songs_predictor

    fitted = fit_model(layout, ingest, songs, labels, run, config)
    predict = songs_predictor(ingest.layout.ingest_area, fitted.model_uri, ingest.feature_config,
                              use_gpu=bool(config.use_gpu))
    return evaluate_run(layout, ingest, songs, labels, run, config, fitted, predict)


def validation_song_accuracy(ingest: IngestVersion, model_uri: str, use_gpu: bool = False,
                             songs: pd.DataFrame | None = None) -> float:
    """Song accuracy of a trained model on the validation songs of this ingest version
    (``songs``: its songs table, when the caller has read it already)."""
    from genre_batch.checkpoint import load_model_bundle
    from pipelines.inference import songs_predictor

    labels = load_model_bundle(read_bytes(model_uri)).labels
    predict = songs_predictor(ingest.layout.ingest_area, model_uri, ingest.feature_config, use_gpu=use_gpu)
    return valid_song_accuracy(predict, read_frame(ingest.songs_uri) if songs is None else songs, labels)


# ---------------------------------------------------------------- the job
@dataclass(frozen=True)
class TrainReport:
    model_uri: str
    metrics: RunMetrics
    seconds: float

    @property
    def run(self) -> str:
        return self.metrics.run

    @property
    def epochs(self) -> int:
        return self.metrics.epochs

    @property
    def best_epoch(self) -> int:
        return self.metrics.best_epoch

    def summary(self) -> str:
        valid, test = self.metrics.valid, self.metrics.test
        return (
            f"train {self.run}: {self.epochs} epochs, best epoch {self.best_epoch}; "
            f"valid song accuracy {format_metric(valid.song_accuracy)}, "
            f"test song accuracy {format_metric(test.song_accuracy)} "
            f"(tile {format_metric(test.tile_accuracy)}); model {self.model_uri}"
        )


def run_train(root: str, train_config: TrainConfig = TrainConfig(), run: str | None = None,
              address: str | None = None) -> TrainReport:
    """Check the published tiles, train (or find finished) the run, evaluate it, publish it."""
    from pipelines._ray import ensure_ray, use_gpus

    started = time.perf_counter()
    if run is not None:
        check_version_name(run, "--run")  # before training, not at publishing
    inputs = training_inputs(root)
    layout, ingest, songs, labels = inputs.layout, inputs.ingest, inputs.songs, inputs.labels
    # The default run name depends on the model and the ingest version only, so rerunning
    # the same command resumes that run instead of starting over.
    run = run or (f"{train_config.model.name}-from-{train_config.init}-{ingest.version}" if train_config.init
                  else f"{train_config.model.name}-{ingest.version}")
    metrics = finished_run(layout, run, ingest.version, labels, train_config.epochs)
    if metrics is None:
        if not (songs["split"].eq("valid") & songs["label"].isin(labels)).any():
            logger.warning("no labelled validation songs: the last epoch's model is kept (no best epoch to "
                           "choose) and `index` cannot tune the 'unknown' threshold; give some artists "
                           "split=valid in a labels CSV, or label more artists")
        ensure_ray(address)
        # --gpu on a machine without one fails here, not in a silent wait; neither flag: GPUs if any.
        train_config = dataclasses.replace(train_config, use_gpu=use_gpus(train_config.use_gpu))
        metrics = train_and_evaluate(layout, ingest, songs, labels, run, train_config)
    publish(layout.models_area, run)
    return TrainReport(model_uri=layout.model_file(run), metrics=metrics, seconds=time.perf_counter() - started)


# ---------------------------------------------------------------- command line
def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a training recipe, shared by ``train`` and ``compare`` (``recipe_from_args``)."""
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs,
                        help="total epochs of a run (a run that has them already is not trained again)")
    parser.add_argument("--workers", type=positive_int, default=defaults.num_workers, help="Ray Train workers (DDP)")
    add_device_flags(parser, "the training workers")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                        help="tiles per optimiser step, split across the workers")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of weights, shuffling, masks")
    parser.add_argument("--select-on", choices=["song", "tile"], default=defaults.select_on,
                        help="the best epoch (model.pt) is the one with the best validation song or tile accuracy")
    parser.add_argument("--patience", type=int, default=defaults.patience,
                        help="stop after this many epochs without a better validation score (0: never)")
    augment = parser.add_argument_group("augmentation of training tiles (each off at 0)")
    augment.add_argument("--mixup", type=float, default=defaults.mixup_alpha, help="mixup's Beta(alpha, alpha)")
    augment.add_argument("--time-stretch", type=float, default=defaults.time_stretch,
                         help="stretch time by up to this share, either way")
    augment.add_argument("--crop-frames", type=int, default=defaults.crop_frames,
                         help="train on random windows of this many frames of each tile")
    augment.add_argument("--freq-shift", type=int, default=defaults.freq_shift, help="shift up to this many mel bins")
    augment.add_argument("--freq-mask", type=int, default=defaults.freq_mask, help="SpecAugment frequency mask, mel bins")
    augment.add_argument("--time-mask", type=int, default=defaults.time_mask, help="SpecAugment time mask, frames")
    parser.add_argument("--ema", type=float, default=defaults.ema_decay,
                        help="validate and keep a moving average of the weights, this decay per step (0: off)")
    parser.add_argument("--band-norm", action="store_true",
                        help="normalise the input per mel band with the training tiles' statistics (kept in the model)")
    parser.add_argument("--init", default=defaults.init, metavar="RUN",
                        help="start from the encoder of this pretrain run (genre-batch pretrain), with a new genre head "
                             "(compare: RUN[,RUN...], each adds its family's rows from pretraining)")
    regularise = parser.add_argument_group("regularisation and inference")
    regularise.add_argument("--dropout", type=float, default=ModelConfig().dropout,
                            help="dropout between the embedding and the genre head")
    regularise.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    regularise.add_argument("--windows", type=positive_int, default=ModelConfig().eval_windows,
                            help="at inference, read each tile as this many overlapping windows and average them "
                                 "(kept in the model: validation, index and classify all use it; 1: off)")
    regularise.add_argument("--window-frames", type=positive_int, default=ModelConfig().eval_window_frames,
                            help="frames per inference window (with --windows; match --crop-frames when set)")


def recipe_from_args(args: argparse.Namespace, model: ModelConfig | None = None) -> TrainConfig:
    """The recipe the flags say, for ``model`` (default: the default family)."""
    model = dataclasses.replace(model or TrainConfig().model, dropout=args.dropout, eval_windows=args.windows,
                                eval_window_frames=args.window_frames)
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, weight_decay=args.weight_decay,
        seed=args.seed, num_workers=args.workers, use_gpu=args.use_gpu, model=model, select_on=args.select_on,
        patience=args.patience, mixup_alpha=args.mixup, time_stretch=args.time_stretch,
        crop_frames=args.crop_frames, freq_shift=args.freq_shift, freq_mask=args.freq_mask, time_mask=args.time_mask,
        ema_decay=args.ema, band_norm=args.band_norm, init=args.init,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="storage root (holds the published ingest)")
    parser.add_argument("--model", default=TrainConfig().model.name, choices=sorted(MODEL_REGISTRY),
                        help="model family (genre_batch/models/: cnn, crnn, rnn, resnet, musicnn), at its default sizes")
    add_recipe_arguments(parser)
    parser.add_argument("--run", default=None,
                        help="run name (default: <model>-<ingest version>; an existing run resumes)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> TrainReport:
    config = recipe_from_args(args, ModelConfig.for_family(args.model))
    return run_train(args.root, config, run=args.run, address=args.address)


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("train", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
