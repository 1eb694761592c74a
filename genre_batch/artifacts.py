"""Published versions of the three outputs, found through their ``LATEST`` pointers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genre_batch.config import FeatureConfig
from genre_batch.layout import RootLayout
from genre_batch.storage import join, latest_version, read_json


@dataclass(frozen=True)
class IngestVersion:
    layout: RootLayout
    version: str
    manifest: dict[str, Any]

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.manifest["feature_config"])

    @property
    def tile_uris(self) -> list[str]:
        """Tile shards of this version; paths are relative to the ingest area because an
        incremental version keeps using the unchanged shards of earlier ones."""
        return [join(self.layout.ingest_area, name) for name in self.manifest["files"]["tiles"]]

    @property
    def songs_uri(self) -> str:
        return join(self.layout.ingest_dir(self.version), self.manifest["files"]["songs"])

    @property
    def errors_uri(self) -> str:
        return join(self.layout.ingest_dir(self.version), self.manifest["files"]["errors"])


def published_ingest(root: str) -> IngestVersion:
    layout = RootLayout(root)
    version = latest_version(layout.ingest_area, "ingest", "run `genre-batch ingest` first")
    return IngestVersion(layout, version, read_json(layout.ingest_manifest(version)))


@dataclass(frozen=True)
class IndexVersion:
    layout: RootLayout
    version: str
    manifest: dict[str, Any]

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.manifest["feature_config"])

    @property
    def predictions_uri(self) -> str:
        return self.layout.predictions_table(self.version)

    @property
    def annoy_uri(self) -> str:
        return self.layout.annoy_file(self.version)


def published_index(root: str) -> IndexVersion:
    layout = RootLayout(root)
    version = latest_version(layout.index_area, "index", "run `genre-batch index` first")
    return IndexVersion(layout, version, read_json(layout.index_manifest(version)))


def published_model_run(root: str) -> str:
    layout = RootLayout(root)
    return latest_version(layout.models_area, "model", "run `genre-batch train` first")


def code_version() -> str:
    from genre_batch import __version__

    return __version__
