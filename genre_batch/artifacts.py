"""Published versions of the three outputs, found through their ``LATEST`` pointers, and the
one writer of an ingest version (``ingest`` and ``nightly`` both publish through it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from genre_batch import schemas
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.errors import GenreBatchError
from genre_batch.layout import RootLayout
from genre_batch.manifests import IndexManifest, IngestManifest
from genre_batch.splits import SPLITS
from genre_batch.storage import join, latest_version, publish
from genre_batch.tables import write_rows
from genre_batch.tiles import check_tile_shards

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestVersion:
    layout: RootLayout
    version: str
    manifest: IngestManifest

    @property
    def feature_config(self) -> FeatureConfig:
        return self.manifest.feature_config

    @property
    def tile_uris(self) -> list[str]:
        """Tile shards of this version; paths are relative to the ingest area because an
        incremental version keeps using the unchanged shards of earlier ones."""
        return [join(self.layout.ingest_area, name) for name in self.manifest.tiles]

    @property
    def songs_uri(self) -> str:
        return join(self.layout.ingest_dir(self.version), IngestManifest.SONGS_FILE)

    @property
    def errors_uri(self) -> str:
        return join(self.layout.ingest_dir(self.version), IngestManifest.ERRORS_FILE)

    def check_tiles(self) -> None:
        """Every shard in force carries this version's feature config (read from its Parquet
        footer): a job that reads tiles calls this once, before any work, so a shard made
        differently is a one-line ``ConfigMismatchError`` naming it, not silent garbage."""
        check_tile_shards(self.tile_uris, self.feature_config)


def load_ingest_version(layout: RootLayout, version: str) -> IngestVersion:
    return IngestVersion(layout, version, IngestManifest.read(layout.ingest_manifest(version)))


def published_ingest(root: str) -> IngestVersion:
    layout = RootLayout(root)
    return load_ingest_version(layout, latest_version(layout.ingest_area, "ingest", "run `genre-batch ingest` first"))


def publish_ingest_version(
    layout: RootLayout,
    version: str,
    *,
    catalogue: str,
    labels: str,
    features: FeatureConfig,
    splits: SplitConfig,
    songs: Sequence[dict[str, Any]],
    errors: Sequence[dict[str, Any]],
    extra_counts: dict[str, int],
    previous: str | None = None,
    seconds: float | None = None,
    require_songs: bool = False,
) -> IngestVersion:
    """Write the songs and errors tables, then the manifest, then move ``ingest/LATEST``.

    The manifest is the last file of the version and LATEST the last write of all, so a
    reader never sees half a version. ``require_songs``: a version without one song is an
    error (the errors table is written first, so the message can point at it).
    """
    metadata = {"feature_config": features.to_dict(), "split_config": splits.to_dict(), "version": version}
    write_rows(list(songs), schemas.SONGS, layout.songs_table(version), metadata, sort_by="relative_path")
    write_rows(list(errors), schemas.ERRORS, layout.errors_table(version), metadata, sort_by="relative_path")
    if require_songs and not songs:
        raise GenreBatchError(
            f"none of the {len(errors)} files could be ingested; nothing published. See {layout.errors_table(version)}"
        )
    manifest = IngestManifest(
        version=version,
        catalogue=catalogue,
        labels=labels,
        feature_config=features,
        split_config=splits,
        tiles=tuple(sorted({song["tiles_file"] for song in songs})),
        counts={
            **extra_counts,
            "songs": len(songs),
            "tiles": int(sum(song["n_tiles"] for song in songs)),
            "errors": len(errors),
            "labelled": sum(1 for song in songs if song["label"]),
        },
        splits={name: sum(1 for song in songs if song["split"] == name) for name in SPLITS},
        previous=previous,
        seconds=None if seconds is None else round(seconds, 2),
    )
    manifest.write(layout.ingest_manifest(version))
    publish(layout.ingest_area, version)
    return IngestVersion(layout, version, manifest)


@dataclass(frozen=True)
class IndexVersion:
    layout: RootLayout
    version: str
    manifest: IndexManifest

    @property
    def feature_config(self) -> FeatureConfig:
        return self.manifest.feature_config

    @property
    def predictions_uri(self) -> str:
        return self.layout.predictions_table(self.version)

    @property
    def annoy_uri(self) -> str:
        return self.layout.annoy_file(self.version)


def load_index_version(layout: RootLayout, version: str) -> IndexVersion:
    return IndexVersion(layout, version, IndexManifest.read(layout.index_manifest(version)))


def published_index(root: str) -> IndexVersion:
    layout = RootLayout(root)
    return load_index_version(layout, latest_version(layout.index_area, "index", "run `genre-batch index` first"))


def published_model_run(root: str) -> str:
    layout = RootLayout(root)
    return latest_version(layout.models_area, "model", "run `genre-batch train` first")
