"""Song-level decisions from tile-level model outputs.

A song is cut into tiles; the model gives every tile a softmax row and an embedding. This
module turns those into one genre decision per song (with an explicit "unknown" answer when
the model is not confident) and chooses the confidence threshold on validation songs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from genre_batch.nulls import null_if_nan

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"

# Accuracies/coverages are ratios of small integers; compare with a hair of slack so that
# e.g. 9/10 counts as reaching a 0.9 target whatever the rounding.
_EPS = 1e-12


def pool_song(tile_probs: np.ndarray, tile_embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average a song's tiles into one probability vector and one unit embedding.

    Args:
        tile_probs: ``[T, C]`` softmax rows, one per tile.
        tile_embeddings: ``[T, D]`` tile embeddings.

    Returns:
        ``(song_probs [C], song_embedding [D])``, both float32. ``song_probs`` is the mean of
        the tile rows (still sums to 1); ``song_embedding`` is the mean embedding scaled to
        unit L2 norm, or all zeros if the mean is the zero vector (never NaN).

    Raises:
        ValueError: no tiles, wrong ranks, tile counts that differ, or non-finite values.
    """
    probs = np.asarray(tile_probs, dtype=np.float64)
    embeddings = np.asarray(tile_embeddings, dtype=np.float64)
    if probs.ndim != 2 or embeddings.ndim != 2:
        raise ValueError(
            f"expected tile_probs [T, C] and tile_embeddings [T, D], got shapes {probs.shape} and {embeddings.shape}"
        )
    if probs.shape[0] < 1:
        raise ValueError("a song needs at least one tile to be pooled")
    if probs.shape[0] != embeddings.shape[0]:
        raise ValueError(f"tile counts differ: {probs.shape[0]} prob rows vs {embeddings.shape[0]} embedding rows")
    if not (np.isfinite(probs).all() and np.isfinite(embeddings).all()):
        raise ValueError("tile outputs contain NaN or inf")

    return finish_pooling(probs.sum(axis=0), embeddings.sum(axis=0), probs.shape[0])


def finish_pooling(prob_sum: np.ndarray, embedding_sum: np.ndarray, n_tiles: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums over a song's tiles -> (mean probabilities, unit mean embedding), float32.

    Works on one song (``[C]``, ``[D]``, an int) or on many at once (``[S, C]``, ``[S, D]``, ``[S]``).
    """
    n = np.asarray(n_tiles, dtype=np.float64)[..., None]
    song_probs = np.asarray(prob_sum, dtype=np.float64) / n
    mean_embedding = np.asarray(embedding_sum, dtype=np.float64) / n
    norm = np.linalg.norm(mean_embedding, axis=-1, keepdims=True)
    # A zero mean has no direction; keep it zero rather than dividing into NaN.
    song_embedding = np.divide(mean_embedding, norm, out=np.zeros_like(mean_embedding), where=norm > 0)
    return song_probs.astype(np.float32), song_embedding.astype(np.float32)


# ---------------------------------------------------------------- pooling in parts
# Pooling is a mean, so it can be done in parts: each inference batch reduces its tiles to
# per-song sums where it is computed, and the parts of all batches are merged afterwards.
# No shuffle of tile outputs is needed, and the rows that travel are about one per song.


# A tile votes for its top genre when that genre's probability reaches this (IndexConfig.vote_floor).
VOTE_FLOOR = 0.5


def tile_votes(probs: np.ndarray, vote_floor: float = VOTE_FLOOR) -> np.ndarray:
    """``[T, C]`` softmax rows -> ``[T, C]`` one-hot votes: a tile votes for its top genre when
    that genre's probability is at least ``vote_floor``, else not at all."""
    probs = np.asarray(probs)
    votes = np.zeros(probs.shape, dtype=np.int64)
    if len(probs):
        top = probs.argmax(axis=1)
        sure = probs[np.arange(len(probs)), top] >= vote_floor
        votes[np.flatnonzero(sure), top[sure]] = 1
    return votes


def song_sums(
    song_ids: np.ndarray, probs: np.ndarray, embeddings: np.ndarray, label_ids: np.ndarray,
    vote_floor: float = VOTE_FLOOR,
) -> dict[str, np.ndarray]:
    """Tile outputs of one batch -> one row per song in it: ``song_id``, ``n_tiles``,
    ``tiles_correct`` (tiles whose best class is the song's label; -1 when unlabelled, i.e.
    ``label_id`` < 0), ``prob_sum [S, C]``, ``embedding_sum [S, D]`` (float64) and
    ``vote_sum [S, C]`` (``tile_votes``)."""
    label_ids = np.asarray(label_ids)
    correct = (np.asarray(probs).argmax(axis=1) == label_ids) & (label_ids >= 0)
    return _sum_by_song(
        np.asarray(song_ids), np.ones(len(label_ids), np.int64), correct.astype(np.int64),
        np.where(label_ids >= 0, 0, -1), probs, embeddings, tile_votes(probs, vote_floor),
    )


def merge_song_sums(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Parts of ``song_sums`` (a song may be in several) -> one row per song, sorted by id."""
    if not parts:
        raise ValueError("nothing to merge")
    joined = {key: np.concatenate([np.asarray(part[key]) for part in parts]) for key in parts[0]}
    unlabelled = np.where(joined["tiles_correct"] < 0, -1, 0)
    return _sum_by_song(
        joined["song_id"], joined["n_tiles"], np.maximum(joined["tiles_correct"], 0), unlabelled,
        joined["prob_sum"], joined["embedding_sum"], joined["vote_sum"],
    )


def _sum_by_song(
    song_ids: np.ndarray, n_tiles: np.ndarray, correct: np.ndarray, unlabelled: np.ndarray,
    probs: np.ndarray, embeddings: np.ndarray, votes: np.ndarray,
) -> dict[str, np.ndarray]:
    keys, inverse = np.unique(song_ids.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(keys)))

    def total(values: np.ndarray, dtype: Any) -> np.ndarray:
        return np.add.reduceat(np.asarray(values, dtype=dtype)[order], starts, axis=0)

    # A song is labelled in every batch it is in, or in none: one -1 marks it unlabelled.
    is_unlabelled = np.minimum.reduceat(np.asarray(unlabelled)[order], starts) < 0
    return {
        "song_id": keys,
        "n_tiles": total(n_tiles, np.int64),
        "tiles_correct": np.where(is_unlabelled, -1, total(correct, np.int64)),
        "prob_sum": total(probs, np.float64),
        "embedding_sum": total(embeddings, np.float64),
        "vote_sum": total(votes, np.int64),
    }


def pooled_songs(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merged sums -> per song: ``song_id``, ``n_tiles``, ``tiles_correct``, ``probs`` (mean
    of the tile softmaxes), ``embedding`` (unit mean of the tile embeddings) and ``votes``
    (the tiles' votes per genre)."""
    probs, embedding = finish_pooling(sums["prob_sum"], sums["embedding_sum"], sums["n_tiles"])
    return {
        "song_id": sums["song_id"],
        "n_tiles": sums["n_tiles"].astype(np.int32),
        "tiles_correct": sums["tiles_correct"].astype(np.int32),
        "probs": probs,
        "embedding": embedding,
        "votes": sums["vote_sum"].astype(np.float32),
    }


@dataclass(frozen=True)
class GenreDecision:
    """One song's answer.

    ``genre`` is the best label, or ``UNKNOWN`` when ``confidence`` (the best label's mean
    probability) is below the threshold; ``predicted`` is always the best label; ``top`` holds
    the best ``top_k`` ``(label, probability)`` pairs, best first.
    """

    genre: str
    confidence: float
    top: tuple[tuple[str, float], ...]
    predicted: str

    @property
    def is_unknown(self) -> bool:
        return self.genre == UNKNOWN

    def to_dict(self) -> dict[str, Any]:
        return {
            "genre": self.genre,
            "confidence": self.confidence,
            "top": [[label, prob] for label, prob in self.top],
            "predicted": self.predicted,
        }


def decide_genre(song_probs: np.ndarray, labels: Sequence[str], threshold: float, top_k: int = 3) -> GenreDecision:
    """Pick a song's genre from its pooled probabilities ``[C]``.

    The song is accepted when ``max(song_probs) >= threshold``; otherwise ``genre`` is
    ``UNKNOWN``. Ties between labels go to the one listed first in ``labels``.
    """
    probs = np.asarray(song_probs, dtype=np.float64)
    if probs.ndim != 1 or probs.shape[0] != len(labels) or probs.shape[0] == 0:
        raise ValueError(f"song_probs has shape {probs.shape} but there are {len(labels)} labels")
    if UNKNOWN in labels:
        raise ValueError(f"{UNKNOWN!r} is reserved and cannot be a genre label")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    # Stable sort on the negated probabilities: equal probabilities keep label order.
    order = np.argsort(-probs, kind="stable")[:top_k]
    top = tuple((str(labels[i]), float(probs[i])) for i in order)
    predicted, confidence = top[0]
    genre = predicted if confidence >= threshold else UNKNOWN
    return GenreDecision(genre=genre, confidence=confidence, top=top, predicted=predicted)


def apply_threshold(confidences: np.ndarray, threshold: float) -> np.ndarray:
    """Accepted mask ``[N]`` bool: ``confidences >= threshold`` (the rule ``decide_genre`` uses)."""
    return np.asarray(confidences, dtype=np.float64) >= threshold


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen "unknown" threshold and what it did on the validation songs.

    ``coverage`` is the share of songs with confidence >= ``threshold``; ``accuracy`` is the
    accuracy on those songs (NaN when there were no songs); ``rule`` says in one sentence how
    the threshold was chosen.
    """

    threshold: float
    coverage: float
    accuracy: float
    target_accuracy: float
    min_coverage: float
    floor_quantile: float
    n_songs: int
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "coverage": null_if_nan(self.coverage),
            "accuracy": null_if_nan(self.accuracy),
            "target_accuracy": self.target_accuracy,
            "min_coverage": self.min_coverage,
            "floor_quantile": self.floor_quantile,
            "n_songs": self.n_songs,
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ThresholdChoice":
        """The inverse of ``to_dict`` (null coverage or accuracy: NaN, no validation songs)."""
        def number(key: str) -> float:
            return float("nan") if data[key] is None else float(data[key])

        return cls(
            threshold=float(data["threshold"]), coverage=number("coverage"), accuracy=number("accuracy"),
            target_accuracy=float(data["target_accuracy"]), min_coverage=float(data["min_coverage"]),
            floor_quantile=float(data["floor_quantile"]), n_songs=int(data["n_songs"]), rule=str(data["rule"]),
        )


def _threshold_curve(conf: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every candidate threshold (0 and each distinct confidence, ascending): how many
    songs it accepts (confidence >= threshold), their share and their accuracy (NaN: none)."""
    n = conf.shape[0]
    candidates = np.unique(np.concatenate([[0.0], conf]))
    # Songs accepted at threshold t are those from searchsorted(t) on in ascending order.
    order = np.argsort(conf, kind="stable")
    hits_before = np.concatenate([[0], np.cumsum(hits[order])])
    first_accepted = np.searchsorted(conf[order], candidates, side="left")
    n_accepted = n - first_accepted
    n_correct = hits_before[-1] - hits_before[first_accepted]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_accepted > 0, n_correct / np.maximum(n_accepted, 1), np.nan)
    return candidates, n_accepted, n_accepted / n, accuracy


def choose_threshold(
    confidences: np.ndarray,
    correct: np.ndarray,
    target_accuracy: float = 0.9,
    min_coverage: float = 0.5,
    floor_quantile: float = 0.05,
) -> ThresholdChoice:
    """Choose the confidence below which a song is called "unknown", from validation songs.

    Rule: the candidate thresholds are 0 and every distinct confidence among the validation
    songs. A song is accepted when its confidence is >= the threshold. We pick the lowest
    threshold whose accepted songs reach ``target_accuracy`` while making up at least
    ``min_coverage`` of all songs. If no threshold does, we pick the one with the highest
    accuracy among those that still keep at least ``min_coverage`` of the songs (ties go to
    the lowest threshold). With no validation songs the threshold is 0, so no song is ever
    called unknown.

    Then the floor: the threshold is raised to the ``floor_quantile`` quantile of the
    confidences of the validation songs the model got right (as far as ``min_coverage``
    allows). The accuracy rule alone is 0 for a model that is right often enough, and then
    audio unlike anything in training (measured: real recordings against the demo's model,
    top probabilities 0.26-0.51 of 6 genres, where its right validation answers had 0.48 and
    more) got a genre anyway. With the floor the model answers only as sure as it was on all
    but the least sure ``floor_quantile`` of its right answers. 0 turns it off.

    Args:
        confidences: ``[N]`` each song's top probability.
        correct: ``[N]`` bool, whether the song's top label was right.
        target_accuracy: accuracy wanted on accepted songs, in [0, 1].
        min_coverage: smallest share of songs that must be accepted, in [0, 1].
        floor_quantile: share of the right validation answers the floor may turn unknown, in [0, 1).
    """
    if not 0.0 <= target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must be in [0, 1], got {target_accuracy}")
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")
    if not 0.0 <= floor_quantile < 1.0:
        raise ValueError(f"floor_quantile must be in [0, 1), got {floor_quantile}")
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hits = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != hits.shape:
        raise ValueError(f"{conf.shape[0]} confidences but {hits.shape[0]} correctness flags")
    if not np.isfinite(conf).all():
        raise ValueError("confidences contain NaN or inf")

    n = int(conf.shape[0])
    if n == 0:
        logger.warning("no validation songs: unknown threshold set to 0.0 (no song will be unknown)")
        return ThresholdChoice(
            threshold=0.0,
            coverage=float("nan"),
            accuracy=float("nan"),
            target_accuracy=target_accuracy,
            min_coverage=min_coverage,
            floor_quantile=floor_quantile,
            n_songs=0,
            rule="No validation songs were available, so the threshold is 0.0 and no song is marked unknown.",
        )

    candidates, n_accepted, coverage, accuracy = _threshold_curve(conf, hits)
    keeps_enough = coverage >= min_coverage - _EPS
    qualifies = keeps_enough & (accuracy >= target_accuracy - _EPS)
    if qualifies.any():
        i = int(np.flatnonzero(qualifies)[0])
        rule = (
            f"Lowest threshold ({candidates[i]:.4f}) at which the validation songs with confidence >= threshold "
            f"reach {accuracy[i]:.1%} accuracy (target {target_accuracy:.1%}) while keeping "
            f"{coverage[i]:.1%} of the {n} songs (minimum {min_coverage:.1%})."
        )
    else:
        # Thresholds at or below the lowest confidence keep every song, so this set is never
        # empty unless min_coverage > 1 (rejected above).
        allowed = np.flatnonzero(keeps_enough & ~np.isnan(accuracy))
        i = int(allowed[np.argmax(accuracy[allowed])])  # argmax returns the first (lowest) on ties
        rule = (
            f"No threshold reached {target_accuracy:.1%} accuracy while keeping at least {min_coverage:.1%} of the "
            f"{n} validation songs, so the threshold ({candidates[i]:.4f}) is the one with the highest accuracy "
            f"({accuracy[i]:.1%}) among those keeping enough songs (it keeps {coverage[i]:.1%})."
        )
    if floor_quantile > 0 and hits.any():
        # An observed confidence ("lower"), so the songs at the floor itself are still accepted.
        floor = float(np.quantile(conf[hits], floor_quantile, method="lower"))
        raised = int(np.searchsorted(candidates, floor, side="left"))
        highest_allowed = int(np.flatnonzero(keeps_enough)[-1])  # coverage falls as thresholds rise
        if n_accepted[min(raised, highest_allowed)] < n_accepted[i]:  # else it turns no song unknown
            i = min(raised, highest_allowed)
            how = " as far as the minimum coverage allows" if raised > highest_allowed else ""
            rule += (
                f" Then raised{how} to {candidates[i]:.4f} by the floor ({floor:.4f}, the {floor_quantile:.0%} "
                f"quantile of the confidences of the validation songs answered right): it keeps "
                f"{coverage[i]:.1%} of the songs at {accuracy[i]:.1%} accuracy."
            )
    choice = ThresholdChoice(
        threshold=float(candidates[i]),
        coverage=float(coverage[i]),
        accuracy=float(accuracy[i]),
        target_accuracy=target_accuracy,
        min_coverage=min_coverage,
        floor_quantile=floor_quantile,
        n_songs=n,
        rule=rule,
    )
    logger.info("unknown threshold: %s", rule)
    return choice
