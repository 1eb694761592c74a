"""Featurisation geometry and per-stage configs: one source of truth, serialisable, checked.

Every artifact (tile shards, checkpoints, index manifests) carries the ``FeatureConfig`` it
was made with, and every reader compares it with what it expects (``ensure_same_features``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, TypeVar

from genre_batch.errors import ConfigError, ConfigMismatchError

T = TypeVar("T")


@dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes 256x256 uint8 log-mel tiles.

    dB values are relative to the loudest time-frequency bin of the song (``ref = max``),
    clipped to ``[-top_db, 0]`` and mapped linearly onto 0..255, so tiles do not depend on
    the file's playback level.
    """

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 256
    fmin: float = 0.0
    fmax: float = 11_025.0
    top_db: float = 80.0
    tile_frames: int = 256
    tile_hop_frames: int = 256
    # A song shorter than one tile but at least this long is padded to one tile.
    min_duration_s: float = 3.0
    version: int = 1

    def __post_init__(self) -> None:
        if self.n_fft % self.hop_length != 0:
            raise ConfigError(f"n_fft ({self.n_fft}) must be a multiple of hop_length ({self.hop_length})")
        if self.fmax > self.sample_rate / 2:
            raise ConfigError(f"fmax {self.fmax} is above Nyquist ({self.sample_rate / 2})")
        if not 0 < self.tile_hop_frames <= self.tile_frames:
            raise ConfigError(f"tile_hop_frames (--tile-hop) must be in 1..{self.tile_frames}, got {self.tile_hop_frames}")
        if self.top_db <= 0:
            raise ConfigError(f"top_db must be positive, got {self.top_db}")
        if self.min_duration_s * self.sample_rate < self.n_fft:
            raise ConfigError("min_duration_s must cover at least one FFT window")

    @property
    def tile_shape(self) -> tuple[int, int]:
        return (self.n_mels, self.tile_frames)

    @property
    def tile_bytes(self) -> int:
        return self.n_mels * self.tile_frames

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    @property
    def tile_seconds(self) -> float:
        return self.tile_frames * self.frame_seconds

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        return from_dict(cls, data)

    def fingerprint(self) -> str:
        """Short stable hash of every field: equal fingerprints mean identical tiles."""
        return fingerprint(self.to_dict())


def ensure_same_features(expected: FeatureConfig, found: FeatureConfig, where: str) -> None:
    """Raise ``ConfigMismatchError`` naming every field that differs."""
    if expected == found:
        return
    diffs = [
        f"{name}: expected {getattr(expected, name)!r}, found {getattr(found, name)!r}"
        for name in (f.name for f in dataclasses.fields(FeatureConfig))
        if getattr(expected, name) != getattr(found, name)
    ]
    raise ConfigMismatchError(f"{where} was featurised differently: " + "; ".join(diffs))


@dataclass(frozen=True)
class SplitConfig:
    """Train/valid/test assignment: a pure function of the artist (else the song) id."""

    train: float = 0.7
    valid: float = 0.15
    test: float = 0.15
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SplitConfig":
        return from_dict(cls, data)

    def __post_init__(self) -> None:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6 or min(self.train, self.valid, self.test) < 0:
            raise ConfigError(f"split ratios must be non-negative and sum to 1, got {total}")


@dataclass(frozen=True)
class ModelConfig:
    """Family and sizes of a model; stored in every checkpoint so it can be rebuilt exactly.

    What ``channels`` and ``stem_stride`` mean is the family's (``genre_batch.models``):
    widths of conv blocks or stages (cnn, crnn, resnet), mel bands of the LSTM's input (rnn),
    front-end filters per branch and mid-end width (musicnn); the stem's stride, or frames
    per step. ``hidden``: recurrent units per direction (crnn, rnn).
    """

    name: str = "cnn"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    stem_stride: int = 4
    embedding_dim: int = 128
    dropout: float = 0.3
    hidden: int = 64
    # Per-band input normalisation over this many mel bins (0: none): the training tiles' mean
    # and standard deviation per band, kept in the model (its state dict) for inference.
    input_bands: int = 0
    # At inference (eval mode) a tile is read as this many overlapping windows of
    # ``eval_window_frames`` frames, evenly spaced, and the windows' logits and embeddings are
    # averaged (1: the whole tile at once). Validation, ``index`` and ``classify`` all see it.
    eval_windows: int = 1
    eval_window_frames: int = 192

    # Fields that are part of a training recipe, not of a family's architecture: ``compare``
    # carries them over when it builds each family at its default sizes.
    RECIPE_FIELDS: ClassVar[tuple[str, ...]] = ("dropout", "eval_windows", "eval_window_frames")

    def __post_init__(self) -> None:
        _at_least(self, 1, "eval_windows", "eval_window_frames")

    @classmethod
    def for_family(cls, name: str, **sizes: Any) -> "ModelConfig":
        """The default sizes of a family, sized to train on a CPU (the ``sizes`` given win)."""
        defaults: dict[str, dict[str, Any]] = {
            "cnn": {},
            "crnn": {"channels": (16, 32, 64, 64)},
            "rnn": {"channels": (64,)},
            "resnet": {"channels": (16, 32, 64, 128)},
            "musicnn": {"channels": (16, 64), "stem_stride": 2},
        }
        if name not in defaults:
            raise ConfigError(f"unknown model family {name!r}; known: {sorted(defaults)}")
        return cls(name=name, **{**defaults[name], **sizes})

    def as_family(self, name: str) -> "ModelConfig":
        """Family ``name`` at its default sizes, with this config's recipe fields."""
        return ModelConfig.for_family(name, **{field: getattr(self, field) for field in self.RECIPE_FIELDS})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        data = dict(data)
        if "channels" in data:
            data["channels"] = tuple(data["channels"])
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        return out


DEFAULT_FAMILY = "crnn"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    seed: int = 0
    num_workers: int = 1
    # None: on GPUs when the cluster has any (``pipelines._ray.use_gpus`` decides, and the
    # run records what it decided); True / False insist (--gpu / --cpu).
    use_gpu: bool | None = None
    # SpecAugment-style masks on training tiles (torchaudio), in mel bins / frames.
    freq_mask: int = 24
    time_mask: int = 32
    # More augmentation of training tiles (genre_batch/models/augment.py), each off at 0: mixup
    # with Beta(alpha, alpha) weights, a time stretch of up to this share, random crops of this
    # many frames, a shift of up to this many mel bins.
    mixup_alpha: float = 0.0
    time_stretch: float = 0.0
    crop_frames: int = 0
    freq_shift: int = 0
    # An exponential moving average of the weights (this decay per step; 0: off) is what is
    # validated and saved as the model.
    ema_decay: float = 0.0
    # Normalise the input per mel band with the training tiles' statistics (ModelConfig.input_bands).
    band_norm: bool = False
    shuffle_buffer_tiles: int = 512
    # The default family: crnn, the best on validation on the hard demo catalogue and as good as
    # cnn on the normal one (benchmarks/RESULTS.md, "Model families ... on the hard demo").
    model: ModelConfig = field(default_factory=lambda: ModelConfig.for_family(DEFAULT_FAMILY))
    # The best epoch (model.pt) is the one with the best validation *song* accuracy (a song =
    # mean of its tiles' probabilities, as `index` decides), or tile accuracy ("tile").
    select_on: str = "song"
    # Stop after this many epochs without a better selection score (0: train every epoch).
    patience: int = 0
    # A pretrain run (models/<run>/, genre-batch pretrain) whose encoder the model starts from,
    # with a new genre head ("": from scratch).
    init: str = ""

    def __post_init__(self) -> None:
        _at_least(self, 1, "epochs", "batch_size", "num_workers", "shuffle_buffer_tiles")
        _at_least(self, 0, "weight_decay", "freq_mask", "time_mask", "patience", "mixup_alpha", "time_stretch",
                  "crop_frames", "freq_shift")
        if not self.time_stretch < 1:
            raise ConfigError(f"time_stretch must be below 1, got {self.time_stretch}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.select_on not in ("song", "tile"):
            raise ConfigError(f"select_on must be 'song' or 'tile', got {self.select_on!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        data = dict(data)
        if "model" in data:
            data["model"] = ModelConfig.from_dict(data["model"])
        return from_dict(cls, data)


@dataclass(frozen=True)
class IngestConfig:
    """How ingest divides its work: files per Ray task, which is also files per tile shard
    (``nightly`` decodes up to this many new files in its own process); and how much of a
    long file it analyses: the first ``max_duration_s`` seconds (a DJ mix, an audiobook or a
    concert is still one song, its tiles from its first hours)."""

    files_per_task: int = 8
    max_duration_s: float = 4 * 3600.0

    def __post_init__(self) -> None:
        _at_least(self, 1, "files_per_task", "max_duration_s")


@dataclass(frozen=True)
class IndexConfig:
    n_trees: int = 50
    # Per-song "unknown" rule: the lowest threshold whose accepted validation songs reach
    # this accuracy while keeping at least ``min_coverage`` of them (see pooling.choose_threshold).
    target_accuracy: float = 0.9
    min_coverage: float = 0.5
    # ... then raised to this quantile of the right validation answers' confidences.
    floor_quantile: float = 0.05
    batch_size: int = 64
    # Similar songs by cosine of song vectors centred on the catalogue's mean (genre_batch.index).
    centre: bool = True
    # How a song's genre is decided from its tiles (genre_batch.decision): mean, vote, or auto
    # (the better of the two on the validation songs).
    decision: str = "auto"

    def __post_init__(self) -> None:
        _at_least(self, 1, "n_trees", "batch_size")
        for name in ("target_accuracy", "min_coverage"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.floor_quantile < 1:
            raise ConfigError(f"floor_quantile must be in [0, 1), got {self.floor_quantile}")
        if self.decision not in ("mean", "vote", "auto"):
            raise ConfigError(f"decision must be mean, vote or auto, got {self.decision!r}")


def _at_least(config: object, low: float, *names: str) -> None:
    for name in names:
        if not getattr(config, name) >= low:
            raise ConfigError(f"{name} must be at least {low}, got {getattr(config, name)}")


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build a dataclass from a mapping, rejecting unknown keys (a config from the future)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ConfigMismatchError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**data)


def fingerprint(data: Mapping[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
