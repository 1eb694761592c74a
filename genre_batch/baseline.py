"""The yardstick every model is judged against: MFCC statistics + logistic regression.

Per song: the first ``n_mfcc`` MFCCs of every frame of its tiles (DCT-II, orthonormal, of the
log-mel image: ``librosa.feature.mfcc(S=dB)``), then their mean and standard deviation over
the song's frames. Standardised with the training songs' statistics, then a multinomial
logistic regression with an L2 penalty, fitted by L-BFGS. A 1990s recipe (Tzanetakis & Cook
2002 used the same statistics) that reaches ~53-55 % on the artist-filtered GTZAN split: a
model that cannot beat it has not learnt music.

The MFCCs are computed from the stored tiles (no second decode of the catalogue): the mel
axis is the ingest's (256 bins), and dB are relative to the song's loudest bin, which moves
only the 0th coefficient, by a constant per song.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.fft import dct
from scipy.optimize import minimize

from genre_batch import metrics as m
from genre_batch.config import FeatureConfig
from genre_batch.features import dequantise
from genre_batch.layout import shard_uris
from genre_batch.tables import read_table
from genre_batch.tiles import tiles_from_binary

if TYPE_CHECKING:
    from genre_batch.artifacts import IngestVersion

logger = logging.getLogger(__name__)

N_MFCC = 20
L2 = 1e-2


def mfcc_frames(tiles: np.ndarray, features: FeatureConfig, n_mfcc: int = N_MFCC) -> np.ndarray:
    """uint8 tiles ``[n, n_mels, frames]`` -> MFCCs of every frame, ``[n_mfcc, n * frames]``."""
    db = dequantise(np.asarray(tiles), features)  # [n, F, T]
    image = np.concatenate(list(db), axis=1) if len(db) else np.zeros((features.n_mels, 0), np.float32)
    return dct(image, type=2, norm="ortho", axis=0)[:n_mfcc]


@dataclass
class _Moments:
    frames: int = 0
    total: np.ndarray | None = None
    squares: np.ndarray | None = None

    def add(self, coefficients: np.ndarray) -> None:
        values = coefficients.astype(np.float64)
        self.frames += values.shape[1]
        self.total = values.sum(axis=1) + (0 if self.total is None else self.total)
        self.squares = (values ** 2).sum(axis=1) + (0 if self.squares is None else self.squares)

    def statistics(self) -> np.ndarray:
        assert self.total is not None and self.squares is not None and self.frames
        mean = self.total / self.frames
        return np.concatenate([mean, np.sqrt(np.maximum(self.squares / self.frames - mean ** 2, 0.0))])


def song_features(tile_uris: Iterable[str], song_ids: set[str], features: FeatureConfig,
                  n_mfcc: int = N_MFCC) -> dict[str, np.ndarray]:
    """Song id -> ``[2 * n_mfcc]`` (MFCC means, then standard deviations) for these songs, read
    shard by shard: memory holds one shard's tiles, not the catalogue's."""
    moments: dict[str, _Moments] = {}
    wanted = pa.array(sorted(song_ids), pa.string())
    for uri in tile_uris:
        table = read_table(uri, ["song_id", "tile"])
        table = table.filter(pc.is_in(table["song_id"], wanted))
        ids = np.asarray(table["song_id"].to_pylist(), dtype=object)
        if not len(ids):
            continue
        tiles = tiles_from_binary(table["tile"].to_pylist(), features)
        for song_id in np.unique(ids):
            moments.setdefault(str(song_id), _Moments()).add(mfcc_frames(tiles[ids == song_id], features, n_mfcc))
    return {song_id: moment.statistics() for song_id, moment in moments.items()}


class LogisticRegression:
    """Multinomial logistic regression on standardised features: mean cross-entropy plus
    ``l2 / 2`` times the squared weights (not the biases), minimised by L-BFGS from zeros, so
    a fit is a pure function of its data."""

    def __init__(self, l2: float = L2, max_iterations: int = 500) -> None:
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.l2, self.max_iterations = l2, max_iterations

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int) -> "LogisticRegression":
        x = np.asarray(x, np.float64)
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        z = (x - self.mean) / self.scale
        onehot = np.eye(n_classes)[np.asarray(y, int)]
        dims = z.shape[1]

        def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
            weights, bias = params[: dims * n_classes].reshape(dims, n_classes), params[dims * n_classes:]
            logits = z @ weights + bias
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            error = (np.exp(log_probs) - onehot) / len(z)
            loss = -(onehot * log_probs).sum() / len(z) + 0.5 * self.l2 * (weights ** 2).sum()
            gradient = np.concatenate([(z.T @ error + self.l2 * weights).ravel(), error.sum(axis=0)])
            return float(loss), gradient

        result = minimize(loss_and_gradient, np.zeros(dims * n_classes + n_classes), jac=True,
                          method="L-BFGS-B", options={"maxiter": self.max_iterations})
        self.weights = result.x[: dims * n_classes].reshape(dims, n_classes)
        self.bias = result.x[dims * n_classes:]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        logits = ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class BaselineReport:
    """The baseline on one ingest: valid songs scored by a fit on the train songs, test songs
    by a fit on train + valid (as the references fit it), per-genre test accuracy."""

    n_mfcc: int
    l2: float
    train_songs: int
    valid_songs: int
    test_songs: int
    valid_song_accuracy: float
    test_song_accuracy: float
    per_genre_test: dict[str, float]

    def summary(self) -> str:
        per_genre = ", ".join(f"{g} {m.format_metric(v)}" for g, v in self.per_genre_test.items())
        return (
            f"MFCC({self.n_mfcc}) mean/std + logistic regression (L2 {self.l2:g}): "
            f"valid song accuracy {m.format_metric(self.valid_song_accuracy)} (fit on {self.train_songs} train songs), "
            f"test {m.format_metric(self.test_song_accuracy)} (fit on train + valid, {self.test_songs} test songs); "
            f"per genre on test: {per_genre}"
        )


def fit_baseline(songs: pd.DataFrame, song_vectors: dict[str, np.ndarray], labels: Sequence[str],
                 n_mfcc: int = N_MFCC, l2: float = L2) -> BaselineReport:
    """Fit and score the baseline on the labelled songs (rows of a songs table) of ``labels``."""
    known = songs[songs["label"].isin(labels) & songs["song_id"].isin(list(song_vectors))]
    class_of = {label: i for i, label in enumerate(labels)}

    def part(*splits: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        rows = known[known["split"].isin(splits)]
        vectors = np.stack([song_vectors[s] for s in rows["song_id"]]) if len(rows) else np.zeros((0, 2 * n_mfcc))
        return vectors, rows["label"].map(class_of).to_numpy(int), rows["label"].tolist()

    def accuracy(fit_on: tuple[str, ...], score: str) -> tuple[float, list[str], list[str]]:
        x_fit, y_fit, _ = part(*fit_on)
        x, _, truth = part(score)
        if not len(x) or len(set(y_fit)) < 2:
            return float("nan"), truth, []
        predicted = LogisticRegression(l2).fit(x_fit, y_fit, len(labels)).predict_proba(x).argmax(axis=1)
        names = [labels[i] for i in predicted]
        return m.accuracy(truth, names), truth, names

    valid_accuracy, _, _ = accuracy(("train",), "valid")
    test_accuracy, truth, predicted = accuracy(("train", "valid"), "test")
    counts = known["split"].value_counts()
    return BaselineReport(
        n_mfcc=n_mfcc, l2=l2, train_songs=int(counts.get("train", 0)), valid_songs=int(counts.get("valid", 0)),
        test_songs=int(counts.get("test", 0)), valid_song_accuracy=valid_accuracy, test_song_accuracy=test_accuracy,
        per_genre_test=m.per_class_accuracy(truth, predicted, labels) if predicted else {g: float("nan") for g in labels},
    )


def baseline_of_ingest(ingest: IngestVersion, songs: pd.DataFrame, labels: Sequence[str], n_mfcc: int = N_MFCC,
                       l2: float = L2) -> BaselineReport:
    """The baseline on an ingest version's labelled songs of ``labels`` (their shards only)."""
    labelled = songs[songs["label"].isin(list(labels))]
    shards = shard_uris(ingest.layout.ingest_area, labelled["tiles_file"])
    logger.info("MFCCs of %d labelled songs from %d tile shards", len(labelled), len(shards))
    vectors = song_features(shards, set(labelled["song_id"]), ingest.feature_config, n_mfcc)
    return fit_baseline(songs, vectors, labels, n_mfcc=n_mfcc, l2=l2)
