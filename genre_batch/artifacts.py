"""Published versions of the three outputs, found through their ``LATEST`` pointers, and the
one writer of an ingest version (``ingest`` and ``nightly`` both publish through it)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from genre_batch import schemas
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.errors import GenreBatchError
from genre_batch.layout import RootLayout
from genre_batch.manifests import IndexManifest, IngestManifest
from genre_batch.splits import SPLITS
from genre_batch.storage import FileSum, check_size, join, latest_version, publish
from genre_batch.tables import write_rows
from genre_batch.tiles import TILES_SUM, check_tile_shards

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

    def files(self) -> dict[str, str]:
        """Every file of the version by its path relative to ``ingest/`` -> its URI."""
        names = [*self.manifest.tiles, f"{self.version}/{IngestManifest.SONGS_FILE}",
                 f"{self.version}/{IngestManifest.ERRORS_FILE}"]
        return {name: join(self.layout.ingest_area, name) for name in names}

    def check_sizes(self, names: Sequence[str]) -> None:
        """These files (paths relative to ``ingest/``) have the sizes the manifest lists."""
        check_listed_sizes(self.files(), self.manifest.checksums, names)

    def check_tiles(self) -> None:
        """Every shard in force has the size the manifest lists and carries this version's
        feature config (read from its Parquet footer): a job that reads tiles calls this once,
        before any work, so a truncated shard or one made differently is a one-line error
        naming it, not silent garbage."""
        self.check_sizes(self.manifest.tiles)
        check_tile_shards(self.tile_uris, self.feature_config)


def check_listed_sizes(files: Mapping[str, str], checksums: Mapping[str, FileSum] | None, names: Sequence[str]) -> None:
    if not checksums:
        return  # a version from before checksums
    uris = [(files[name], checksums[name]) for name in names if name in checksums]
    with ThreadPoolExecutor(max_workers=min(16, len(uris) or 1)) as pool:  # one HEAD each on a store
        list(pool.map(lambda pair: check_size(*pair), uris))


def load_ingest_version(layout: RootLayout, version: str) -> IngestVersion:
    """An ingest version, its tables' sizes checked against its manifest."""
    ingest = IngestVersion(layout, version, IngestManifest.read(layout.ingest_manifest(version)))
    ingest.check_sizes([f"{version}/{IngestManifest.SONGS_FILE}", f"{version}/{IngestManifest.ERRORS_FILE}"])
    return ingest


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
    known_sums: Mapping[str, FileSum] | None = None,
) -> IngestVersion:
    """Write the songs and errors tables, then the manifest, then move ``ingest/LATEST``.

    The manifest is the last file of the version and LATEST the last write of all, so a
    reader never sees half a version. ``require_songs``: a version without one song is an
    error (the errors table is written first, so the message can point at it). The manifest
    lists every file's size and checksum: a new shard's from its rows (``TILES_SUM``), a
    carried-over shard's from ``known_sums`` (the previous manifest's).
    """
    songs = [dict(song) for song in songs]
    sums = {name: entry for name, entry in (known_sums or {}).items() if name.split("/", 1)[-1].startswith("tiles/")}
    for song in songs:
        entry = song.pop(TILES_SUM, None)
        if entry:
            sums[song["tiles_file"]] = FileSum.from_dict(entry)
    metadata = {"feature_config": features.to_dict(), "split_config": splits.to_dict(), "version": version}
    sums[f"{version}/{IngestManifest.SONGS_FILE}"] = write_rows(
        songs, schemas.SONGS, layout.songs_table(version), metadata, sort_by="relative_path")
    sums[f"{version}/{IngestManifest.ERRORS_FILE}"] = write_rows(
        list(errors), schemas.ERRORS, layout.errors_table(version), metadata, sort_by="relative_path")
    if require_songs and not songs:
        raise GenreBatchError(
            f"none of the {len(errors)} files could be ingested; nothing published. See {layout.errors_table(version)}"
        )
    tiles = tuple(sorted({song["tiles_file"] for song in songs}))
    manifest = IngestManifest(
        version=version,
        catalogue=catalogue,
        labels=labels,
        feature_config=features,
        split_config=splits,
        tiles=tiles,
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
        checksums={name: entry for name, entry in sums.items()
                   if name in tiles or name.startswith(f"{version}/")},
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

    def files(self) -> dict[str, str]:
        """Every file of the version by name -> its URI."""
        return {name: join(self.layout.index_dir(self.version), name) for name in IndexManifest.FILES.values()}

    def checksum(self, name: str) -> FileSum | None:
        return (self.manifest.checksums or {}).get(name)


def load_index_version(layout: RootLayout, version: str) -> IndexVersion:
    """An index version, its files' sizes checked against its manifest."""
    index = IndexVersion(layout, version, IndexManifest.read(layout.index_manifest(version)))
    check_listed_sizes(index.files(), index.manifest.checksums, list(IndexManifest.FILES.values()))
    return index


def published_index(root: str) -> IndexVersion:
    layout = RootLayout(root)
    return load_index_version(layout, latest_version(layout.index_area, "index", "run `genre-batch index` first"))


def published_model_run(root: str) -> str:
    layout = RootLayout(root)
    return latest_version(layout.models_area, "model", "run `genre-batch train` first")
