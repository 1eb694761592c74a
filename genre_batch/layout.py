"""Where every output lives under one storage root.

    <root>/ingest/<version>/tiles/part-*.parquet   tile shards (one per ingest task)
    <root>/ingest/<version>/songs.parquet          one row per decoded song
    <root>/ingest/<version>/errors.parquet         one row per file that failed
    <root>/ingest/<version>/manifest.json          configs, counts and the list of shards
    <root>/ingest/LATEST                           name of the published ingest version
    <root>/models/<run>/ray/...                    Ray Train run (checkpoint_* per epoch)
    <root>/models/<run>/model.pt                   best checkpoint, self-describing
    <root>/models/<run>/metrics.json, *.png        evaluation of that model
    <root>/models/LATEST                           name of the published training run
    <root>/index/<version>/songs.ann               Annoy (angular) index, item id = row of predictions
    <root>/index/<version>/predictions.parquet     per-song embedding, genre, confidence, item id
    <root>/index/<version>/model.pt                copy of the model that made these embeddings
    <root>/index/<version>/manifest.json           model, ingest version, threshold, configs
    <root>/index/LATEST                            name of the published index version
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from genre_batch.storage import join, normalise_uri


def shard_uris(ingest_area: str, tiles_files: Iterable[str]) -> list[str]:
    """The tile shards named by songs' ``tiles_file`` values (relative to the ingest area),
    each once, sorted."""
    return [join(ingest_area, name) for name in sorted(set(tiles_files))]


@dataclass(frozen=True)
class RootLayout:
    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", normalise_uri(self.root))

    # ingest
    @property
    def ingest_area(self) -> str:
        return join(self.root, "ingest")

    def ingest_dir(self, version: str) -> str:
        return join(self.ingest_area, version)

    def tiles_dir(self, version: str) -> str:
        return join(self.ingest_dir(version), "tiles")

    @staticmethod
    def tiles_prefix(version: str) -> str:
        """What a song's ``tiles_file`` starts with for a shard of this version: shards are
        named relative to the ingest area, so later versions can keep using them."""
        return f"{version}/tiles/"

    def songs_table(self, version: str) -> str:
        return join(self.ingest_dir(version), "songs.parquet")

    def errors_table(self, version: str) -> str:
        return join(self.ingest_dir(version), "errors.parquet")

    def ingest_manifest(self, version: str) -> str:
        return join(self.ingest_dir(version), "manifest.json")

    # models
    @property
    def models_area(self) -> str:
        return join(self.root, "models")

    def model_dir(self, run: str) -> str:
        return join(self.models_area, run)

    def model_file(self, run: str) -> str:
        return join(self.model_dir(run), "model.pt")

    def model_metrics(self, run: str) -> str:
        return join(self.model_dir(run), "metrics.json")

    # index
    @property
    def index_area(self) -> str:
        return join(self.root, "index")

    def index_dir(self, version: str) -> str:
        return join(self.index_area, version)

    def annoy_file(self, version: str) -> str:
        return join(self.index_dir(version), "songs.ann")

    def predictions_table(self, version: str) -> str:
        return join(self.index_dir(version), "predictions.parquet")

    def index_model_file(self, version: str) -> str:
        return join(self.index_dir(version), "model.pt")

    def index_manifest(self, version: str) -> str:
        return join(self.index_dir(version), "manifest.json")

    def evaluation_dir(self, version: str) -> str:
        return join(self.index_dir(version), "evaluation")
