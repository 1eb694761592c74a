"""Train job (Ray Train): a TorchTrainer on the published tiles, DDP across workers, CPU or GPU.

Every epoch each worker reports metrics and rank 0 a self-describing checkpoint (weights,
optimiser, label vocabulary, feature and model configs, history) into
``<root>/models/<run>/ray``. Rerunning the same run resumes from its latest checkpoint; a run
that already trained the epochs asked for is not started again.
After training the best checkpoint becomes ``<root>/models/<run>/model.pt``, it is evaluated
on the valid and test songs (tile and song accuracy, per genre, confusion matrix, curves)
and the run is published as ``models/LATEST``.

    python -m pipelines.train --root URI [--model cnn] [--epochs N] [--workers N] [--gpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from genre_batch.artifacts import IngestVersion, code_version, published_ingest
from genre_batch.cli import positive_int
from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.errors import GenreBatchError
from genre_batch.layout import RootLayout
from genre_batch.metrics import format_metric
from genre_batch.storage import (
    check_writable, exists, filesystem, publish, pyarrow_filesystem, read_json, upload_file, write_json,
)
from genre_batch.tables import read_frame

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "model.pt"


# ---------------------------------------------------------------- per-worker training loop
def tile_batch_collator(features: FeatureConfig, label_ids: dict[str, int]) -> Any:
    """Ray Data collate function: Parquet columns -> (uint8 tiles [B, F, T], class ids [B])."""
    from ray.data.collate_fn import NumpyBatchCollateFn

    class TileBatchCollator(NumpyBatchCollateFn):
        # Ray types the return as CollatedData, a TypeVar of no generic class: any type is one.
        def __call__(self, batch: dict[str, np.ndarray]) -> tuple[Any, Any]:  # type: ignore[override]
            return collate_tiles(batch, features, label_ids)

    return TileBatchCollator()


def collate_tiles(batch: dict[str, np.ndarray], features: FeatureConfig, label_ids: dict[str, int]) -> tuple[Any, Any]:
    import torch

    from genre_batch.tiles import tiles_from_binary

    tiles = torch.from_numpy(tiles_from_binary(batch["tile"], features).copy())
    targets = torch.tensor([label_ids[label] for label in batch["label"]], dtype=torch.long)
    return tiles, targets


def cosine_lr(base: float, epoch: int, epochs: int, floor: float = 0.05) -> float:
    """Learning rate of an epoch: cosine from ``base`` down to ``floor * base`` at the last epoch."""
    progress = epoch / max(1, epochs - 1)
    return float(base * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * progress))))


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train import Checkpoint
    from ray.train.torch import get_device, prepare_model

    from genre_batch.checkpoint import (
        checkpoint_state, ensure_resumable, load_checkpoint_state, restore_training_state, save_checkpoint,
    )
    from genre_batch.models import TileAugment, build_model, tiles_to_input

    # Ray Train V2 echoes a worker's print() twice; its log records reach the driver once.
    progress = logging.getLogger("genre_batch.train")
    progress.setLevel(logging.INFO)
    # Ray Train logs two lines per checkpoint at INFO; our epoch line says what users need.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config: TrainConfig = config["train_config"]
    features: FeatureConfig = config["features"]
    labels: list[str] = config["labels"]
    label_ids = {label: i for i, label in enumerate(labels)}
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(train_config.seed + rank)
    np.random.seed(train_config.seed + rank)
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))

    device = get_device()
    model = prepare_model(build_model(train_config.model, len(labels)))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
    )
    augment = TileAugment(train_config.freq_mask, train_config.time_mask, top_db=features.top_db).to(device)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=train_config.label_smoothing)
    start_epoch, history = 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint_state(os.path.join(directory, CHECKPOINT_FILE))
        ensure_resumable(state, labels, features)
        start_epoch = restore_training_state(state, model, optimizer)
        history = list(state.get("history", []))
        if rank == 0:
            progress.info("resuming from epoch %d", start_epoch)
    collate = tile_batch_collator(features, label_ids)
    # --batch-size is the global batch: each of N workers takes 1/N of it, so N workers make
    # the same optimiser steps as one (DDP averages their gradients) and reach the same quality.
    worker_batch = max(1, train_config.batch_size // world)

    def reduce(*values: float) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        if world > 1 and dist.is_initialized():
            dist.all_reduce(tensor)
        return tensor.tolist()

    for epoch in range(start_epoch, train_config.epochs):
        started = time.perf_counter()
        # Cosine decay, a pure function of the epoch: a resumed run continues the same curve.
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(train_config.learning_rate, epoch, train_config.epochs)
        model.train()
        augment.train()
        loss_sum = hits = seen = 0.0
        for tiles, targets in ray.train.get_dataset_shard("train").iter_torch_batches(
            batch_size=worker_batch,
            collate_fn=collate,
            local_shuffle_buffer_size=train_config.shuffle_buffer_tiles,
            local_shuffle_seed=train_config.seed + epoch * 1000 + rank,
        ):
            tiles, targets = tiles.to(device), targets.to(device)
            logits = model(augment(tiles_to_input(tiles)))
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(targets)
            hits += float((logits.argmax(1) == targets).sum())
            seen += len(targets)
        model.eval()
        v_loss = v_hits = v_seen = 0.0
        with torch.inference_mode():
            for tiles, targets in ray.train.get_dataset_shard("valid").iter_torch_batches(
                batch_size=worker_batch * 2, collate_fn=collate
            ):
                tiles, targets = tiles.to(device), targets.to(device)
                logits = model(tiles_to_input(tiles))
                v_loss += loss_fn(logits, targets).item() * len(targets)
                v_hits += float((logits.argmax(1) == targets).sum())
                v_seen += len(targets)
        loss_sum, hits, seen, v_loss, v_hits, v_seen = reduce(loss_sum, hits, seen, v_loss, v_hits, v_seen)
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
        history.append(metrics)
        if rank == 0:
            progress.info(
                "epoch %d/%d: loss %.3f acc %.3f | valid loss %.3f acc %.3f | %.0f tiles/s",
                epoch + 1, train_config.epochs, metrics["train_loss"], metrics["train_accuracy"],
                metrics["valid_loss"], metrics["valid_accuracy"], metrics["tiles_per_s"],
            )
        with tempfile.TemporaryDirectory() as directory:
            report_checkpoint = None
            if rank == 0:
                state = checkpoint_state(
                    model, optimizer, labels, features, train_config.model, epoch, metrics, history,
                    extra={"train_config": _train_config_dict(train_config)},
                )
                save_checkpoint(state, os.path.join(directory, CHECKPOINT_FILE))
                report_checkpoint = Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=report_checkpoint)


def _train_config_dict(config: TrainConfig) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out["model"] = config.model.to_dict()
    return out


# ---------------------------------------------------------------- driver
@dataclass(frozen=True)
class TrainReport:
    run: str
    model_uri: str
    epochs: int
    best_epoch: int
    metrics: dict[str, Any]
    seconds: float

    def summary(self) -> str:
        test = self.metrics.get("test", {})
        valid = self.metrics.get("valid", {})
        return (
            f"train {self.run}: {self.epochs} epochs, best epoch {self.best_epoch}; "
            f"valid song accuracy {format_metric(valid.get('song_accuracy'))}, "
            f"test song accuracy {format_metric(test.get('song_accuracy'))} "
            f"(tile {format_metric(test.get('tile_accuracy'))}); model {self.model_uri}"
        )


def label_vocabulary(songs: pd.DataFrame) -> list[str]:
    """Genres present among the labelled training songs, sorted: class id = position."""
    train = songs[(songs["split"] == "train") & songs["label"].notna()]
    labels = sorted(train["label"].unique().tolist())
    if len(labels) < 2:
        raise GenreBatchError(
            f"training needs at least 2 genres among labelled training songs, found {labels or 'none'}"
        )
    return labels


# Splits whose tiles take less than this share of the object store are read once and kept
# there (Ray Train's advice for small datasets): otherwise every epoch re-runs the Parquet
# read, which on a small catalogue costs more than the epoch itself.
IN_MEMORY_SHARE = 0.2
# Blocks of the in-memory splits: ~64 MiB of 256x256 uint8 tiles, so that the workers'
# shards and the shuffle buffer work on several blocks rather than one.
IN_MEMORY_BLOCK_TILES = 1024


def tile_datasets(ingest: IngestVersion, labels: list[str], songs: pd.DataFrame) -> dict[str, Any]:
    """Ray Data datasets of the labelled train and valid tiles, cached in memory when small."""
    import ray
    from ray.data.expressions import col

    from pipelines._ray import object_store_bytes

    fs, _ = pyarrow_filesystem(ingest.tile_uris[0])
    paths = [filesystem(uri)[1] for uri in ingest.tile_uris]
    used = songs["split"].isin(["train", "valid"]) & songs["label"].isin(labels)
    in_memory = int(songs.loc[used, "n_tiles"].sum()) * ingest.feature_config.tile_bytes <= (
        IN_MEMORY_SHARE * object_store_bytes()
    )
    if in_memory:
        # Small enough for the object store, so small enough for one pyarrow read here: that
        # costs milliseconds where a Ray Data read job costs seconds of task start-up per split.
        logger.info("tiles cached in the object store")
        return {split: ray.data.from_arrow(blocks) for split, blocks in small_split_blocks(fs, paths, labels).items()}
    tiles = ray.data.read_parquet(paths, filesystem=fs, columns=["tile", "label", "split"])
    logger.info("tiles streamed from storage each epoch")
    # Arrow-native predicates: no Python call per tile.
    return {split: tiles.filter(expr=(col("split") == split) & col("label").is_in(labels))
            for split in ("train", "valid")}


def small_split_blocks(fs: Any, paths: list[str], labels: list[str]) -> dict[str, list[Any]]:
    """The labelled train and valid tiles of these shards as Arrow tables of at most
    ``IN_MEMORY_BLOCK_TILES`` rows each (at least one per split, maybe empty), in song id and
    tile order."""
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
        out[split] = [part.slice(start, IN_MEMORY_BLOCK_TILES)
                      for start in range(0, max(part.num_rows, 1), IN_MEMORY_BLOCK_TILES)]
    return out


def finished_run(layout: RootLayout, run: str, ingest_version: str, labels: Sequence[str],
                 epochs: int) -> dict[str, Any] | None:
    """The metrics of ``run`` when it already trained at least ``epochs`` epochs on this ingest
    and these genres (a rerun would resume it and train nothing), else None."""
    if not (exists(layout.model_metrics(run)) and exists(layout.model_file(run))):
        return None
    metrics = read_json(layout.model_metrics(run))
    done = len(metrics.get("history", []))
    if metrics.get("ingest_version") != ingest_version or list(metrics.get("labels", [])) != list(labels):
        return None  # other tiles or genres: the Ray path resumes, or says why it cannot
    if done < epochs:
        return None
    how = f"--epochs N with N > {done} continues it, --run NAME starts a new run"
    if done > epochs:
        logger.warning("run %s already trained %d epochs, more than --epochs %d: nothing to train (%s)",
                       run, done, epochs, how)
    else:
        logger.info("run %s already trained its %d epochs: nothing to train (%s)", run, done, how)
    return metrics


def run_train(
    root: str,
    train_config: TrainConfig = TrainConfig(),
    run: str | None = None,
    address: str | None = None,
    publish_model: bool = True,
) -> TrainReport:
    from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines._ray import cluster_cpus, ensure_ray, use_gpus

    started = time.perf_counter()
    check_writable(root)
    ingest = published_ingest(root)
    features = ingest.feature_config
    songs = read_frame(ingest.songs_uri)
    labels = label_vocabulary(songs)
    layout = RootLayout(root)
    # The default run name depends on the model and the ingest version only, so rerunning
    # the same command resumes that run instead of starting over.
    run = run or f"{train_config.model.name}-{ingest.version}"
    finished = finished_run(layout, run, ingest.version, labels, train_config.epochs)
    if finished is not None:
        if publish_model:
            publish(layout.models_area, run)
        return TrainReport(run=run, model_uri=layout.model_file(run), epochs=len(finished["history"]),
                           best_epoch=int(finished["best_epoch"]), metrics=finished,
                           seconds=time.perf_counter() - started)
    if not (songs["split"].eq("valid") & songs["label"].isin(labels)).any():
        logger.warning("no labelled validation songs: the last epoch's model is kept (no best epoch to "
                       "choose) and `index` cannot tune the 'unknown' threshold; give some artists "
                       "split=valid in a labels CSV, or label more artists")
    ensure_ray(address)
    use_gpus(train_config.use_gpu)  # --gpu on a machine without one fails here, not in a silent wait
    workers = train_config.num_workers  # >= 1: TrainConfig checks it
    # Leave one CPU to the Ray Data tasks that read the tiles: workers that take every CPU
    # starve them and training hangs ("Cluster resources are not enough..."). On a small
    # machine that means fractional CPUs per worker.
    spare = max(1.0, cluster_cpus() - 1.0)
    cpus_per_worker = min(1.0, spare / workers) if cluster_cpus() > 1 else 1.0
    threads = max(1, int(spare // workers))
    storage_fs, storage_path = pyarrow_filesystem(layout.model_dir(run))
    logger.info("training %s on %d genres %s with %d worker(s)%s", run, len(labels), labels, workers,
                " on GPU" if train_config.use_gpu else "")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train_config": train_config,
            "features": features,
            "labels": labels,
            "threads_per_worker": threads,
        },
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=train_config.use_gpu,
            resources_per_worker=None if train_config.use_gpu else {"CPU": cpus_per_worker},
        ),
        run_config=RunConfig(
            name="ray",
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="valid_accuracy", checkpoint_score_order="max"
            ),
        ),
        datasets=tile_datasets(ingest, labels, songs),
        # One worker reads the whole of each split: no split coordinator actors to start.
        dataset_config=DataConfig(datasets_to_split=["train", "valid"] if workers > 1 else []),
    )
    result = trainer.fit()
    if result.error:
        raise GenreBatchError(f"training failed: {result.error}")
    if result.checkpoint is None or result.metrics is None:
        raise GenreBatchError(f"training run {run} ended without a checkpoint")
    # The best epoch by validation accuracy; without validation tiles (no score), the last.
    scored = [pair for pair in result.best_checkpoints or []
              if np.isfinite(pair[1].get("valid_accuracy", np.nan))]
    best_checkpoint, best_metrics = (max(scored, key=lambda pair: pair[1]["valid_accuracy"]) if scored
                                     else (result.checkpoint, result.metrics))
    model_uri = layout.model_file(run)
    with best_checkpoint.as_directory() as directory:
        upload_file(os.path.join(directory, CHECKPOINT_FILE), model_uri)
    with result.checkpoint.as_directory() as directory:  # the latest holds every epoch's numbers
        history = _history(os.path.join(directory, CHECKPOINT_FILE))
    metrics = evaluate_model(
        ingest, songs, labels, model_uri, layout.model_dir(run), history, train_config.use_gpu
    )
    metrics.update(
        {
            "run": run,
            "ingest_version": ingest.version,
            "labels": labels,
            "best_epoch": int(best_metrics.get("epoch", 0)),
            "history": history,
            "feature_config": features.to_dict(),
            "train_config": _train_config_dict(train_config),
            "code_version": code_version(),
        }
    )
    write_json(layout.model_metrics(run), metrics)
    if publish_model:
        publish(layout.models_area, run)
    return TrainReport(
        run=run,
        model_uri=model_uri,
        epochs=len(history),
        best_epoch=metrics["best_epoch"],
        metrics=metrics,
        seconds=time.perf_counter() - started,
    )


def score_songs(
    ingest: IngestVersion, songs: pd.DataFrame, labels: Sequence[str], model_uri: str,
    splits: tuple[str, ...], use_gpu: bool,
) -> pd.DataFrame:
    """The songs of these splits with the model's pooled outputs, ``predicted`` and ``confidence``."""
    from genre_batch.evaluation import add_predicted
    from pipelines.inference import predict_songs_of

    chosen = songs[songs["split"].isin(list(splits))]
    pooled = predict_songs_of(chosen, ingest.layout.ingest_area, model_uri, ingest.feature_config,
                              use_gpu=use_gpu, splits=splits)
    return add_predicted(pooled.merge(chosen[["song_id", "label", "split"]], on="song_id"), list(labels))


def validation_song_accuracy(ingest: IngestVersion, model_uri: str, use_gpu: bool = False) -> float:
    """Song accuracy of a trained model on the validation songs of this ingest version."""
    from genre_batch.checkpoint import load_model_bundle
    from genre_batch.evaluation import split_metrics
    from genre_batch.storage import read_bytes

    labels = load_model_bundle(read_bytes(model_uri)).labels
    frame = score_songs(ingest, read_frame(ingest.songs_uri), labels, model_uri, ("valid",), use_gpu)
    return float(split_metrics(frame, labels)["song_accuracy"])


def evaluate_model(
    ingest: IngestVersion,
    songs: pd.DataFrame,
    labels: list[str],
    model_uri: str,
    out_dir: str,
    history: list[dict[str, float]],
    use_gpu: bool,
) -> dict[str, Any]:
    """Valid/test tile and song accuracy of a trained model, with its plots beside it."""
    from genre_batch import plots
    from genre_batch.evaluation import save_plots, split_metrics

    frame = score_songs(ingest, songs, labels, model_uri, ("valid", "test"), use_gpu)
    metrics: dict[str, Any] = {
        split: split_metrics(frame[frame["split"] == split], labels) for split in ("valid", "test")
    }
    shown = "test" if metrics["test"]["songs"] else "valid"
    save_plots(
        out_dir,
        {
            "training_curves.png": lambda path: plots.plot_training_curves(history, path),
            f"confusion_{shown}.png": lambda path: plots.plot_confusion_matrix(
                np.array(metrics[shown]["confusion"]),
                labels,
                metrics[shown]["confusion_columns"],
                path,
                title=f"Confusion matrix, {shown} songs",
            ),
        },
    )
    return metrics


def _history(local_checkpoint: str) -> list[dict[str, float]]:
    from genre_batch.checkpoint import load_checkpoint_state

    return [dict(row) for row in load_checkpoint_state(local_checkpoint).get("history", [])]


# ---------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--root", required=True, help="storage root (holds the published ingest)")
    parser.add_argument("--model", default=defaults.model.name, choices=["cnn"], help="model architecture")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs,
                        help="total epochs of the run (a run that has them already is not trained again)")
    parser.add_argument("--workers", type=positive_int, default=defaults.num_workers, help="Ray Train workers (DDP)")
    parser.add_argument("--gpu", action="store_true", help="one GPU per worker")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                        help="tiles per optimiser step, split across the workers")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of weights, shuffling, masks")
    parser.add_argument("--run", default=None,
                        help="run name (default: <model>-<ingest version>; an existing run resumes)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> TrainReport:
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        num_workers=args.workers,
        use_gpu=args.gpu,
        model=ModelConfig(name=args.model),
    )
    return run_train(args.root, config, run=args.run, address=args.address)


def main(argv: list[str] | None = None) -> int:
    from pipelines._entry import job_main

    return job_main("train", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
