"""The song decision: the mean of tile probabilities or the tiles' vote, chosen on validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from genre_batch.config import IndexConfig
from genre_batch.decision import SongDecision, choose_decision, rule_scores, song_answers
from genre_batch.indexing import decide_genres
from genre_batch.pooling import VOTE_FLOOR, merge_song_sums, pooled_songs, song_sums, tile_votes

LABELS = ["jazz", "rock"]


def test_a_tile_unsure_of_its_top_genre_abstains():
    probs = np.array([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8], [0.5, 0.5]])
    assert tile_votes(probs, 0.6).tolist() == [[1, 0], [0, 0], [0, 1], [0, 0]]
    assert tile_votes(probs, 0.5).tolist() == [[1, 0], [0, 1], [0, 1], [1, 0]]  # at the floor it votes


def test_votes_are_summed_per_song_like_every_other_sum():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
    parts = [song_sums(np.array(["a", "a"]), probs[:2], np.ones((2, 3)), np.array([0, 0])),
             song_sums(np.array(["a", "b"]), probs[2:], np.ones((2, 3)), np.array([0, -1]))]
    pooled = pooled_songs(merge_song_sums(parts))
    assert pooled["votes"].tolist() == [[2.0, 1.0], [1.0, 0.0]] and VOTE_FLOOR == 0.5


def test_the_vote_counts_abstentions_against_the_winner_and_breaks_ties_by_probability():
    probs = np.array([[0.6, 0.4], [0.4, 0.6]])
    votes = np.array([[2, 2], [1, 0]])
    top, score = song_answers("vote", probs, votes, np.array([5, 4]))
    assert top.tolist() == [0, 0]  # song 0: 2 votes each, jazz more probable; song 1: rock more probable, jazz voted
    np.testing.assert_allclose(score, [0.4, 0.25], atol=1e-6)  # shares of the song's tiles
    np.testing.assert_array_equal(rule_scores("mean", probs, votes, np.array([5, 4])), probs)
    with pytest.raises(ValueError):
        rule_scores("median", probs, votes, np.array([5, 4]))


def test_auto_takes_the_rule_right_more_often_on_validation_mean_on_ties():
    # Song 0 is rock by its vote, jazz by its mean (one very sure jazz tile); the label says rock.
    probs, votes, n = np.array([[0.55, 0.45]]), np.array([[1, 3]]), np.array([4])
    assert choose_decision("auto", probs, votes, n, [1]).rule == "vote"
    assert choose_decision("auto", probs, votes, n, [0]).rule == "mean"
    tie = choose_decision("auto", np.array([[0.9, 0.1]]), np.array([[4, 0]]), np.array([4]), [0])
    assert tie.rule == "mean" and tie.valid_accuracy == {"mean": 1.0, "vote": 1.0}
    assert choose_decision("vote", probs, votes, n, [0]).rule == "vote"  # as asked
    empty = choose_decision("auto", np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), [])
    assert empty.rule == "mean" and math.isnan(empty.valid_accuracy["vote"])
    with pytest.raises(ValueError):
        choose_decision("median", probs, votes, n, [0])


def test_a_decision_reads_back_with_its_nans():
    decision = SongDecision("vote", 0.5, "auto", {"mean": 0.4, "vote": float("nan")})
    back = SongDecision.from_dict(decision.to_dict())
    assert back.rule == "vote" and decision.to_dict()["valid_accuracy"]["vote"] is None
    assert math.isnan(back.valid_accuracy["vote"]) and "vote (chosen on the validation songs" in back.describe()


def pooled_and_songs() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four songs: validation songs whose tiles mostly vote rock while one sure jazz tile pulls
    their mean to jazz; their label is rock."""
    rows = []
    for i, split in enumerate(["valid", "valid", "train", "test"]):
        rows.append({"song_id": f"s{i}", "n_tiles": 4, "tiles_correct": 3, "probs": np.array([0.55, 0.45]),
                     "embedding": np.array([1.0, 0.0, 0.0]), "votes": np.array([1.0, 3.0])})
    songs = pd.DataFrame({"song_id": [f"s{i}" for i in range(4)], "path": [f"/m/{i}.mp3" for i in range(4)],
                          "label": ["rock"] * 4, "split": ["valid", "valid", "train", "test"], "artist": [None] * 4})
    return pd.DataFrame(rows), songs


def test_the_index_decides_every_song_by_the_rule_validation_chose():
    pooled, songs = pooled_and_songs()
    rows, threshold, decision = decide_genres(pooled, songs, LABELS, IndexConfig())
    assert decision.rule == "vote" and decision.valid_accuracy == {"mean": 0.0, "vote": 1.0}
    assert [row["predicted"] for row in rows] == ["rock"] * 4
    assert rows[0]["confidence"] == pytest.approx(0.75) and rows[0]["top_genres"] == ["rock", "jazz"]
    assert rows[0]["top_probs"] == pytest.approx([0.75, 0.25]) and rows[0]["probs"] == pytest.approx([0.55, 0.45])
    assert rows[0]["votes"] == [1.0, 3.0]
    mean_rows, _, mean_rule = decide_genres(pooled, songs, LABELS, IndexConfig(decision="mean"))
    assert mean_rule.rule == "mean" and mean_rows[0]["predicted"] == "jazz"
    assert mean_rows[0]["confidence"] == pytest.approx(0.55)
