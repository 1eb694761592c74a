"""Nightly job: bring tiles, embeddings, predictions and the Annoy index up to date with a
grown catalogue, paying only for what is new.

1. List the catalogue and compare it with the published songs/errors tables
   (genre_batch.incremental): new, changed (size/mtime/ETag, confirmed by content hash), removed,
   unchanged files; earlier failures are retried only when they changed (or --retry-failed).
2. Decode and tile only new and changed files (the Ray Data ingest stage). Unchanged songs
   keep their tile shards; a shard that also held removed/replaced songs is copied without
   them. A new ingest version lists every shard in force and is published atomically.
3. Optionally (--retrain) train a new model on the grown labelled set; it is published only if
   its validation song accuracy is not worse than the current model's.
4. Embed new and changed songs with the published model (every song when the model changed
   since the last index), reuse the stored embeddings of the others, rebuild Annoy from the
   whole table (Annoy cannot add items) and publish a new index version.
5. Keep the newest --keep versions of ingest and index (and whatever they reference); write a
   run report: runs/<run_id>.json and a row in the runs table (runs/*.parquet).

A second run with no catalogue change decodes nothing and publishes nothing: LATEST pointers
stay where they are and the report says so.

    python -m pipelines.nightly --catalogue URI --root URI [--retry-failed] [--retrain]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection

import numpy as np
import pandas as pd

from genre_batch import schemas
from genre_batch.artifacts import (
    IndexVersion,
    IngestVersion,
    code_version,
    published_index,
    published_ingest,
    published_model_run,
)
from genre_batch.catalogue import CatalogueFile, list_catalogue
from genre_batch.config import IndexConfig, SplitConfig, TrainConfig
from genre_batch.errors import NotPublishedError
from genre_batch.incremental import CatalogueDiff, diff_catalogue
from genre_batch.ingest import rewrite_shard_without
from genre_batch.layout import RootLayout
from genre_batch.storage import (
    check_writable,
    latest_version,
    join,
    list_prefix,
    new_version,
    publish,
    read_bytes,
    read_json,
    remove,
    write_json,
)
from genre_batch.tables import read_frame, write_rows
from genre_batch.cli import positive_int
from pipelines._entry import add_device_flags
from pipelines.inference import LOCAL_MAX_TILES

if TYPE_CHECKING:
    from pipelines.index import ModelInUse

logger = logging.getLogger(__name__)


@dataclass
class NightlyReport:
    run_id: str
    started: str
    catalogue: str
    counts: dict[str, int]
    tiles_written: int = 0
    ingest_version: str | None = None
    model_run: str | None = None
    index_version: str | None = None
    published: list[str] = field(default_factory=list)
    retrain: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        what = ", ".join(self.published) if self.published else "nothing (no change)"
        return (
            f"nightly {self.run_id}: {c.get('new', 0)} new, {c.get('changed', 0)} changed, "
            f"{c.get('removed', 0)} removed, {c.get('failed', 0)} failed, {c.get('unchanged', 0)} unchanged; "
            f"{self.tiles_written} tiles written; published {what}; "
            f"ingest {self.ingest_version}, model {self.model_run}, index {self.index_version}; "
            f"{self.seconds.get('total', 0):.1f}s"
            + (f"; retrain: {self.retrain}" if self.retrain else "")
        )


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    def lap(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + now - since, 3)
        return now

    def total(self) -> float:
        return round(time.perf_counter() - self._started, 3)


def _hash_of(file: CatalogueFile) -> str:
    return hashlib.sha256(read_bytes(file.uri)).hexdigest()


def carry_over_songs(
    layout: RootLayout,
    previous: IngestVersion,
    songs: pd.DataFrame,
    diff: CatalogueDiff,
    version: str,
) -> list[dict[str, Any]]:
    """Rows of songs that stay, pointing at shards that hold no dropped song."""
    dropped = set(diff.removed) | {s.song_id for s in diff.changed}
    kept = songs[~songs["song_id"].isin(dropped)].copy()
    for column in ("mtime", "etag"):  # touched files: same bytes, new listing facts
        kept[column] = [getattr(diff.touched[sid], column) if sid in diff.touched else value
                        for sid, value in zip(kept["song_id"], kept[column])]
    dirty = set(songs.loc[songs["song_id"].isin(dropped), "tiles_file"])
    for shard in sorted(dirty & set(kept["tiles_file"])):
        new_file, _ = rewrite_shard_without(
            join(layout.ingest_area, shard), layout.tiles_dir(version), dropped, f"{version}/tiles/"
        )
        kept.loc[kept["tiles_file"] == shard, "tiles_file"] = new_file
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in kept.to_dict("records")
    ]


def publish_ingest_version(
    layout: RootLayout,
    previous: IngestVersion,
    version: str,
    catalogue: str,
    labels: str,
    songs: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    counts: dict[str, int],
) -> IngestVersion:
    features = previous.feature_config
    split_config = previous.manifest["split_config"]
    metadata = {"feature_config": features.to_dict(), "split_config": split_config, "version": version}
    write_rows(songs, schemas.SONGS, layout.songs_table(version), metadata, sort_by="relative_path")
    write_rows(errors, schemas.ERRORS, layout.errors_table(version), metadata, sort_by="relative_path")
    manifest = {
        "kind": "ingest",
        "version": version,
        "previous": previous.version,
        "catalogue": catalogue,
        "labels": labels,
        "feature_config": features.to_dict(),
        "split_config": split_config,
        "code_version": code_version(),
        "files": {
            "tiles": sorted({s["tiles_file"] for s in songs}),
            "songs": "songs.parquet",
            "errors": "errors.parquet",
        },
        "counts": {
            "songs": len(songs),
            "tiles": int(sum(s["n_tiles"] for s in songs)),
            "errors": len(errors),
            "labelled": sum(1 for s in songs if s["label"]),
            **{f"nightly_{k}": v for k, v in counts.items()},
        },
        "splits": {name: sum(1 for s in songs if s["split"] == name) for name in ("train", "valid", "test")},
    }
    write_json(layout.ingest_manifest(version), manifest)
    publish(layout.ingest_area, version)
    return IngestVersion(layout, version, manifest)


RETRAIN_RULE = "published if its validation song accuracy >= the current model's, both scored on this ingest's validation songs"


def retrain_if_better(
    root: str, layout: RootLayout, ingest: IngestVersion, report: NightlyReport, train_config: TrainConfig,
    address: str | None,
) -> None:
    """Train on the grown set; publish only if it is not worse than the current model."""
    from genre_batch.evaluation import replaces_current
    from pipelines.train import run_train, validation_song_accuracy

    try:
        current_run: str | None = published_model_run(root)
    except NotPublishedError:
        current_run = None
    # A name of its own: reusing "cnn-<ingest version>" would resume the current model's run.
    candidate_run = f"{train_config.model.name}-{ingest.version}-nightly-{report.run_id}"
    result = run_train(root, train_config, run=candidate_run, address=address, publish_model=False)
    candidate = float(result.metrics["valid"]["song_accuracy"])
    # Scored again on today's validation songs: the number stored with the current model was
    # measured on an older, smaller validation set.
    current = (None if current_run is None
               else validation_song_accuracy(ingest, layout.model_file(current_run), train_config.use_gpu))
    scores = f"candidate {result.run} {candidate:.3f}, current {current_run} " + (
        "none" if current is None else f"{current:.3f}")
    if replaces_current(candidate, current):
        publish(layout.models_area, result.run)
        report.published.append("model")
        report.retrain = f"published {result.run}: valid song accuracy {scores}; {RETRAIN_RULE}"
    else:
        report.retrain = f"kept {current_run}: valid song accuracy {scores}; {RETRAIN_RULE}"


def pooled_from_predictions(predictions: pd.DataFrame, song_ids: set[str]) -> pd.DataFrame:
    """Stored per-song outputs in the shape ``predict_songs`` returns, for songs not re-embedded."""
    kept = predictions[predictions["song_id"].isin(song_ids)]
    return pd.DataFrame(
        {
            "song_id": kept["song_id"].to_numpy(),
            "n_tiles": kept["n_tiles"].to_numpy(np.int32),
            "tiles_correct": kept["tiles_correct"].fillna(-1).to_numpy(np.int32),
            "probs": [np.asarray(p, np.float32) for p in kept["probs"]],
            "embedding": [np.asarray(e, np.float32) for e in kept["embedding"]],
        }
    )


@dataclass(frozen=True)
class IndexDelta:
    """How the published index differs from the songs in force."""

    index: IndexVersion  # the published index compared
    stale: set[str]  # songs it lacks, or holds the embedding of other bytes for
    removed: set[str]  # songs it holds that are gone

    @property
    def up_to_date(self) -> bool:
        return not (self.stale or self.removed)


def index_delta(
    layout: RootLayout, index: IndexVersion | None, songs: pd.DataFrame, model: "ModelInUse"
) -> IndexDelta | None:
    """Compare the published index with the songs table (by song id and content hash).

    None means every song must be embedded: no index yet, another model (another run, or
    the same run resumed: other weights), or the index's ingest version is no longer readable.
    """
    if index is None or (index.manifest["model_run"], index.manifest.get("model_sha256")) != (model.run, model.sha256):
        return None
    try:
        indexed = read_frame(layout.songs_table(index.manifest["ingest_version"]), ["song_id", "content_hash"])
    except FileNotFoundError:
        return None
    indexed_hash = dict(zip(indexed["song_id"], indexed["content_hash"]))
    in_index = set(read_frame(index.predictions_uri, ["song_id"])["song_id"])
    stale = {
        sid for sid, digest in zip(songs["song_id"], songs["content_hash"])
        if sid not in in_index or indexed_hash.get(sid) != digest
    }
    return IndexDelta(index=index, stale=stale, removed=in_index - set(songs["song_id"]))


def version_names(area_uri: str) -> list[str]:
    """Version directories of an area, oldest first (names start with their UTC time)."""
    return sorted(n for n in list_prefix(area_uri) if n[:1].isdigit())


def live_version(area_uri: str) -> str | None:
    try:
        return latest_version(area_uri, "version")
    except NotPublishedError:
        return None


def prune_versions(area_uri: str, keep: int, referenced: Collection[str] = frozenset()) -> list[str]:
    """Delete version directories beyond the newest ``keep``, never the published one nor one
    whose files a kept version still references. Returns what was deleted."""
    live = live_version(area_uri)
    deletable = [n for n in version_names(area_uri)[:-keep] if n != live and n not in referenced] if keep > 0 else []
    for name in deletable:
        remove(join(area_uri, name), recursive=True)
        logger.info("retention: removed %s/%s", area_uri, name)
    return [join(area_uri, n) for n in deletable]


def _with_live(names: list[str], live: str | None) -> set[str]:
    return set(names) | ({live} if live else set())


def referenced_ingest_versions(layout: RootLayout, keep: int) -> set[str]:
    """Ingest versions that must stay: the live one, the newest ``keep``, those that the kept
    index versions were built from (``similar --audio`` and the next nightly read their songs
    tables), and every version whose tile shards one of these uses."""
    needed = _with_live(version_names(layout.ingest_area)[-keep:], live_version(layout.ingest_area))
    kept_indexes = _with_live(version_names(layout.index_area)[-keep:], live_version(layout.index_area))
    for name in kept_indexes:
        try:
            needed.add(read_json(layout.index_manifest(name))["ingest_version"])
        except FileNotFoundError:  # an interrupted, unpublished version: nothing reads it
            continue
    used: set[str] = set()
    for name in needed:
        try:
            manifest = read_json(layout.ingest_manifest(name))
        except FileNotFoundError:
            continue
        used.add(name)
        used.update(path.split("/", 1)[0] for path in manifest["files"]["tiles"])
    return used


def write_report(layout: RootLayout, report: NightlyReport) -> None:
    runs = join(layout.root, "runs")
    write_json(join(runs, f"{report.run_id}.json"), dataclasses.asdict(report))
    c = report.counts
    row = {
        "run_id": report.run_id,
        "started": report.started,
        "catalogue": report.catalogue,
        "new": c.get("new", 0),
        "changed": c.get("changed", 0),
        "removed": c.get("removed", 0),
        "failed": c.get("failed", 0),
        "retried": c.get("retried", 0),
        "unchanged": c.get("unchanged", 0),
        "tiles_written": report.tiles_written,
        "ingest_version": report.ingest_version,
        "model_run": report.model_run,
        "index_version": report.index_version,
        "published": report.published,
        "retrain": report.retrain,
        "seconds": list(report.seconds.items()),
    }
    write_rows([row], schemas.RUNS, join(runs, f"{report.run_id}.parquet"), {"kind": "nightly"})


def run_nightly(
    catalogue: str,
    root: str,
    labels: str | None = None,
    retry_failed: bool = False,
    retrain: bool = False,
    keep: int = 3,
    files_per_task: int = 8,
    index_config: IndexConfig = IndexConfig(),
    use_gpu: bool | None = None,
    address: str | None = None,
    local_max_tiles: int = LOCAL_MAX_TILES,
    train_config: TrainConfig | None = None,
) -> NightlyReport:
    """``use_gpu`` None: inference on GPUs when the cluster has any; a delta of up to
    ``local_max_tiles`` tiles is embedded in this process unless GPUs are asked for."""
    from pipelines._ray import ensure_ray, use_gpus
    from pipelines.index import ModelInUse, embed_songs, publish_index
    from pipelines.inference import predict_songs_of, runs_locally
    from pipelines.ingest import ingest_locally, run_files

    clock = Stopwatch()
    layout = RootLayout(root)
    report = NightlyReport(
        run_id=new_version(),
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        catalogue=catalogue,
        counts={},
    )
    check_writable(root)
    previous = published_ingest(root)  # the first ingest of a catalogue is `genre-batch ingest`
    labels = labels or previous.manifest["labels"]
    since = time.perf_counter()
    listing = list_catalogue(catalogue, labels, strict_labels=False)  # removed files may stay in a CSV
    songs = read_frame(previous.songs_uri)
    errors = read_frame(previous.errors_uri)
    diff = diff_catalogue(listing, songs, errors, _hash_of, retry_failed=retry_failed)
    since = clock.lap("list_and_compare", since)
    logger.info("catalogue diff: %s", diff.counts())

    ingest = previous
    if not diff.is_empty:
        version = new_version()
        new_songs: list[dict[str, Any]] = []
        new_errors: list[dict[str, Any]] = []
        if diff.to_ingest:
            split_config = SplitConfig(**previous.manifest["split_config"])
            if len(diff.to_ingest) <= files_per_task:
                # One task's worth of files: decode here rather than start Ray workers for it.
                new_songs, new_errors = ingest_locally(
                    diff.to_ingest, layout, version, previous.feature_config, split_config, labels == "tags"
                )
            else:
                ensure_ray(address)
                new_songs, new_errors = run_files(
                    diff.to_ingest, layout, version, previous.feature_config, split_config,
                    labels == "tags", files_per_task,
                )
        since = clock.lap("ingest", since)
        kept_songs = carry_over_songs(layout, previous, songs, diff, version)
        kept_errors = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in errors[errors["relative_path"].isin(diff.still_failed)].to_dict("records")
        ]
        report.tiles_written = int(sum(s["n_tiles"] for s in new_songs))
        ingest = publish_ingest_version(
            layout, previous, version, catalogue, labels, kept_songs + new_songs, kept_errors + new_errors,
            diff.counts(),
        )
        report.published.append("ingest")
        since = clock.lap("publish_ingest", since)
        report.counts = {**diff.counts(), "failed": len(new_errors) + len(kept_errors)}
    else:
        report.counts = {**diff.counts(), "failed": len(diff.still_failed)}

    if retrain:
        ensure_ray(address)
        train_config = dataclasses.replace(train_config or TrainConfig(), use_gpu=use_gpus(use_gpu))
        retrain_if_better(root, layout, ingest, report, train_config, address)
        since = clock.lap("train", since)

    try:
        model = ModelInUse.published(layout, ingest)
    except NotPublishedError:
        model = None
        logger.warning("no model published yet: songs are ingested but not indexed (train first)")
    if model is not None:
        try:
            current_index = published_index(root)
        except NotPublishedError:
            current_index = None
        current_songs = read_frame(ingest.songs_uri)
        delta = index_delta(layout, current_index, current_songs, model)
        if delta is None or not delta.up_to_date:
            if delta is None:  # new model (or no usable index): every song
                ensure_ray(address)
                pooled = embed_songs(ingest, model, ingest.tile_uris, index_config, use_gpus(use_gpu))
            else:
                stale = delta.stale
                stale_rows = current_songs[current_songs["song_id"].isin(stale)]
                on_gpu = bool(use_gpu)
                if not runs_locally(stale_rows, on_gpu, local_max_tiles):
                    ensure_ray(address)
                    on_gpu = use_gpus(use_gpu)
                fresh = predict_songs_of(stale_rows, layout.ingest_area, model.uri, ingest.feature_config,
                                         use_gpu=on_gpu, batch_size=index_config.batch_size,
                                         local_max_tiles=local_max_tiles)
                stored = read_frame(delta.index.predictions_uri)
                reused = set(current_songs["song_id"]) - stale
                pooled = pd.concat([pooled_from_predictions(stored, reused), fresh], ignore_index=True)
            since = clock.lap("embed", since)
            index_report = publish_index(layout, ingest, model, pooled, current_songs, index_config, time.perf_counter())
            report.published.append("index")
            report.index_version = index_report.version
            since = clock.lap("index", since)
        else:
            report.index_version = delta.index.version
        report.model_run = model.run

    report.ingest_version = ingest.version
    report.pruned = prune_versions(layout.index_area, keep) + prune_versions(
        layout.ingest_area, keep, referenced_ingest_versions(layout, keep)
    )
    clock.lap("retention", since)
    report.seconds = {**clock.seconds, "total": clock.total()}
    write_report(layout, report)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalogue", required=True, help="URI of the audio files (dir, file://, s3://)")
    parser.add_argument("--root", required=True, help="storage root with a published ingest")
    parser.add_argument("--labels", default=None,
                        help="label source (default: the one the published ingest used)")
    parser.add_argument("--retry-failed", action="store_true", help="decode earlier failures again even if unchanged")
    parser.add_argument("--retrain", action="store_true",
                        help="train a new model first; publish it only if valid song accuracy is not worse")
    parser.add_argument("--epochs", type=positive_int, default=TrainConfig.epochs, help="epochs of a --retrain run")
    parser.add_argument("--keep", type=positive_int, default=3, help="versions of ingest and index to keep")
    parser.add_argument("--files-per-task", type=positive_int, default=8,
                        help="files per Ray task = per tile shard; up to this many new files are decoded in this process")
    parser.add_argument("--local-max-tiles", type=int, default=LOCAL_MAX_TILES,
                        help="embed a delta of up to this many tiles in this process (0: always Ray Data)")
    add_device_flags(parser, "inference and --retrain")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> NightlyReport:
    return run_nightly(
        args.catalogue, args.root, labels=args.labels, retry_failed=args.retry_failed, retrain=args.retrain,
        keep=args.keep, files_per_task=args.files_per_task, use_gpu=args.use_gpu, address=args.address,
        local_max_tiles=args.local_max_tiles,
        train_config=TrainConfig(epochs=args.epochs),
    )


def main(argv: list[str] | None = None) -> int:
    from pipelines._entry import job_main

    return job_main("nightly", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
