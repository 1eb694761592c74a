"""Ingest job (Ray Data): audio files -> tile shards + songs table + errors table, published.

Each Ray task takes a handful of files, decodes and tiles them, and writes their tiles as
one Parquet shard straight to storage (``genre_batch.ingest.ingest_group``): tiles (the bulk,
~49 KiB each) never travel through the object store. Only small song / error records come
back to the driver, which writes the two tables and publishes the version
(``genre_batch.artifacts.publish_ingest_version``).

    python -m pipelines.ingest --catalogue URI --root URI [--labels folder|tags|none|CSV]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from genre_batch.artifacts import IngestVersion, publish_ingest_version
from genre_batch.catalogue import CatalogueFile, list_catalogue
from genre_batch.config import FeatureConfig, IngestConfig, SplitConfig
from genre_batch.entry import positive_int
from genre_batch.errors import GenreBatchError, StorageError
from genre_batch.ingest import catalogue_file_from_record, catalogue_record, error_row, ingest_group
from genre_batch.layout import RootLayout
from genre_batch.storage import check_writable, new_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    version: str
    files: int
    songs: int
    tiles: int
    errors: int
    labelled: int
    seconds: float

    @classmethod
    def of(cls, ingest: IngestVersion, seconds: float) -> "IngestReport":
        counts = ingest.manifest.counts
        return cls(ingest.version, counts["files"], counts["songs"], counts["tiles"], counts["errors"],
                   counts["labelled"], seconds)

    def summary(self) -> str:
        return (
            f"ingest {self.version}: {self.files} files -> {self.songs} songs, {self.tiles} tiles, "
            f"{self.errors} errors ({self.labelled} songs labelled) in {self.seconds:.1f}s"
        )


def ingest_batch(
    batch: pa.Table,
    *,
    tiles_dir: str,
    shard_prefix: str,
    features: dict[str, Any],
    splits: dict[str, Any],
    labels_from_tags: bool,
    max_duration_s: float = IngestConfig.max_duration_s,
) -> pa.Table:
    """Ray UDF: a batch of catalogue records -> one tile shard + one JSON outcome per file.

    Arrow batches, not pandas: pandas turns a missing artist or label into NaN (a float),
    Arrow's ``to_pylist`` keeps it None. A failure of the store comes back as one ``fatal``
    row (its message), not as a failed task: the driver stops at once, and a task that failed
    is left for what dies (``ingest_one_by_one``)."""
    files = [catalogue_file_from_record(record) for record in batch.to_pylist()]
    try:
        songs, errors = ingest_group(files, tiles_dir, shard_prefix, FeatureConfig.from_dict(features),
                                     SplitConfig.from_dict(splits), labels_from_tags, max_duration_s)
    except StorageError as exc:
        return pa.table({"kind": ["fatal"], "record": [json.dumps({"message": str(exc)})]})
    return pa.table({"kind": ["song"] * len(songs) + ["error"] * len(errors),
                     "record": [json.dumps(row) for row in songs + errors]})


def ingest_stage(
    files: list[CatalogueFile],
    layout: RootLayout,
    version: str,
    features: FeatureConfig,
    splits: SplitConfig,
    labels_from_tags: bool,
    config: IngestConfig,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ray Data over these files, ``config.files_per_task`` per task and tile shard of
    ``version``; returns (song rows, error rows)."""
    import ray

    from pipelines._ray import TASK_RETRIES, failed_blocks_allowed, one_stage_execution

    if not files:
        return [], []
    records = [catalogue_record(file) for file in files]
    fn_kwargs = {
        "tiles_dir": layout.tiles_dir(version),
        "shard_prefix": layout.tiles_prefix(version),
        "features": features.to_dict(),
        "splits": splits.to_dict(),
        "labels_from_tags": labels_from_tags,
        "max_duration_s": config.max_duration_s,
    }
    # One block per task-sized group of files: with batch_size=None Ray fuses the read of a
    # block with the map, and the number of shards is decided here, not by Ray's heuristics.
    with one_stage_execution(), failed_blocks_allowed(), warnings.catch_warnings():  # before the dataset: it copies the context
        # Ray 2.60 takes a task's max_retries only through ray_remote_args, which it calls
        # deprecated (to go in 2.64) with no named replacement yet; without it a worker that
        # crashes on a file is retried without end.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = ray.data.from_items(records, override_num_blocks=math.ceil(len(records) / config.files_per_task))
        outcomes = dataset.map_batches(
            ingest_batch,  # type: ignore[arg-type]  # Ray's stub does not count fn_kwargs in
            batch_size=None,
            batch_format="pyarrow",
            fn_kwargs=fn_kwargs,
            max_retries=TASK_RETRIES,
        )
        songs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        # Batch by batch as tasks finish: the first failure of the store ends the job at once.
        table: Any
        for table in outcomes.iter_batches(batch_size=None, batch_format="pyarrow"):
            for kind, record in zip(table["kind"].to_pylist(), table["record"].to_pylist()):
                if kind == "fatal":
                    raise StorageError(json.loads(record)["message"])
                (songs if kind == "song" else errors).append(json.loads(record))
    done = {row["path"] for row in songs + errors}
    lost = [file for file in files if file.uri not in done]
    if lost:
        more_songs, more_errors = ingest_one_by_one(lost, fn_kwargs)
        songs, errors = songs + more_songs, errors + more_errors
    return songs, errors


def ingest_one_by_one(files: list[CatalogueFile], fn_kwargs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The files of tasks that died for good (killed for memory, every retry): each alone in a
    task of its own, so that one file that cannot be ingested costs only itself. A file whose
    task dies again becomes an error row (stage ``worker``, Ray's reason); a failure of the
    store still fails the job."""
    import ray
    from ray.exceptions import OutOfMemoryError, RayTaskError, WorkerCrashedError

    from pipelines._ray import TASK_RETRIES

    logger.warning("%d files were in tasks that died; ingesting each alone", len(files))
    task: Any = ray.remote(max_retries=TASK_RETRIES)(ingest_batch)  # type: ignore[arg-type]  # Ray's stub: no kwargs
    refs = [task.remote(pa.Table.from_pylist([catalogue_record(file)]), **fn_kwargs) for file in files]
    songs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for file, ref in zip(files, refs):
        try:
            table = ray.get(ref)
        except (OutOfMemoryError, WorkerCrashedError) as exc:
            reason = str(exc).strip().splitlines()[0]
            errors.append(error_row(file, "worker", exc, None) | {"message": f"its task died {1 + TASK_RETRIES} times: {reason}"[:2000]})
            continue
        except RayTaskError:
            raise  # an error of ours (a StorageError): the job's, as from the dataset
        for kind, record in zip(table["kind"].to_pylist(), table["record"].to_pylist()):
            if kind == "fatal":
                raise StorageError(json.loads(record)["message"])
            (songs if kind == "song" else errors).append(json.loads(record))
    return songs, errors


def run_ingest(
    catalogue: str,
    root: str,
    labels: str = "folder",
    features: FeatureConfig = FeatureConfig(),
    splits: SplitConfig = SplitConfig(),
    config: IngestConfig = IngestConfig(),
    address: str | None = None,
) -> IngestReport:
    from pipelines._ray import ensure_ray

    started = time.perf_counter()
    check_writable(root)
    files = list_catalogue(catalogue, labels)
    if not files:
        raise GenreBatchError(f"no audio files found under {catalogue}")
    layout = RootLayout(root)
    version = new_version()
    logger.info("ingesting %d files from %s into %s", len(files), catalogue, layout.ingest_dir(version))
    ensure_ray(address)
    songs, errors = ingest_stage(files, layout, version, features, splits, labels == "tags", config)
    ingest = publish_ingest_version(
        layout, version, catalogue=catalogue, labels=labels, features=features, splits=splits,
        songs=songs, errors=errors, extra_counts={"files": len(files)},
        seconds=time.perf_counter() - started, require_songs=True,
    )
    return IngestReport.of(ingest, time.perf_counter() - started)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalogue", required=True, help="URI of the audio files (dir, file://, s3://)")
    parser.add_argument("--root", required=True, help="storage root for every output of this catalogue")
    parser.add_argument(
        "--labels",
        default="folder",
        help="folder (parent folder name, default), tags (ID3/Vorbis genre), none, "
        "or the URI of a CSV with columns path,genre[,artist][,split] (path relative to the catalogue, "
        "or full)",
    )
    parser.add_argument("--files-per-task", type=positive_int, default=IngestConfig.files_per_task,
                        help="files per Ray task = per tile shard")
    parser.add_argument("--max-duration", type=float, default=IngestConfig.max_duration_s / 3600, metavar="HOURS",
                        help="analyse at most the first this many hours of a file (a DJ mix, a concert)")
    parser.add_argument("--tile-hop", type=positive_int, default=FeatureConfig.tile_hop_frames,
                        help="frames between tile starts (256 = no overlap)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the artist/song split hash")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")


def from_args(args: argparse.Namespace) -> IngestReport:
    return run_ingest(
        args.catalogue,
        args.root,
        labels=args.labels,
        features=FeatureConfig(tile_hop_frames=args.tile_hop),
        splits=SplitConfig(seed=args.split_seed),
        config=IngestConfig(files_per_task=args.files_per_task, max_duration_s=args.max_duration * 3600),
        address=args.address,
    )


def main(argv: list[str] | None = None) -> int:
    from genre_batch.entry import job_main

    return job_main("ingest", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
