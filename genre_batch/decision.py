"""How a song's genre is decided from its tiles, by one of two rules, chosen on validation songs.

* ``mean``: the genre with the highest mean tile probability; its score is that probability.
* ``vote``: the slice vote of the original design: each tile votes for its top genre when that
  genre's probability reaches the vote floor (``pooling.VOTE_FLOOR``), else abstains; the genre
  with the most votes wins (ties: the higher mean probability), and its score is its share of
  the song's tiles, so tiles that abstained or voted otherwise count against it.

Either way a song whose score is under the index's threshold (chosen on validation by
``pooling.choose_threshold`` from that rule's scores) is ``unknown``. ``index --decision auto``
(the default) takes the rule whose top answers are right more often on the validation songs
(ties: mean); the choice and both accuracies are in the index manifest and in ``evaluate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from genre_batch.nulls import null_if_nan
from genre_batch.pooling import VOTE_FLOOR

RULES = ("mean", "vote")


def rule_scores(rule: str, probs: np.ndarray, votes: np.ndarray, n_tiles: np.ndarray) -> np.ndarray:
    """``[N, C]`` scores of a rule: the mean tile probabilities, or each genre's share of the
    song's tiles' votes plus a hair of its mean probability, which breaks ties between equal
    vote counts and nothing else (a share step is 1 / n_tiles, far above it)."""
    probs = np.asarray(probs, dtype=np.float64)
    if rule == "mean":
        return probs
    if rule == "vote":
        shares = np.asarray(votes, dtype=np.float64) / np.maximum(np.asarray(n_tiles, dtype=np.float64), 1)[:, None]
        return shares + 1e-9 * probs
    raise ValueError(f"unknown song decision rule {rule!r}; known: {RULES}")


def song_answers(rule: str, probs: np.ndarray, votes: np.ndarray, n_tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top genre index [N], its score [N]) of every song under ``rule``."""
    scores = rule_scores(rule, probs, votes, n_tiles)
    top = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    return top, scores[np.arange(len(scores)), top] if len(scores) else np.zeros(0)


@dataclass(frozen=True)
class SongDecision:
    """The rule an index decides songs by, and why."""

    rule: str  # mean or vote
    vote_floor: float
    asked: str  # mean, vote or auto
    valid_accuracy: dict[str, float]  # rule -> top-answer accuracy on the validation songs (NaN: none)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["valid_accuracy"] = {rule: null_if_nan(value) for rule, value in self.valid_accuracy.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SongDecision":
        return cls(rule=str(data["rule"]), vote_floor=float(data["vote_floor"]), asked=str(data["asked"]),
                   valid_accuracy={str(k): float("nan") if v is None else float(v)
                                   for k, v in data["valid_accuracy"].items()})

    def describe(self) -> str:
        scores = ", ".join(f"{rule} {value:.3f}" if value == value else f"{rule} n/a"
                           for rule, value in self.valid_accuracy.items())
        how = "chosen on the validation songs" if self.asked == "auto" else "as asked"
        return f"song decision: {self.rule} ({how}; validation song accuracy {scores}; vote floor {self.vote_floor:g})"


def choose_decision(asked: str, probs: np.ndarray, votes: np.ndarray, n_tiles: np.ndarray,
                    truth: Sequence[int]) -> SongDecision:
    """The rule to decide songs by: ``asked``, or with ``auto`` the one whose top answers on
    these validation songs (``truth``: their genre index) are right more often (ties: mean)."""
    if asked not in RULES + ("auto",):
        raise ValueError(f"song decision must be one of {RULES + ('auto',)}, got {asked!r}")
    right = np.asarray(truth, dtype=np.int64)
    accuracy = {}
    for rule in RULES:
        top, _ = song_answers(rule, probs, votes, n_tiles)
        accuracy[rule] = float((top == right).mean()) if len(right) else float("nan")
    rule = asked if asked != "auto" else ("vote" if accuracy["vote"] > accuracy["mean"] else "mean")
    return SongDecision(rule=rule, vote_floor=VOTE_FLOOR, asked=asked, valid_accuracy=accuracy)
