"""The JSON documents that describe a published output, one typed class each.

* ``IngestManifest``: ``ingest/<version>/manifest.json`` (configs, counts, the tile shards);
* ``IndexManifest``: ``index/<version>/manifest.json`` (model, ingest version, unknown rule);
* ``RunMetrics``: ``models/<run>/metrics.json`` (a training run's evaluation and history),
  with ``SplitMetrics`` for its valid and test songs.

Each is written by ``to_dict`` and read back by ``from_dict``, which checks the kind, that
every field is there and that nothing unknown is (a document from another version of this
code is a named error, never a silent ``KeyError`` twenty calls later). Field docs feed
docs/SCHEMAS.md (``python -m genre_batch.schemas``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Self

from genre_batch import code_version
from genre_batch.config import FeatureConfig, ModelConfig, SplitConfig, TrainConfig
from genre_batch.decision import SongDecision
from genre_batch.errors import ConfigMismatchError
from genre_batch.pooling import ThresholdChoice
from genre_batch.storage import FileSum, read_json, write_json


class ManifestError(ConfigMismatchError):
    """A manifest or metrics file is not what this code writes (other kind, fields missing or unknown)."""


def _doc(text: str, key: str | None = None) -> dict[str, str]:
    """Field metadata: what the field means and, when it differs from the name, its JSON key."""
    return {"doc": text, **({"key": key} if key else {})}


def json_key(fld: dataclasses.Field[Any]) -> str:
    return str(fld.metadata.get("key", fld.name))


def document_keys(cls: type, *constant_keys: str) -> tuple[set[str], set[str]]:
    """The top-level JSON keys of a document class: (required, optional). A field whose
    default is None may be absent; ``constant_keys`` (``kind``, ...) are written by ``to_dict``
    with the same value every time."""
    required, optional = set(constant_keys), set[str]()
    for fld in dataclasses.fields(cls):
        (optional if fld.default is None else required).add(json_key(fld).split(".")[0])
    return required, optional


def check_keys(data: Mapping[str, Any], required: set[str], optional: set[str], what: str, where: str) -> None:
    missing = sorted(required - set(data))
    unknown = sorted(set(data) - required - optional)
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise ManifestError(f"{where} is not a {what} this code reads: fields {'; '.join(parts)}")


class JsonDocument:
    """A document kept as one JSON file: ``to_dict`` is what is written, ``from_dict`` reads
    it back and checks it (``where`` names the file in errors)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Self:
        raise NotImplementedError

    @classmethod
    def read(cls, uri: str) -> Self:
        return cls.from_dict(read_json(uri), where=uri)

    def write(self, uri: str) -> None:
        write_json(uri, self.to_dict())


def checksums_to_dict(checksums: Mapping[str, FileSum]) -> dict[str, Any]:
    return {name: checksums[name].to_dict() for name in sorted(checksums)}


def checksums_from_dict(data: Any, where: str) -> dict[str, FileSum] | None:
    if data is None:
        return None
    try:
        return {str(name): FileSum.from_dict(entry) for name, entry in data.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ManifestError(f"{where}: its checksums are not {{path: {{bytes, sha256}}}} ({exc!r})") from None


def _check_kind(data: Mapping[str, Any], kind: str, where: str) -> None:
    if data.get("kind") != kind:
        raise ManifestError(f"{where} is not an {kind} manifest (kind {data.get('kind')!r})")


@dataclass(frozen=True)
class IngestManifest(JsonDocument):
    """What an ingest version holds; written last in the version, before `ingest/LATEST`."""

    KIND: ClassVar[str] = "ingest"

    version: str = field(metadata=_doc("Name of the version (UTC time + random suffix)."))
    catalogue: str = field(metadata=_doc("URI of the catalogue that was listed."))
    labels: str = field(metadata=_doc("Label source: folder, tags, none, or the labels CSV's URI."))
    feature_config: FeatureConfig = field(metadata=_doc("How every tile of the version was made."))
    split_config: SplitConfig = field(metadata=_doc("Ratios and seed of the artist/song split hash."))
    tiles: tuple[str, ...] = field(metadata=_doc(
        "Tile shards in force, relative to `ingest/` (a nightly version keeps earlier versions' shards).",
        key="files.tiles"))
    counts: dict[str, int] = field(metadata=_doc(
        "songs, tiles, errors, labelled; an ingest adds files, a nightly its nightly_* diff counts."))
    splits: dict[str, int] = field(metadata=_doc("Songs per split: train, valid, test."))
    previous: str | None = field(default=None, metadata=_doc(
        "The version a nightly run grew this one from; absent for an ingest."))
    seconds: float | None = field(default=None, metadata=_doc("Wall time of the ingest; absent for a nightly."))
    code_version: str = field(default_factory=code_version, metadata=_doc("genre-batch version that wrote it."))
    checksums: dict[str, FileSum] | None = field(default=None, metadata=_doc(
        "Size (`bytes`) and `sha256` of every file in force, by path relative to `ingest/`: the tile "
        "shards, songs.parquet, errors.parquet (`genre-batch verify` checks them); absent: written before "
        "checksums, or a shard carried over from such a version."))

    SONGS_FILE: ClassVar[str] = "songs.parquet"
    ERRORS_FILE: ClassVar[str] = "errors.parquet"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.KIND,
            "version": self.version,
            "catalogue": self.catalogue,
            "labels": self.labels,
            "feature_config": self.feature_config.to_dict(),
            "split_config": self.split_config.to_dict(),
            "code_version": self.code_version,
            "files": {"tiles": list(self.tiles), "songs": self.SONGS_FILE, "errors": self.ERRORS_FILE},
            "counts": dict(self.counts),
            "splits": dict(self.splits),
        }
        if self.previous is not None:
            out["previous"] = self.previous
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.checksums is not None:
            out["checksums"] = checksums_to_dict(self.checksums)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "ingest manifest") -> "IngestManifest":
        _check_kind(data, cls.KIND, where)
        check_keys(data, *document_keys(cls, "kind"), "ingest manifest", where)
        files = data["files"]
        check_keys(files, {"tiles", "songs", "errors"}, set(), "ingest manifest's files", where)
        if (files["songs"], files["errors"]) != (cls.SONGS_FILE, cls.ERRORS_FILE):
            raise ManifestError(f"{where}: tables named {files['songs']!r}, {files['errors']!r}, "
                                f"not {cls.SONGS_FILE!r}, {cls.ERRORS_FILE!r}")
        return cls(
            version=str(data["version"]),
            catalogue=str(data["catalogue"]),
            labels=str(data["labels"]),
            feature_config=FeatureConfig.from_dict(data["feature_config"]),
            split_config=SplitConfig.from_dict(data["split_config"]),
            tiles=tuple(str(name) for name in files["tiles"]),
            counts={str(k): int(v) for k, v in data["counts"].items()},
            splits={str(k): int(v) for k, v in data["splits"].items()},
            previous=data.get("previous"),
            seconds=data.get("seconds"),
            code_version=str(data["code_version"]),
            checksums=checksums_from_dict(data.get("checksums"), where),
        )


@dataclass(frozen=True)
class IndexManifest(JsonDocument):
    """What an index version holds; written last in the version, before `index/LATEST`."""

    KIND: ClassVar[str] = "index"
    METRIC: ClassVar[str] = "angular"
    FILES: ClassVar[dict[str, str]] = {"annoy": "songs.ann", "predictions": "predictions.parquet", "model": "model.pt"}

    version: str = field(metadata=_doc("Name of the version (UTC time + random suffix)."))
    model_run: str = field(metadata=_doc("Training run whose model made the embeddings and genres."))
    model_uri: str = field(metadata=_doc("Where that model was read from (models/<run>/model.pt).", key="model"))
    model_sha256: str = field(metadata=_doc(
        "SHA-256 of the model's bytes; the version keeps a copy (model.pt) with exactly this hash."))
    ingest_version: str = field(metadata=_doc("Ingest version whose tiles were embedded."))
    labels: tuple[str, ...] = field(metadata=_doc("Genres in the order of the predictions' probs column."))
    feature_config: FeatureConfig = field(metadata=_doc("Featurisation of the tiles (the model's own)."))
    model_config: ModelConfig = field(metadata=_doc("Architecture of the model."))
    embedding_dim: int = field(metadata=_doc("Width of the song vectors in songs.ann."))
    n_trees: int = field(metadata=_doc("Annoy trees."))
    songs: int = field(metadata=_doc("Songs indexed (rows of predictions.parquet, items of songs.ann)."))
    threshold: ThresholdChoice = field(metadata=_doc(
        "The unknown rule: threshold, its validation coverage and accuracy, targets, and the rule in words."))
    code_version: str = field(default_factory=code_version, metadata=_doc("genre-batch version that wrote it."))
    embedding_mean: tuple[float, ...] | None = field(default=None, metadata=_doc(
        "Mean of the songs' embeddings, subtracted (then unit length again) from every song vector in "
        "songs.ann and from every query before cosine search; absent: not centred."))
    song_decision: SongDecision | None = field(default=None, metadata=_doc(
        "How songs were decided: rule (mean of tile probabilities, or the tiles' vote), vote floor, "
        "what was asked (mean, vote, auto) and each rule's validation song accuracy; absent: mean."))
    checksums: dict[str, FileSum] | None = field(default=None, metadata=_doc(
        "Size (`bytes`) and `sha256` of songs.ann, predictions.parquet and model.pt, by file name; absent: "
        "written before checksums."))
    genres: str | None = field(default=None, metadata=_doc(
        "Why every genre of this index is `unknown` (its model is a self-supervised pretrain run: embeddings, "
        "no genres; `labels` is empty); absent: genres come from the model's head."))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.KIND,
            "version": self.version,
            "model_run": self.model_run,
            "model": self.model_uri,
            "model_sha256": self.model_sha256,
            "ingest_version": self.ingest_version,
            "labels": list(self.labels),
            "feature_config": self.feature_config.to_dict(),
            "model_config": self.model_config.to_dict(),
            "embedding_dim": self.embedding_dim,
            "metric": self.METRIC,
            "n_trees": self.n_trees,
            "songs": self.songs,
            "threshold": self.threshold.to_dict(),
            "files": dict(self.FILES),
            "code_version": self.code_version,
        }
        if self.embedding_mean is not None:
            out["embedding_mean"] = list(self.embedding_mean)
        if self.song_decision is not None:
            out["song_decision"] = self.song_decision.to_dict()
        if self.checksums is not None:
            out["checksums"] = checksums_to_dict(self.checksums)
        if self.genres is not None:
            out["genres"] = self.genres
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "index manifest") -> "IndexManifest":
        _check_kind(data, cls.KIND, where)
        check_keys(data, *document_keys(cls, "kind", "metric", "files"), "index manifest", where)
        if data["metric"] != cls.METRIC or dict(data["files"]) != cls.FILES:
            raise ManifestError(f"{where}: metric {data['metric']!r} and files {data['files']} are not "
                                f"{cls.METRIC!r} and {cls.FILES}")
        return cls(
            version=str(data["version"]),
            model_run=str(data["model_run"]),
            model_uri=str(data["model"]),
            model_sha256=str(data["model_sha256"]),
            ingest_version=str(data["ingest_version"]),
            labels=tuple(str(label) for label in data["labels"]),
            feature_config=FeatureConfig.from_dict(data["feature_config"]),
            model_config=ModelConfig.from_dict(data["model_config"]),
            embedding_dim=int(data["embedding_dim"]),
            n_trees=int(data["n_trees"]),
            songs=int(data["songs"]),
            threshold=ThresholdChoice.from_dict(data["threshold"]),
            code_version=str(data["code_version"]),
            embedding_mean=None if data.get("embedding_mean") is None else tuple(float(v) for v in data["embedding_mean"]),
            song_decision=None if data.get("song_decision") is None else SongDecision.from_dict(data["song_decision"]),
            checksums=checksums_from_dict(data.get("checksums"), where),
            genres=None if data.get("genres") is None else str(data["genres"]),
        )


@dataclass(frozen=True)
class SplitMetrics:
    """A trained model on the labelled songs of one split (`evaluation.split_metrics`)."""

    songs: int = field(metadata=_doc("Labelled songs of genres the model knows (the ones scored)."))
    songs_with_unknown_genre: int = field(metadata=_doc("Labelled songs of genres it never trained on (not scored)."))
    tiles: int = field(metadata=_doc("Tiles of the scored songs."))
    tile_accuracy: float = field(metadata=_doc("Share of tiles whose own top genre is the song's label."))
    song_accuracy: float = field(metadata=_doc("Share of songs whose top genre (mean tile probabilities) is the label."))
    per_genre: dict[str, float] = field(metadata=_doc("Song accuracy (recall) per true genre."))
    confusion: list[list[int]] = field(metadata=_doc("Song counts [true genre][predicted genre, then unknown]."))
    confusion_columns: list[str] = field(metadata=_doc("Column names of the confusion matrix."))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "split metrics") -> "SplitMetrics":
        check_keys(data, *document_keys(cls), "split's metrics", where)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class RunMetrics(JsonDocument):
    """A training run's best model, evaluated on its valid and test songs."""

    run: str = field(metadata=_doc("Name of the training run (models/<run>/)."))
    ingest_version: str = field(metadata=_doc("Ingest version whose tiles it trained on."))
    labels: tuple[str, ...] = field(metadata=_doc("Genres of the model's head, in class-id order."))
    best_epoch: int = field(metadata=_doc("Epoch (1-based) of model.pt: best validation tile accuracy, else the last."))
    history: tuple[dict[str, float], ...] = field(metadata=_doc(
        "Per epoch: epoch, train/valid loss and tile accuracy, tiles_per_s, epoch_seconds."))
    feature_config: FeatureConfig = field(metadata=_doc("How its tiles were made."))
    train_config: TrainConfig = field(metadata=_doc("The recipe: epochs, batch size, learning rate, seed, model..."))
    valid: SplitMetrics = field(metadata=_doc("Its validation songs (`SplitMetrics`)."))
    test: SplitMetrics = field(metadata=_doc("Its test songs (`SplitMetrics`)."))
    code_version: str = field(default_factory=code_version, metadata=_doc("genre-batch version that wrote it."))

    @property
    def epochs(self) -> int:
        return len(self.history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "ingest_version": self.ingest_version,
            "labels": list(self.labels),
            "best_epoch": self.best_epoch,
            "history": [dict(row) for row in self.history],
            "feature_config": self.feature_config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "valid": self.valid.to_dict(),
            "test": self.test.to_dict(),
            "code_version": self.code_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "run metrics") -> "RunMetrics":
        check_keys(data, *document_keys(cls), "training run's metrics", where)
        return cls(
            run=str(data["run"]),
            ingest_version=str(data["ingest_version"]),
            labels=tuple(str(label) for label in data["labels"]),
            best_epoch=int(data["best_epoch"]),
            history=tuple(dict(row) for row in data["history"]),
            feature_config=FeatureConfig.from_dict(data["feature_config"]),
            train_config=TrainConfig.from_dict(data["train_config"]),
            valid=SplitMetrics.from_dict(data["valid"], f"{where} (valid)"),
            test=SplitMetrics.from_dict(data["test"], f"{where} (test)"),
            code_version=str(data["code_version"]),
        )


# name -> (class, where it is, the keys every such document has with the same value)
DOCUMENTS: Mapping[str, tuple[type, str, str]] = {
    "ingest manifest": (IngestManifest, "`ingest/<version>/manifest.json`",
                        '`kind` = "ingest"; `files.songs` = "songs.parquet"; `files.errors` = "errors.parquet"'),
    "index manifest": (IndexManifest, "`index/<version>/manifest.json`",
                       '`kind` = "index"; `metric` = "angular"; `files` = {"annoy": "songs.ann", '
                       '"predictions": "predictions.parquet", "model": "model.pt"}'),
    "training run metrics": (RunMetrics, "`models/<run>/metrics.json`", ""),
    "split metrics": (SplitMetrics, "the `valid` and `test` objects of a training run's metrics.json", ""),
}


def json_type(annotation: str) -> str:
    """A field's annotation as the JSON an analyst reads: tuples are lists, a
    config or ``ThresholdChoice`` an object of its fields; an optional key may be absent."""
    return annotation.replace("tuple[", "list[").replace(", ...]", "]").replace(" | None", " (optional)")


def render_markdown() -> list[str]:
    """Lines of docs/SCHEMAS.md that document these documents, key by key."""
    lines = ["# Manifests and metrics (JSON)", "",
             "Every published version ends with a JSON manifest (written last, just before `LATEST` moves);",
             "a training run keeps its evaluation beside its model. Typed in `genre_batch/manifests.py` and",
             "checked when read: a document with a field missing or unknown is refused, naming the file.", ""]
    for name, (cls, where, fixed) in DOCUMENTS.items():
        lines += [f"## {name}", "", f"{where}: {(cls.__doc__ or '').strip()}", ""]
        if fixed:
            lines += [f"Always: {fixed}.", ""]
        lines += ["| key | type | meaning |", "|---|---|---|"]
        for fld in dataclasses.fields(cls):
            lines.append(f"| `{json_key(fld)}` | `{json_type(str(fld.type))}` | {fld.metadata.get('doc', '')} |")
        lines.append("")
    return lines
