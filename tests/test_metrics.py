"""Evaluation numbers on hand-made examples (expected values worked out by hand)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genre_batch.metrics import (
    UnknownRuleReport,
    accuracy,
    confusion_columns,
    confusion_matrix,
    per_class_accuracy,
    precision_at_k,
    unknown_rule_report,
)
from genre_batch.pooling import UNKNOWN

LABELS = ["blues", "jazz", "rock"]
Y_TRUE = ["blues", "blues", "blues", "jazz", "jazz", "rock", "rock", "rock"]
Y_PRED = ["blues", "jazz", UNKNOWN, "jazz", "jazz", "rock", "blues", "rock"]


def test_accuracy() -> None:
    # Right: 0, 3, 4, 5, 7 -> 5 of 8; "unknown" counts as wrong.
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 8)
    assert accuracy(["a"], ["a"]) == 1.0
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError):
        accuracy(["a", "b"], ["a"])


def test_per_class_accuracy() -> None:
    result = per_class_accuracy(Y_TRUE, Y_PRED, LABELS + ["pop"])
    assert list(result) == ["blues", "jazz", "rock", "pop"]
    assert result["blues"] == pytest.approx(1 / 3)
    assert result["jazz"] == pytest.approx(1.0)
    assert result["rock"] == pytest.approx(2 / 3)
    assert math.isnan(result["pop"])


def test_confusion_matrix_with_unknown_column() -> None:
    matrix = confusion_matrix(Y_TRUE, Y_PRED, LABELS)
    assert confusion_columns(LABELS) == ["blues", "jazz", "rock", UNKNOWN]
    expected = np.array(
        [
            [1, 1, 0, 1],  # blues: right, jazz, unknown
            [0, 2, 0, 0],  # jazz: both right
            [1, 0, 2, 0],  # rock: one called blues
        ]
    )
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.int64
    assert matrix.sum(axis=1).tolist() == [3, 2, 3]


def test_confusion_matrix_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="not in the label list"):
        confusion_matrix(["pop"], ["pop"], LABELS)
    with pytest.raises(ValueError, match="reserved"):
        confusion_matrix(["a"], ["a"], ["a", UNKNOWN])


def test_precision_at_k() -> None:
    queries = ["rock", "jazz", "pop"]
    neighbours = [
        ["rock", "rock", "jazz", "rock"],  # 3/4
        ["jazz", "blues"],  # 1/2
        [],  # no neighbours: left out
    ]
    assert precision_at_k(queries, neighbours) == pytest.approx((0.75 + 0.5) / 2)
    assert math.isnan(precision_at_k([], []))
    with pytest.raises(ValueError):
        precision_at_k(["rock"], [])


def test_unknown_rule_report() -> None:
    y_true = ["a", "a", "b", "b", "c"]
    predicted = ["a", "b", "b", "a", "c"]
    confidences = np.array([0.9, 0.4, 0.8, 0.5, 0.6])
    report = unknown_rule_report(y_true, predicted, confidences, threshold=0.55)
    # Accepted: songs 0, 2, 4 (all right) -> coverage 3/5, accuracy 1; overall 3/5 right.
    assert report == UnknownRuleReport(threshold=0.55, coverage=0.6, accuracy_accepted=1.0, accuracy_all=0.6, n=5, n_accepted=3)
    # Threshold above every confidence: nothing accepted, accuracy on accepted is NaN (null in JSON).
    none_accepted = unknown_rule_report(y_true, predicted, confidences, threshold=0.95)
    assert none_accepted.coverage == 0.0 and none_accepted.n_accepted == 0
    payload = json.loads(json.dumps(none_accepted.to_dict()))
    assert payload["accuracy_accepted"] is None and payload["accuracy_all"] == pytest.approx(0.6)


def test_unknown_rule_report_empty() -> None:
    report = unknown_rule_report([], [], np.array([]), threshold=0.5)
    assert report.n == 0 and math.isnan(report.coverage) and math.isnan(report.accuracy_all)
    json.dumps(report.to_dict())


@pytest.mark.parametrize(
    ("candidate", "current", "replaces"),
    [
        (0.8, None, True),  # no current model: take the first scored one
        (0.8, 0.7, True),  # better
        (0.7, 0.7, True),  # equal: "not worse"
        (0.6, 0.7, False),  # worse
        (float("nan"), 0.7, False),  # a candidate that could not be scored never wins
        (0.1, float("nan"), True),  # a current model that could not be scored is replaced
    ],
)
def test_retraining_rule(candidate: float, current: float | None, replaces: bool) -> None:
    from genre_batch.evaluation import replaces_current

    assert replaces_current(candidate, current) is replaces
