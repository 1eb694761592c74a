"""Evaluation numbers for songs: accuracy, confusion, neighbour precision, the unknown rule.

Everything here takes plain label sequences (one entry per song) so that it works the same
on a pandas column, a list, or a numpy array of strings. Empty inputs give NaN, not errors,
because a split or class can legitimately be empty in a small catalogue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from genre_batch.nulls import null_if_nan
from genre_batch.pooling import UNKNOWN, apply_threshold

logger = logging.getLogger(__name__)


def format_metric(value: Any) -> str:
    """Three decimals, or n/a where a number is undefined (NaN: no songs in that split)."""
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _labels_array(values: Sequence[str]) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def _pair(y_true: Sequence[str], y_pred: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    truth, pred = _labels_array(y_true), _labels_array(y_pred)
    if truth.shape != pred.shape:
        raise ValueError(f"{truth.shape[0]} true labels but {pred.shape[0]} predictions")
    return truth, pred


def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Share of songs whose prediction equals the true label; NaN for no songs.

    A prediction of ``UNKNOWN`` counts as wrong.
    """
    truth, pred = _pair(y_true, y_pred)
    if truth.size == 0:
        return float("nan")
    return float(np.mean(truth == pred))


def per_class_accuracy(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Recall of each true class, keyed by label in ``labels`` order; NaN for a class with no songs."""
    truth, pred = _pair(y_true, y_pred)
    out: dict[str, float] = {}
    for label in labels:
        members = truth == label
        out[str(label)] = float(np.mean(pred[members] == label)) if members.any() else float("nan")
    return out


def confusion_columns(labels: Sequence[str]) -> list[str]:
    """Column labels of ``confusion_matrix``: the genres, then ``UNKNOWN``."""
    return [str(label) for label in labels] + [UNKNOWN]


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Song counts ``[L, L + 1]`` int64: rows are true labels, columns predicted labels.

    Columns are ``confusion_columns(labels)``: the ``L`` genres in ``labels`` order, then one
    last ``UNKNOWN`` column that counts every prediction not in ``labels`` (the unknown
    answer, or anything else outside the vocabulary). Rows always sum to the class sizes.

    Raises:
        ValueError: a true label is not in ``labels``, or ``labels`` contains ``UNKNOWN``
            or duplicates.
    """
    truth, pred = _pair(y_true, y_pred)
    names = [str(label) for label in labels]
    if UNKNOWN in names:
        raise ValueError(f"{UNKNOWN!r} is reserved for the extra column and cannot be a label")
    if len(set(names)) != len(names):
        raise ValueError("labels contain duplicates")
    position = {name: i for i, name in enumerate(names)}
    unknown_truth = sorted({t for t in truth if t not in position})
    if unknown_truth:
        raise ValueError(f"true labels not in the label list: {unknown_truth[:5]}")
    matrix = np.zeros((len(names), len(names) + 1), dtype=np.int64)
    rows = np.fromiter((position[t] for t in truth), dtype=np.int64, count=truth.size)
    cols = np.fromiter((position.get(p, len(names)) for p in pred), dtype=np.int64, count=pred.size)
    np.add.at(matrix, (rows, cols), 1)
    return matrix


def precision_at_k(query_labels: Sequence[str], neighbour_labels: Sequence[Sequence[str]]) -> float:
    """Mean over queries of the share of a query's neighbours that have the query's label.

    ``neighbour_labels[i]`` lists the labels of query ``i``'s neighbours (its ``k`` results).
    Queries with no neighbours are left out of the mean; NaN when no query has any.
    """
    if len(query_labels) != len(neighbour_labels):
        raise ValueError(f"{len(query_labels)} queries but {len(neighbour_labels)} neighbour lists")
    shares = [
        float(np.mean([str(n) == str(label) for n in neighbours]))
        for label, neighbours in zip(query_labels, neighbour_labels)
        if len(neighbours) > 0
    ]
    skipped = len(query_labels) - len(shares)
    if skipped:
        logger.debug("precision_at_k: %d queries had no neighbours and were left out", skipped)
    return float(np.mean(shares)) if shares else float("nan")


@dataclass(frozen=True)
class UnknownRuleReport:
    """What the unknown rule does on a set of songs.

    ``coverage``: share of songs with confidence >= ``threshold`` (given a genre);
    ``accuracy_accepted``: accuracy of the top label on those songs;
    ``accuracy_all``: accuracy of the top label on all songs (what no rule would give);
    ``n``: number of songs; ``n_accepted``: songs given a genre.
    """

    threshold: float
    coverage: float
    accuracy_accepted: float
    accuracy_all: float
    n: int
    n_accepted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "coverage": null_if_nan(self.coverage),
            "accuracy_accepted": null_if_nan(self.accuracy_accepted),
            "accuracy_all": null_if_nan(self.accuracy_all),
            "n": self.n,
            "n_accepted": self.n_accepted,
        }


def unknown_rule_report(
    y_true: Sequence[str],
    predicted: Sequence[str],
    confidences: np.ndarray,
    threshold: float,
) -> UnknownRuleReport:
    """Coverage and accuracy of the unknown rule.

    ``predicted`` holds each song's top label (``GenreDecision.predicted``, never ``UNKNOWN``)
    and ``confidences`` its probability ``[N]``.
    """
    truth, pred = _pair(y_true, predicted)
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if conf.shape[0] != truth.shape[0]:
        raise ValueError(f"{truth.shape[0]} songs but {conf.shape[0]} confidences")
    accepted = apply_threshold(conf, threshold)
    n = int(truth.size)
    return UnknownRuleReport(
        threshold=float(threshold),
        coverage=float(accepted.mean()) if n else float("nan"),
        accuracy_accepted=accuracy(truth[accepted].tolist(), pred[accepted].tolist()),
        accuracy_all=accuracy(truth.tolist(), pred.tolist()),
        n=n,
        n_accepted=int(accepted.sum()),
    )
