"""Nightly job: bring tiles, embeddings, predictions and the Annoy index up to date with a
grown catalogue, paying only for what is new.

1. List the catalogue and compare it with the published songs/errors tables
   (genre_batch.incremental): new, changed (size/mtime/ETag, confirmed by content hash), removed,
   unchanged files; earlier failures are retried only when they changed (or --retry-failed).
2. Decode and tile only new and changed files (the ingest job's Ray Data stage, or in this
   process for one task's worth of files). Unchanged songs keep their tile shards; a shard
   that also held removed/replaced songs is copied without them. A new ingest version lists
   every shard in force and is published atomically.
3. Optionally (--retrain) train a new model on the grown labelled set (the train job's
   stage); it is published only if its validation song accuracy is not worse than the
   current model's.
4. Embed new and changed songs with the published model (every song when the model changed
   since the last index), reuse the stored embeddings of the others, rebuild Annoy from the
   whole table (Annoy cannot add items) and publish a new index version.
On a root with nothing published (the first night of a schedule) it runs the whole chain:
every file is ingested, a first model is trained when there are labels (else a pretrain run
learns from the songs alone, and indexes them: similar songs, genres unknown), and songs are
indexed. ``--retrain --pretrain`` pretrains on the grown catalogue before training the candidate.

5. Keep the newest --keep versions of ingest and index (and whatever they reference), remove
   the unpublished versions that dead runs left more than a day ago (as `genre-batch gc`); write a
   run report: runs/<run_id>.json and a row in the runs table (runs/*.parquet).

A second run with no catalogue change decodes nothing and publishes nothing: LATEST pointers
stay where they are and the report says so.

    python -m pipelines.nightly --catalogue URI --root URI [--retry-failed] [--retrain]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from genre_batch.artifacts import IngestVersion, publish_ingest_version, published_index, published_ingest, published_model_run
from genre_batch.catalogue import CatalogueFile, list_catalogue
from genre_batch.config import FeatureConfig, IndexConfig, IngestConfig, SplitConfig, TrainConfig
from genre_batch.entry import add_device_flags, positive_int
from genre_batch.errors import GenreBatchError, NotPublishedError
from genre_batch.evaluation import replaces_current
from genre_batch.incremental import carry_over_songs, content_hash_of, diff_catalogue, kept_error_rows
from genre_batch.tagging import retag_hashes
from genre_batch.indexing import IndexDelta, ModelInUse, index_delta, pooled_from_predictions, publish_index_version
from genre_batch.ingest import ingest_group
from genre_batch.layout import RootLayout
from genre_batch.retention import collect_garbage, prune
from genre_batch.runs import NightlyReport, Stopwatch, write_report
from genre_batch.storage import check_writable, new_version, publish
from genre_batch.tables import read_frame
from genre_batch.training import label_vocabulary
from pipelines.inference import LOCAL_MAX_TILES

logger = logging.getLogger(__name__)

# Unpublished versions of dead runs older than this go (a run still writing is younger).
GC_GRACE = dt.timedelta(hours=24)
RETRAIN_RULE = "published if its validation song accuracy >= the current model's, both scored on this ingest's validation songs"


@dataclass(frozen=True)
class Cluster:
    """Ray, joined only when a stage needs it (a run with nothing new starts no Ray at all)."""

    address: str | None
    asked_gpu: bool | None  # --gpu / --cpu / neither

    def start(self) -> None:
        from pipelines._ray import ensure_ray

        ensure_ray(self.address)

    def use_gpu(self) -> bool:
        """GPUs as asked; neither flag: when the cluster has any (starts Ray to know)."""
        from pipelines._ray import use_gpus

        self.start()
        return use_gpus(self.asked_gpu)


def ingest_new_files(layout: RootLayout, previous: IngestVersion, version: str, files: list[CatalogueFile],
                     labels: str, config: IngestConfig, cluster: Cluster) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decode and tile these files into ``version``, with the previous version's configs."""
    from pipelines.ingest import ingest_stage

    features, splits = previous.feature_config, previous.manifest.split_config
    if not files:
        return [], []
    if len(files) <= config.files_per_task:
        # One task's worth of files: decode here rather than start Ray workers for it.
        return ingest_group(files, layout.tiles_dir(version), layout.tiles_prefix(version), features, splits,
                            labels == "tags", config.max_duration_s)
    cluster.start()
    return ingest_stage(files, layout, version, features, splits, labels == "tags", config)


def update_ingest(layout: RootLayout, previous: IngestVersion, catalogue: str, labels: str, retry_failed: bool,
                  config: IngestConfig, cluster: Cluster, report: NightlyReport, clock: Stopwatch) -> IngestVersion:
    """Steps 1-2: the ingest version in force after this run (the previous one if nothing changed)."""
    listing = list_catalogue(catalogue, labels, strict_labels=False)  # removed files may stay in a CSV
    songs, errors = read_frame(previous.songs_uri), read_frame(previous.errors_uri)
    diff = diff_catalogue(listing, songs, errors, content_hash_of, retry_failed=retry_failed,
                          retagged=retag_hashes(layout))
    clock.lap("list_and_compare")
    logger.info("catalogue diff: %s", diff.counts())
    if diff.is_empty:
        report.counts = {**diff.counts(), "failed": len(diff.still_failed)}
        return previous
    version = new_version()
    new_songs, new_errors = ingest_new_files(layout, previous, version, diff.to_ingest, labels, config, cluster)
    clock.lap("ingest")
    kept_errors = kept_error_rows(errors, diff)
    ingest = publish_ingest_version(
        layout, version, catalogue=catalogue, labels=labels, features=previous.feature_config,
        splits=previous.manifest.split_config, songs=carry_over_songs(layout, songs, diff, version) + new_songs,
        errors=kept_errors + new_errors, extra_counts={f"nightly_{k}": v for k, v in diff.counts().items()},
        previous=previous.version, known_sums=previous.manifest.checksums,
    )
    report.published.append("ingest")
    report.tiles_written = int(sum(song["n_tiles"] for song in new_songs))
    report.counts = {**diff.counts(), "failed": len(new_errors) + len(kept_errors)}
    clock.lap("publish_ingest")
    return ingest


def bootstrap_ingest(layout: RootLayout, catalogue: str, labels: str, config: IngestConfig, cluster: Cluster,
                     report: NightlyReport, clock: Stopwatch) -> IngestVersion:
    """Steps 1-2 on a root with nothing published: every file is new (the ingest job's stage,
    default features and split)."""
    from pipelines.ingest import ingest_stage

    files = list_catalogue(catalogue, labels)
    if not files:
        raise GenreBatchError(f"no audio files found under {catalogue}")
    logger.info("nothing published under %s yet: ingesting all %d files of %s", layout.root, len(files), catalogue)
    version = new_version()
    cluster.start()
    features, splits = FeatureConfig(), SplitConfig()
    songs, errors = ingest_stage(files, layout, version, features, splits, labels == "tags", config)
    clock.lap("ingest")
    report.counts = {"new": len(files), "changed": 0, "removed": 0, "failed": len(errors), "unchanged": 0}
    report.tiles_written = int(sum(song["n_tiles"] for song in songs))
    ingest = publish_ingest_version(layout, version, catalogue=catalogue, labels=labels, features=features,
                                    splits=splits, songs=songs, errors=errors, extra_counts={"files": len(files)},
                                    require_songs=True)
    report.published.append("ingest")
    return ingest


def first_model_plan(layout: RootLayout, songs: pd.DataFrame) -> str:
    """What a root without a model in force learns first: ``train`` when two genres or more are
    labelled among the training songs, else ``pretrain`` (similar songs from the songs alone);
    ``none`` when a genre model is published or an index is (its run stays in force)."""
    try:
        published_model_run(layout.root)
        return "none"
    except NotPublishedError:
        pass
    if songs[(songs["split"] == "train") & songs["label"].notna()]["label"].nunique() >= 2:
        return "train"
    try:
        published_index(layout.root)
        return "none"
    except NotPublishedError:
        logger.warning("no model published and fewer than two labelled genres among the training songs: pretraining "
                       "on the songs alone, so they can be searched for similar songs (genres stay unknown)")
        return "pretrain"


def pretrain_on(layout: RootLayout, ingest: IngestVersion, report: NightlyReport, train_config: TrainConfig,
                cluster: Cluster) -> str:
    """Pretrain on every song of the grown catalogue (the pretrain job's stage); returns its run."""
    from pipelines.pretrain import fit_pretrain

    run = f"{train_config.model.name}-pretrain-{ingest.version}-nightly-{report.run_id}"
    fit_pretrain(layout, ingest, run, dataclasses.replace(train_config, use_gpu=cluster.use_gpu(), init=""))
    report.published.append("pretrain")
    return run


def retrain_if_better(layout: RootLayout, ingest: IngestVersion, songs: pd.DataFrame, report: NightlyReport,
                      train_config: TrainConfig, cluster: Cluster, pretrain_first: bool = False) -> None:
    """Step 3: train on the grown set (``songs``: its songs table), with ``pretrain_first`` from a
    pretrain run on every song of it; publish only if it is not worse than the current model."""
    from pipelines.train import train_and_evaluate, validation_song_accuracy

    if pretrain_first:
        train_config = dataclasses.replace(train_config, init=pretrain_on(layout, ingest, report, train_config, cluster))
    config = dataclasses.replace(train_config, use_gpu=cluster.use_gpu())
    try:
        current_run: str | None = published_model_run(layout.root)
    except NotPublishedError:
        current_run = None
    # A name of its own: reusing "<family>-<ingest version>" would resume the current model's run.
    candidate_run = f"{config.model.name}-{ingest.version}-nightly-{report.run_id}{'-init' if config.init else ''}"
    candidate = train_and_evaluate(layout, ingest, songs, label_vocabulary(songs), candidate_run, config)
    # Scored again on today's validation songs: the number stored with the current model was
    # measured on an older, smaller validation set.
    current = (None if current_run is None else
               validation_song_accuracy(ingest, layout.model_file(current_run), bool(config.use_gpu), songs))
    scores = (f"candidate {candidate_run} {candidate.valid.song_accuracy:.3f}, current {current_run} "
              + ("none" if current is None else f"{current:.3f}"))
    if replaces_current(candidate.valid.song_accuracy, current):
        publish(layout.models_area, candidate_run)
        report.published.append("model")
        report.retrain = f"published {candidate_run}: valid song accuracy {scores}; {RETRAIN_RULE}"
    else:
        report.retrain = f"kept {current_run}: valid song accuracy {scores}; {RETRAIN_RULE}"


def embed_stale_songs(layout: RootLayout, ingest: IngestVersion, model: ModelInUse, songs: pd.DataFrame,
                      delta: IndexDelta, config: IndexConfig, local_max_tiles: int, cluster: Cluster) -> pd.DataFrame:
    """Per-song outputs of every song: new ones for the stale songs, the stored ones for the rest."""
    from pipelines.inference import predict_songs_of, runs_locally

    stale_rows = songs[songs["song_id"].isin(delta.stale)]
    on_gpu = bool(cluster.asked_gpu)
    if not runs_locally(stale_rows, on_gpu, local_max_tiles):
        on_gpu = cluster.use_gpu()
    fresh = predict_songs_of(stale_rows, layout.ingest_area, model.uri, ingest.feature_config, use_gpu=on_gpu,
                             batch_size=config.batch_size, local_max_tiles=local_max_tiles)
    stored = read_frame(delta.index.predictions_uri)
    reused = set(songs["song_id"]) - delta.stale
    return pd.concat([pooled_from_predictions(stored, reused), fresh], ignore_index=True)


def model_in_force(layout: RootLayout, ingest: IngestVersion) -> ModelInUse | None:
    """The published genre model, else the run the published index was made with (a pretrain
    run on a catalogue without labels), else None."""
    try:
        return ModelInUse.published(layout, ingest)
    except NotPublishedError:
        pass
    try:
        return ModelInUse.of_run(layout, ingest, published_index(layout.root).manifest.model_run)
    except NotPublishedError:
        return None


def update_index(layout: RootLayout, ingest: IngestVersion, songs: pd.DataFrame, report: NightlyReport,
                 config: IndexConfig, local_max_tiles: int, cluster: Cluster, clock: Stopwatch,
                 model: ModelInUse | None = None) -> None:
    """Step 4: a new index version when songs or the model (``model``, else the one in force)
    changed since the published one."""
    from pipelines.index import embed_songs

    model = model or model_in_force(layout, ingest)
    if model is None:
        logger.warning("no model published yet: songs are ingested but not indexed (train first)")
        return
    report.model_run = model.run
    try:
        current_index = published_index(layout.root)
    except NotPublishedError:
        current_index = None
    delta = index_delta(layout, current_index, songs, model)
    if delta is not None and delta.up_to_date:
        report.index_version = delta.index.version
        return
    if delta is None:  # new model (or no usable index): every song
        pooled = embed_songs(ingest, model, config, cluster.use_gpu())
    else:
        pooled = embed_stale_songs(layout, ingest, model, songs, delta, config, local_max_tiles, cluster)
    clock.lap("embed")
    report.index_version = publish_index_version(layout, ingest, model, pooled, songs, config, time.perf_counter()).version
    report.published.append("index")
    clock.lap("index")


def run_nightly(
    catalogue: str,
    root: str,
    labels: str | None = None,
    retry_failed: bool = False,
    retrain: bool = False,
    keep: int = 3,
    pretrain: bool = False,
    ingest_config: IngestConfig = IngestConfig(),
    index_config: IndexConfig = IndexConfig(),
    use_gpu: bool | None = None,
    address: str | None = None,
    local_max_tiles: int = LOCAL_MAX_TILES,
    train_config: TrainConfig | None = None,
) -> NightlyReport:
    """``use_gpu`` None: inference on GPUs when the cluster has any; a delta of up to
    ``local_max_tiles`` tiles is embedded in this process unless GPUs are asked for."""
    clock = Stopwatch()
    layout = RootLayout(root)
    report = NightlyReport.start(catalogue)
    check_writable(root)
    cluster = Cluster(address, use_gpu)
    try:
        previous: IngestVersion | None = published_ingest(root)
    except NotPublishedError:
        previous = None  # the first night of a new root: the whole chain
    if previous is None:
        ingest = bootstrap_ingest(layout, catalogue, labels or "folder", ingest_config, cluster, report, clock)
    else:
        previous.check_tiles()
        ingest = update_ingest(layout, previous, catalogue, labels or previous.manifest.labels, retry_failed,
                               ingest_config, cluster, report, clock)
    songs = read_frame(ingest.songs_uri)  # the songs in force, read once for both steps
    train_config = train_config or TrainConfig()
    plan = first_model_plan(layout, songs)
    model = None
    if retrain or plan == "train":
        retrain_if_better(layout, ingest, songs, report, train_config, cluster, pretrain_first=pretrain)
        clock.lap("train")
    elif plan == "pretrain":  # nothing to learn genres from, nothing indexed: learn from the songs alone
        model = ModelInUse.of_run(layout, ingest, pretrain_on(layout, ingest, report, train_config, cluster))
        clock.lap("pretrain")
    update_index(layout, ingest, songs, report, index_config, local_max_tiles, cluster, clock, model)
    report.ingest_version = ingest.version
    report.pruned = prune(layout, keep) + collect_garbage(layout, GC_GRACE)
    clock.lap("retention")
    report.seconds = {**clock.seconds, "total": clock.total()}
    write_report(layout, report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalogue", required=True, help="URI of the audio files (dir, file://, s3://)")
    parser.add_argument("--root", required=True,
                        help="storage root (empty on the first night: then the whole chain runs)")
    parser.add_argument("--labels", default=None,
                        help="label source (default: the one the published ingest used)")
    parser.add_argument("--retry-failed", action="store_true", help="decode earlier failures again even if unchanged")
    parser.add_argument("--retrain", action="store_true",
                        help="train a new model first; publish it only if valid song accuracy is not worse")
    parser.add_argument("--pretrain", action="store_true",
                        help="with --retrain: pretrain on every song of the grown catalogue first and train the "
                             "candidate from it (published only if not worse, as any candidate)")
    parser.add_argument("--epochs", type=positive_int, default=TrainConfig.epochs, help="epochs of a --retrain run")
    parser.add_argument("--keep", type=positive_int, default=3, help="versions of ingest and index to keep")
    parser.add_argument("--files-per-task", type=positive_int, default=IngestConfig.files_per_task,
                        help="files per Ray task = per tile shard; up to this many new files are decoded in this process")
    parser.add_argument("--max-duration", type=float, default=IngestConfig.max_duration_s / 3600, metavar="HOURS",
                        help="analyse at most the first this many hours of a new file")
    parser.add_argument("--local-max-tiles", type=int, default=LOCAL_MAX_TILES,
                        help="embed a delta of up to this many tiles in this process (0: always Ray Data)")
    add_device_flags(parser, "inference and --retrain")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> NightlyReport:
    return run_nightly(
        args.catalogue, args.root, labels=args.labels, retry_failed=args.retry_failed, retrain=args.retrain,
        pretrain=args.pretrain,
        keep=args.keep, ingest_config=IngestConfig(files_per_task=args.files_per_task, max_duration_s=args.max_duration * 3600), use_gpu=args.use_gpu,
        address=args.address, local_max_tiles=args.local_max_tiles, train_config=TrainConfig(epochs=args.epochs),
    )


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("nightly", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
