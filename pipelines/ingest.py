"""Ingest job (Ray Data): audio files -> tile shards + songs table + errors table, published.

Each Ray task takes a handful of files, decodes and tiles them, and writes their tiles as
one Parquet shard straight to storage: tiles (the bulk, ~49 KiB each) never travel through
the object store. Only small song / error records come back to the driver, which writes the
two tables and publishes the version.

    python -m pipelines.ingest --catalogue URI --root URI [--labels folder|tags|none|CSV]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from genre_batch import schemas
from genre_batch.artifacts import code_version
from genre_batch.catalogue import CatalogueFile, list_catalogue
from genre_batch.cli import positive_int
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.errors import GenreBatchError
from genre_batch.ingest import (
    FileOutcome,
    catalogue_file_from_record,
    catalogue_record,
    error_row,
    ingest_file,
    write_tile_shard,
)
from genre_batch.layout import RootLayout
from genre_batch.storage import LocalFileSystem, check_writable, filesystem, new_version, publish, write_json
from genre_batch.tables import write_rows

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

    def summary(self) -> str:
        return (
            f"ingest {self.version}: {self.files} files -> {self.songs} songs, {self.tiles} tiles, "
            f"{self.errors} errors ({self.labelled} songs labelled) in {self.seconds:.1f}s"
        )


def read_file_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        # The listing keeps broken links (storage.walk_files): say what is broken.
        if isinstance(fs, LocalFileSystem) and os.path.islink(path):
            raise FileNotFoundError(f"broken link: {path} points to {os.readlink(path)}, which does not exist") from None
        raise


def ingest_batch(
    batch: pa.Table,
    *,
    tiles_dir: str,
    shard_prefix: str,
    features: dict[str, Any],
    splits: dict[str, Any],
    labels_from_tags: bool,
) -> pa.Table:
    """Ray UDF: a batch of catalogue records -> one tile shard + one JSON outcome per file.

    Arrow batches, not pandas: pandas turns a missing artist or label into NaN (a float),
    Arrow's ``to_pylist`` keeps it None."""
    feature_config = FeatureConfig.from_dict(features)
    split_config = SplitConfig(**splits)
    outcomes: list[FileOutcome] = []
    for record in batch.to_pylist():
        file = catalogue_file_from_record(record)
        try:
            data = read_file_bytes(file.uri)
        except OSError as exc:
            outcomes.append(FileOutcome(error=error_row(file, "read", exc, None)))
            continue
        try:
            outcomes.append(ingest_file(file, data, feature_config, split_config, labels_from_tags))
        except Exception as exc:  # one bad file must not drop the whole block (Ray's unit of failure)
            logger.exception("unexpected failure on %s", file.uri)
            outcomes.append(FileOutcome(error=error_row(file, "featurise", exc, None)))
    write_tile_shard(outcomes, tiles_dir, feature_config, shard_prefix)  # storage errors propagate: they fail the job
    return pa.table(
        {
            "kind": ["song" if o.song is not None else "error" for o in outcomes],
            "record": [json.dumps(o.song if o.song is not None else o.error) for o in outcomes],
        }
    )


def run_files(
    files: list[CatalogueFile],
    layout: RootLayout,
    version: str,
    features: FeatureConfig,
    splits: SplitConfig,
    labels_from_tags: bool,
    files_per_task: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run the Ray Data stage over these files; returns (song rows, error rows)."""
    import ray

    from pipelines._ray import one_stage_execution

    if not files:
        return [], []
    records = [catalogue_record(f) for f in files]
    # One block per task-sized group of files: with batch_size=None Ray fuses the read of a
    # block with the map, and the number of shards is decided here, not by Ray's heuristics.
    with one_stage_execution():  # set before the dataset is made: it copies the context
        dataset = ray.data.from_items(records, override_num_blocks=math.ceil(len(records) / files_per_task))
        outcomes = dataset.map_batches(
            ingest_batch,  # type: ignore[arg-type]  # Ray's stub does not count fn_kwargs in
            batch_size=None,
            batch_format="pyarrow",
            fn_kwargs={
                "tiles_dir": layout.tiles_dir(version),
                "shard_prefix": f"{version}/tiles/",
                "features": features.to_dict(),
                "splits": vars(splits),
                "labels_from_tags": labels_from_tags,
            },
        ).take_all()
    return split_outcomes(outcomes)


def ingest_locally(
    files: list[CatalogueFile],
    layout: RootLayout,
    version: str,
    features: FeatureConfig,
    splits: SplitConfig,
    labels_from_tags: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The same as ``run_files`` for a few files, in this process: one shard, no Ray."""
    outcomes = ingest_batch(
        pa.Table.from_pylist([catalogue_record(f) for f in files]),
        tiles_dir=layout.tiles_dir(version),
        shard_prefix=f"{version}/tiles/",
        features=features.to_dict(),
        splits=vars(splits),
        labels_from_tags=labels_from_tags,
    )
    return split_outcomes(outcomes.to_pylist())


def split_outcomes(outcomes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Outcome records of ``ingest_batch`` -> (song rows, error rows)."""
    songs = [json.loads(o["record"]) for o in outcomes if o["kind"] == "song"]
    errors = [json.loads(o["record"]) for o in outcomes if o["kind"] == "error"]
    return songs, errors


def run_ingest(
    catalogue: str,
    root: str,
    labels: str = "folder",
    features: FeatureConfig = FeatureConfig(),
    splits: SplitConfig = SplitConfig(),
    files_per_task: int = 8,
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
    songs, errors = run_files(
        files, layout, version, features, splits, labels == "tags", files_per_task
    )
    metadata = {"feature_config": features.to_dict(), "split_config": vars(splits), "version": version}
    write_rows(songs, schemas.SONGS, layout.songs_table(version), metadata, sort_by="relative_path")
    write_rows(errors, schemas.ERRORS, layout.errors_table(version), metadata, sort_by="relative_path")
    report = IngestReport(
        version=version,
        files=len(files),
        songs=len(songs),
        tiles=sum(s["n_tiles"] for s in songs),
        errors=len(errors),
        labelled=sum(1 for s in songs if s["label"]),
        seconds=time.perf_counter() - started,
    )
    if not songs:
        raise GenreBatchError(
            f"none of the {len(files)} files could be ingested; nothing published. "
            f"See {layout.errors_table(version)}"
        )
    manifest = {
        "kind": "ingest",
        "version": version,
        "catalogue": catalogue,
        "labels": labels,
        "feature_config": features.to_dict(),
        "split_config": vars(splits),
        "code_version": code_version(),
        "files": {
            "tiles": sorted({s["tiles_file"] for s in songs}),
            "songs": "songs.parquet",
            "errors": "errors.parquet",
        },
        "counts": {k: v for k, v in vars(report).items() if k not in ("version", "seconds")},
        "splits": {name: sum(1 for s in songs if s["split"] == name) for name in ("train", "valid", "test")},
        "seconds": round(report.seconds, 2),
    }
    # The manifest is the last thing written in the version, LATEST the last thing of all.
    write_json(layout.ingest_manifest(version), manifest)
    publish(layout.ingest_area, version)
    return report


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
    parser.add_argument("--files-per-task", type=positive_int, default=8, help="files per Ray task = per tile shard")
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
        files_per_task=args.files_per_task,
        address=args.address,
    )


def main(argv: list[str] | None = None) -> int:
    from pipelines._entry import job_main

    return job_main("ingest", __doc__, add_arguments, from_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
