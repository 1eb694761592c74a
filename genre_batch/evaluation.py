"""Song- and tile-level evaluation of a trained model (pure pandas/numpy; the model's outputs
come from a predict function, so the same evaluation serves Ray Data batch inference and a
model run in this process)."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from genre_batch import metrics as m
from genre_batch.manifests import SplitMetrics
from genre_batch.storage import join, upload_file

# (rows of a songs table, the splits they are of) -> the model's pooled outputs per song
# (columns of ``genre_batch.inference.POOLED_COLUMNS``).
PredictSongs = Callable[[pd.DataFrame, tuple[str, ...]], pd.DataFrame]


def add_predicted(frame: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Add ``predicted`` (argmax label) and ``confidence`` from the ``probs`` column."""
    probs = np.stack(frame["probs"].to_numpy()) if len(frame) else np.zeros((0, len(labels)))
    out = frame.copy()
    out["predicted"] = [labels[i] for i in probs.argmax(axis=1)] if len(frame) else []
    out["confidence"] = probs.max(axis=1) if len(frame) else []
    return out


def split_metrics(frame: pd.DataFrame, labels: Sequence[str]) -> SplitMetrics:
    """Tile and song accuracy, per-genre accuracy and confusion matrix of labelled songs.

    ``frame`` has columns label, predicted, n_tiles, tiles_correct; songs whose label the model
    does not know (a genre absent from training) are counted apart, not as errors.
    """
    known = frame[frame["label"].isin(labels)]
    tiles = int(known["n_tiles"].sum())
    truth, predicted = known["label"].tolist(), known["predicted"].tolist()
    return SplitMetrics(
        songs=int(len(known)),
        songs_with_unknown_genre=int(frame["label"].notna().sum() - len(known)),
        tiles=tiles,
        tile_accuracy=float(known["tiles_correct"].sum() / tiles) if tiles else float("nan"),
        song_accuracy=m.accuracy(truth, predicted),
        per_genre=m.per_class_accuracy(truth, predicted, labels),
        confusion=m.confusion_matrix(truth, predicted, labels).tolist(),
        confusion_columns=m.confusion_columns(labels),
    )


def score_songs(predict: PredictSongs, songs: pd.DataFrame, labels: Sequence[str],
                splits: tuple[str, ...]) -> pd.DataFrame:
    """The songs of these splits with the model's pooled outputs, ``predicted`` and ``confidence``."""
    chosen = songs[songs["split"].isin(list(splits))]
    pooled = predict(chosen, splits)
    return add_predicted(pooled.merge(chosen[["song_id", "label", "split"]], on="song_id"), labels)


def valid_song_accuracy(predict: PredictSongs, songs: pd.DataFrame, labels: Sequence[str]) -> float:
    """Song accuracy of a model on the validation songs of a songs table."""
    return split_metrics(score_songs(predict, songs, labels, ("valid",)), labels).song_accuracy


def evaluate_model(
    predict: PredictSongs,
    songs: pd.DataFrame,
    labels: Sequence[str],
    out_dir: str,
    history: Sequence[dict[str, float]],
) -> dict[str, SplitMetrics]:
    """Valid and test metrics of a trained model, with its training curves and the confusion
    matrix of its test songs (valid ones when there are none) as PNGs in ``out_dir``."""
    from genre_batch import plots

    frame = score_songs(predict, songs, labels, ("valid", "test"))
    metrics = {split: split_metrics(frame[frame["split"] == split], labels) for split in ("valid", "test")}
    shown = "test" if metrics["test"].songs else "valid"
    save_plots(out_dir, {
        "training_curves.png": lambda path: plots.plot_training_curves(history, path),
        f"confusion_{shown}.png": lambda path: plots.plot_confusion_matrix(
            np.array(metrics[shown].confusion), labels, metrics[shown].confusion_columns, path,
            title=f"Confusion matrix, {shown} songs",
        ),
    })
    return metrics


def replaces_current(candidate: float, current: float | None) -> bool:
    """The retraining rule: a candidate model replaces the current one only when its
    validation song accuracy, scored on the same songs, is a number and not below the
    current model's. With no current model (or one that could not be scored: NaN) any
    scored candidate is taken."""
    if current is None:
        return True
    if candidate != candidate:  # NaN: the candidate could not be scored
        return False
    return current != current or candidate >= current


def save_plots(directory_uri: str, plots: dict[str, Any]) -> list[str]:
    """Render plots locally (matplotlib needs files) and upload them next to the numbers.

    ``plots`` maps a file name to a callable taking the local path.
    """
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in plots.items():
            local = os.path.join(tmp, name)
            draw(local)
            upload_file(local, join(directory_uri, name))
            written.append(join(directory_uri, name))
    return written
