"""Pretrain job (Ray Train): a model family learns from the tiles of every song of the published
ingest, labelled or not, by telling songs apart (``genre_batch.contrastive``, SimCLR's NT-Xent).

Each epoch plans its batches in every worker alike (``contrastive.pair_plan``: every song once,
two of its tiles, never a song twice in a batch); each worker takes its share of each batch,
and the negatives of the loss are every worker's songs (gathered across DDP). The tiles are read
once into the object store and shared by the workers. Rank 0 reports a checkpoint each epoch
(the train job's format, kind ``pretrain``) into ``models/<run>/ray``; rerunning a run resumes
it. The last epoch becomes ``models/<run>/model.pt`` with ``models/<run>/pretrain.json`` beside
it; ``models/LATEST`` (the genre model in force) is not touched.

    python -m pipelines.pretrain --root URI [--model crnn] [--epochs N] [--workers N] [--gpu | --cpu] [--run NAME]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from genre_batch.artifacts import IngestVersion, published_ingest
from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.entry import add_device_flags, positive_int
from genre_batch.errors import GenreBatchError
from genre_batch.layout import RootLayout
from genre_batch.models import MODEL_REGISTRY
from genre_batch.pretraining import RERECORD_DB, TEMPERATURE, VIEW_FRAMES
from genre_batch.storage import check_version_name, join, pyarrow_filesystem, upload_file, write_json
from genre_batch.tables import read_frame
from pipelines.train import CHECKPOINT_FILE

logger = logging.getLogger(__name__)

# Pretraining reads every tile into the object store; beyond this share of it, it says so.
IN_MEMORY_SHARE = 0.5


def song_tile_rows(table: Any) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Tiles per song, and each song's table rows in tile order."""
    song_ids = np.asarray(table.column("song_id").to_numpy(zero_copy_only=False), dtype=object)
    tile_index = table.column("tile_index").to_numpy()
    order = np.lexsort((tile_index, song_ids))
    rows: dict[str, list[int]] = {}
    for row in order:
        rows.setdefault(str(song_ids[row]), []).append(int(row))
    return {song: len(r) for song, r in rows.items()}, {song: np.asarray(r) for song, r in rows.items()}


def pretrain_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's worker function: the library's ``PretrainLoop`` over this worker's share of
    each planned batch, a checkpoint reported by rank 0 every epoch."""
    import ray
    import ray.train
    import torch
    from ray.train.torch import get_device, prepare_model

    from genre_batch.contrastive import pair_plan, shard_of
    from genre_batch.pretraining import PretrainLoop
    from genre_batch.tiles import tiles_from_binary
    from pipelines.train import report_epoch, resume_from_checkpoint

    progress = logging.getLogger("genre_batch.pretrain")
    progress.setLevel(logging.INFO)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    train_config: TrainConfig = config["train_config"]
    features: FeatureConfig = config["features"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads_per_worker", 1))))
    table = ray.get(config["tiles"])
    counts, rows = song_tile_rows(table)
    tiles_column = table.column("tile")
    loop = PretrainLoop(train_config, features, device=get_device(), seed=train_config.seed + rank,
                        wrap_model=prepare_model, rerecord_db=float(config["rerecord_db"]))
    resume_from_checkpoint(loop, rank, progress)

    def tiles_of(picks: list[tuple[str, int]]) -> torch.Tensor:
        blobs = [tiles_column[int(rows[song][index])].as_py() for song, index in picks]
        return torch.from_numpy(np.array(tiles_from_binary(blobs, features)))

    for epoch in range(loop.start_epoch, train_config.epochs):
        plan = shard_of(pair_plan(counts, train_config.batch_size, train_config.seed, epoch), rank, world)
        batches = ((tiles_of([(p.song_id, p.tile_a) for p in batch]), tiles_of([(p.song_id, p.tile_b) for p in batch]))
                   for batch in plan)
        metrics = loop.run_epoch(epoch, batches)
        if rank == 0:
            progress.info("epoch %d/%d: contrastive loss %.3f over batches of %.0f songs | %.0f tiles/s",
                          metrics["epoch"], train_config.epochs, metrics["train_loss"], metrics["songs_per_batch"],
                          metrics["tiles_per_s"])
        report_epoch(loop, epoch, metrics, rank)


def tiles_in_object_store(ingest: IngestVersion) -> Any:
    """Every tile of the version (song_id, tile_index, tile), read once here and put in the
    object store for the workers."""
    import pyarrow as pa
    import ray

    from genre_batch.tables import read_table
    from pipelines._ray import object_store_bytes

    songs = read_frame(ingest.songs_uri, ["n_tiles"])
    needed = int(songs["n_tiles"].sum()) * ingest.feature_config.tile_bytes
    if needed > IN_MEMORY_SHARE * object_store_bytes():
        raise GenreBatchError(
            f"pretraining reads every tile into Ray's object store: {needed / 2**30:.1f} GiB of tiles, more than "
            f"{IN_MEMORY_SHARE:.0%} of its {object_store_bytes() / 2**30:.1f} GiB; give the cluster more object store "
            "memory (ray start --object-store-memory)")
    table = pa.concat_tables([read_table(uri, ["song_id", "tile_index", "tile"]) for uri in ingest.tile_uris])
    return ray.put(table), table.num_rows, len(songs)


@dataclass(frozen=True)
class PretrainReport:
    run: str
    model_uri: str
    epochs: int
    history: list[dict[str, float]]
    seconds: float

    def summary(self) -> str:
        last = self.history[-1] if self.history else {}
        return (f"pretrain {self.run}: {self.epochs} epochs, contrastive loss {last.get('train_loss', float('nan')):.3f}; "
                f"encoder {self.model_uri} (fine-tune it: train --init {self.run})")


def fit_pretrain(layout: RootLayout, ingest: IngestVersion, run: str, config: TrainConfig,
                 rerecord_db: float = RERECORD_DB) -> PretrainReport:
    """Ray Train over every song's tiles; ``config.use_gpu`` is decided (not None)."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from genre_batch.checkpoint import load_checkpoint_state
    from pipelines._ray import cluster_cpus, train_controller_knows_its_ray

    started = time.perf_counter()
    tiles_ref, n_tiles, n_songs = tiles_in_object_store(ingest)
    workers = config.num_workers
    spare = max(1.0, cluster_cpus() - 1.0) if cluster_cpus() > 1 else 1.0
    storage_fs, storage_path = pyarrow_filesystem(layout.model_dir(run))
    logger.info("pretraining %s on %d tiles of %d songs, labelled or not, with %d worker(s)%s", run, n_tiles, n_songs,
                workers, " on GPU" if config.use_gpu else "")
    trainer = TorchTrainer(
        pretrain_loop_per_worker,
        train_loop_config={"train_config": config, "features": ingest.feature_config, "tiles": tiles_ref,
                           "threads_per_worker": max(1, int(spare // workers)), "rerecord_db": rerecord_db},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(config.use_gpu),
                                     resources_per_worker=None if config.use_gpu else {"CPU": min(1.0, spare / workers)}),
        run_config=RunConfig(name="ray", storage_path=storage_path, storage_filesystem=storage_fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    with train_controller_knows_its_ray():
        result = trainer.fit()
    if result.error:
        raise GenreBatchError(f"pretraining failed: {result.error}")
    if result.checkpoint is None:
        raise GenreBatchError(f"pretrain run {run} ended without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        local = os.path.join(directory, CHECKPOINT_FILE)
        history = [dict(row) for row in load_checkpoint_state(local).get("history", [])]
        upload_file(local, layout.model_file(run))
    write_json(join(layout.model_dir(run), "pretrain.json"), {
        "kind": "pretrain", "run": run, "ingest_version": ingest.version, "songs": n_songs, "tiles": n_tiles,
        "feature_config": ingest.feature_config.to_dict(), "train_config": config.to_dict(), "history": history,
        "views": {"crop_frames": VIEW_FRAMES, "rerecord_db": rerecord_db, "temperature": TEMPERATURE},
    })
    return PretrainReport(run, layout.model_file(run), len(history), history, time.perf_counter() - started)


def run_pretrain(root: str, config: TrainConfig = TrainConfig(), run: str | None = None,
                 address: str | None = None, rerecord_db: float = RERECORD_DB) -> PretrainReport:
    from pipelines._ray import ensure_ray, use_gpus

    if run is not None:
        check_version_name(run, "--run")
    ingest = published_ingest(root)
    ingest.check_tiles()
    run = run or f"{config.model.name}-pretrain-{ingest.version}"
    layout = RootLayout(root)
    done = finished_pretrain(layout, run, config.epochs)
    if done is not None:
        logger.info("pretrain run %s already has %d epochs (asked: %d): not trained again", run, done.epochs,
                    config.epochs)
        return done
    ensure_ray(address)
    config = dataclasses.replace(config, use_gpu=use_gpus(config.use_gpu))
    return fit_pretrain(layout, ingest, run, config, rerecord_db)


def finished_pretrain(layout: RootLayout, run: str, epochs: int) -> PretrainReport | None:
    """The run's report when it has trained ``epochs`` epochs already, else None."""
    from genre_batch.storage import exists, read_json

    record = join(layout.model_dir(run), "pretrain.json")
    if not exists(record):
        return None
    history = read_json(record)["history"]
    if len(history) < epochs:
        return None
    return PretrainReport(run, layout.model_file(run), len(history), history, 0.0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--root", required=True, help="storage root (holds the published ingest)")
    parser.add_argument("--model", default=defaults.model.name, choices=sorted(MODEL_REGISTRY),
                        help="model family to pretrain (genre_batch/models/), at its default sizes")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="total epochs of the run")
    parser.add_argument("--workers", type=positive_int, default=1, help="Ray Train workers (DDP; negatives from all)")
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                        help="songs per batch, over all workers (each song's other songs are its negatives)")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of weights, pairs and views")
    parser.add_argument("--rerecord-db", type=float, default=RERECORD_DB, metavar="DB",
                        help="each view through another recording chain of this strength: tilt, band limits, "
                             "noise floor, gain (0: off)")
    add_device_flags(parser, "the pretraining workers")
    parser.add_argument("--run", default=None,
                        help="run name (default: <model>-pretrain-<ingest version>; an existing run resumes)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> PretrainReport:
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                         num_workers=args.workers, use_gpu=args.use_gpu, model=ModelConfig.for_family(args.model))
    if args.rerecord_db < 0:
        raise GenreBatchError(f"--rerecord-db must be at least 0, got {args.rerecord_db}")
    return run_pretrain(args.root, config, run=args.run, address=args.address, rerecord_db=args.rerecord_db)


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("pretrain", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
