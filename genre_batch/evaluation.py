"""Song- and tile-level evaluation numbers from pooled predictions (pure pandas/numpy)."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

import numpy as np
import pandas as pd

from genre_batch import metrics as m
from genre_batch.storage import join, upload_file


def add_predicted(frame: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """Add ``predicted`` (argmax label) and ``confidence`` from the ``probs`` column."""
    probs = np.stack(frame["probs"].to_numpy()) if len(frame) else np.zeros((0, len(labels)))
    out = frame.copy()
    out["predicted"] = [labels[i] for i in probs.argmax(axis=1)] if len(frame) else []
    out["confidence"] = probs.max(axis=1) if len(frame) else []
    return out


def split_metrics(frame: pd.DataFrame, labels: Sequence[str]) -> dict[str, Any]:
    """Tile and song accuracy, per-genre accuracy and confusion matrix of labelled songs.

    ``frame`` has columns label, predicted, n_tiles, tiles_correct; songs whose label the model
    does not know (a genre absent from training) are counted apart, not as errors.
    """
    known = frame[frame["label"].isin(labels)]
    tiles = int(known["n_tiles"].sum())
    return {
        "songs": int(len(known)),
        "songs_with_unknown_genre": int(frame["label"].notna().sum() - len(known)),
        "tiles": tiles,
        "tile_accuracy": float(known["tiles_correct"].sum() / tiles) if tiles else float("nan"),
        "song_accuracy": m.accuracy(known["label"].tolist(), known["predicted"].tolist()),
        "per_genre": m.per_class_accuracy(known["label"].tolist(), known["predicted"].tolist(), labels),
        "confusion": m.confusion_matrix(known["label"].tolist(), known["predicted"].tolist(), labels).tolist(),
        "confusion_columns": m.confusion_columns(labels),
    }


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
