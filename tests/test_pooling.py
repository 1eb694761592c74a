"""Song pooling, genre decisions and the unknown-threshold rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genre_batch.pooling import (
    UNKNOWN,
    apply_threshold,
    choose_threshold,
    decide_genre,
    pool_song,
)

LABELS = ["blues", "jazz", "metal", "pop"]


def test_pool_song_means_and_normalises() -> None:
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]])
    embeddings = np.array([[3.0, 0.0], [3.0, 8.0]])  # mean (3, 4), norm 5
    song_probs, song_embedding = pool_song(probs, embeddings)
    np.testing.assert_allclose(song_probs, [0.4, 0.4, 0.1, 0.1], atol=1e-7)
    np.testing.assert_allclose(song_embedding, [0.6, 0.8], atol=1e-7)
    assert song_probs.dtype == np.float32 and song_embedding.dtype == np.float32
    assert song_probs.shape == (4,) and song_embedding.shape == (2,)


def test_pool_song_zero_embedding_stays_zero() -> None:
    _, song_embedding = pool_song(np.full((2, 3), 1 / 3), np.array([[1.0, -2.0], [-1.0, 2.0]]))
    assert np.all(song_embedding == 0.0)
    assert not np.isnan(song_embedding).any()


@pytest.mark.parametrize(
    "probs, embeddings",
    [
        (np.zeros((0, 4)), np.zeros((0, 2))),  # no tiles
        (np.full((2, 4), 0.25), np.zeros((3, 2))),  # tile counts differ
        (np.full(4, 0.25), np.zeros((1, 2))),  # wrong rank
        (np.array([[np.nan, 1.0]]), np.ones((1, 2))),
    ],
)
def test_pool_song_rejects_bad_input(probs: np.ndarray, embeddings: np.ndarray) -> None:
    with pytest.raises(ValueError):
        pool_song(probs, embeddings)


def test_decide_genre_top3_order_and_accept() -> None:
    decision = decide_genre(np.array([0.1, 0.2, 0.6, 0.1]), LABELS, threshold=0.5)
    assert decision.genre == "metal" and decision.predicted == "metal"
    assert decision.confidence == pytest.approx(0.6)
    assert [label for label, _ in decision.top] == ["metal", "jazz", "blues"]  # tie blues/pop -> first listed
    assert [p for _, p in decision.top] == pytest.approx([0.6, 0.2, 0.1])
    json.dumps(decision.to_dict())


def test_decide_genre_unknown_below_threshold() -> None:
    decision = decide_genre(np.array([0.3, 0.35, 0.2, 0.15]), LABELS, threshold=0.4)
    assert decision.genre == UNKNOWN and decision.is_unknown
    assert decision.predicted == "jazz"
    assert decision.confidence == pytest.approx(0.35)
    # Exactly at the threshold is accepted (>=), matching apply_threshold.
    assert decide_genre(np.array([0.3, 0.35, 0.2, 0.15]), LABELS, threshold=0.35).genre == "jazz"
    assert apply_threshold(np.array([0.34, 0.35, 0.36]), 0.35).tolist() == [False, True, True]


def test_decide_genre_rejects_label_mismatch() -> None:
    with pytest.raises(ValueError):
        decide_genre(np.array([0.5, 0.5]), LABELS, threshold=0.0)


def test_choose_threshold_perfect_separation_picks_lowest_correct_confidence() -> None:
    # Right answers all have confidence >= 0.7, wrong ones <= 0.5.
    confidences = np.array([0.9, 0.8, 0.75, 0.7, 0.5, 0.4, 0.3, 0.95])
    correct = np.array([True, True, True, True, False, False, False, True])
    choice = choose_threshold(confidences, correct, target_accuracy=1.0, min_coverage=0.5)
    assert choice.threshold == pytest.approx(0.7)
    assert choice.coverage == pytest.approx(5 / 8)
    assert choice.accuracy == pytest.approx(1.0)
    assert choice.n_songs == 8
    assert "Lowest threshold" in choice.rule


def test_choose_threshold_lowest_qualifying_threshold() -> None:
    # Sorted by confidence: 0.2 F, 0.4 T, 0.5 F, 0.6 T, 0.7 T, 0.8 T, 0.9 T, 0.95 T, 0.97 T, 0.99 T
    confidences = np.array([0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99])
    correct = np.array([False, True, False, True, True, True, True, True, True, True])
    # t=0.4 keeps 9 songs, 8 right (0.889); t=0.5 keeps 8, 7 right (0.875); t=0.6 keeps 7, all right.
    choice = choose_threshold(confidences, correct, target_accuracy=0.88, min_coverage=0.5)
    assert choice.threshold == pytest.approx(0.4)
    assert choice.accuracy == pytest.approx(8 / 9)
    assert choice.coverage == pytest.approx(0.9)
    # A stricter target moves the threshold up to the first one that meets it.
    assert choose_threshold(confidences, correct, 0.95, 0.5).threshold == pytest.approx(0.6)


def test_choose_threshold_everything_right_gives_zero() -> None:
    choice = choose_threshold(np.array([0.3, 0.6, 0.9]), np.array([True, True, True]), floor_quantile=0.0)
    assert choice.threshold == 0.0 and choice.coverage == 1.0 and choice.accuracy == 1.0


def test_the_floor_lifts_a_zero_threshold_to_the_right_answers_lowest_confidences() -> None:
    """A model right often enough gets threshold 0 from the accuracy rule; the floor still
    refuses what is less sure than nearly all of its right validation answers."""
    rng = np.random.default_rng(0)
    right = rng.uniform(0.5, 1.0, 95)
    confidences = np.concatenate([right, [0.3, 0.35, 0.4, 0.45, 0.9]])
    correct = np.concatenate([np.ones(95, bool), np.zeros(5, bool)])
    assert choose_threshold(confidences, correct, floor_quantile=0.0).threshold == 0.0  # 95 % right
    choice = choose_threshold(confidences, correct)  # default floor: 5 %
    floor = np.quantile(right, 0.05, method="lower")
    assert choice.threshold == pytest.approx(floor) and choice.floor_quantile == 0.05
    assert np.sum(right < choice.threshold) == 4  # 4 of the 95 right answers become unknown
    assert choice.coverage == pytest.approx(92 / 100)  # and 4 of the 5 wrong ones
    assert choice.accuracy == pytest.approx(91 / 92)
    assert "raised to" in choice.rule and "5% quantile" in choice.rule
    # A threshold the accuracy rule already puts above the floor stays where it is.
    strict = choose_threshold(confidences, correct, target_accuracy=1.0, min_coverage=0.1)
    assert strict.threshold == pytest.approx(right[right > 0.9].min()) and strict.accuracy == 1.0
    assert "raised" not in strict.rule


def test_the_floor_keeps_the_minimum_coverage() -> None:
    confidences = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.95])
    correct = np.array([True, True, True, True, False, True])
    # floor_quantile 0.9 of the right answers' confidences is 0.4, which would keep 3/6 songs.
    choice = choose_threshold(confidences, correct, target_accuracy=0.5, min_coverage=0.6, floor_quantile=0.9)
    assert choice.threshold == pytest.approx(0.3) and choice.coverage == pytest.approx(4 / 6)
    assert "as far as the minimum coverage allows" in choice.rule
    with pytest.raises(ValueError, match="floor_quantile"):
        choose_threshold(confidences, correct, floor_quantile=1.0)


def test_choose_threshold_impossible_target_falls_back_to_best_accuracy_with_coverage() -> None:
    # Sorted: 0.1 F, 0.2 T, 0.3 F, 0.4 T, 0.5 F, 0.6 T, 0.7 F, 0.8 T, 0.9 T, 0.95 F
    confidences = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    correct = np.array([False, True, False, True, False, True, False, True, True, False])
    # Accuracy by threshold (coverage): 0/0.1 -> 5/10 (1.0), 0.2 -> 5/9, 0.3 -> 4/8, 0.4 -> 4/7 (0.7),
    # 0.5 -> 3/6 (0.6), then too few songs: 0.6 -> 3/5 (0.5), 0.7 -> 2/4, 0.8 -> 2/3 (0.3), 0.9 -> 1/2, 0.95 -> 0.
    # Best with coverage >= 0.6 is 4/7 at 0.4, not the higher 3/5 at 0.6 or 2/3 at 0.8.
    choice = choose_threshold(confidences, correct, target_accuracy=0.99, min_coverage=0.6)
    assert choice.threshold == pytest.approx(0.4)
    assert choice.accuracy == pytest.approx(4 / 7)
    assert choice.coverage == pytest.approx(0.7)
    assert choice.coverage >= choice.min_coverage
    assert "No threshold reached" in choice.rule


def test_choose_threshold_fallback_tie_takes_lowest() -> None:
    # Every threshold keeping >= 50% has accuracy 0.5: choose 0.
    choice = choose_threshold(np.array([0.2, 0.4, 0.6, 0.8]), np.array([True, False, True, False]), 0.9, 0.5)
    assert choice.threshold == 0.0
    assert choice.accuracy == pytest.approx(0.5)


def test_choose_threshold_empty() -> None:
    choice = choose_threshold(np.array([]), np.array([], dtype=bool))
    assert choice.threshold == 0.0 and choice.n_songs == 0
    assert "No validation songs" in choice.rule
    payload = json.loads(json.dumps(choice.to_dict()))
    assert payload["coverage"] is None and payload["threshold"] == 0.0


def test_choose_threshold_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        choose_threshold(np.array([0.5]), np.array([True, False]))
    with pytest.raises(ValueError):
        choose_threshold(np.array([0.5]), np.array([True]), target_accuracy=1.5)


def test_pooling_in_parts_equals_pooling_whole_songs() -> None:
    """Batches reduced to per-song sums and merged give what pool_song gives on whole songs,
    whatever the batch boundaries (a song's tiles may fall in several batches)."""
    from genre_batch.pooling import merge_song_sums, pooled_songs, song_sums

    rng = np.random.default_rng(7)
    songs = np.repeat(["s3", "s1", "s2", "s0"], [5, 1, 7, 3])
    labels = {"s3": 2, "s1": 0, "s2": -1, "s0": 1}  # s2 is unlabelled
    logits = rng.normal(size=(len(songs), 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    embeddings = rng.normal(size=(len(songs), 6))
    label_ids = np.array([labels[s] for s in songs])
    order = rng.permutation(len(songs))  # batches do not follow songs
    parts = [song_sums(songs[i], probs[i], embeddings[i], label_ids[i]) for i in np.array_split(order, 5)]
    pooled = pooled_songs(merge_song_sums(parts))

    assert pooled["song_id"].tolist() == ["s0", "s1", "s2", "s3"]
    for row, song in enumerate(pooled["song_id"]):
        mask = songs == song
        want_probs, want_embedding = pool_song(probs[mask], embeddings[mask])
        np.testing.assert_allclose(pooled["probs"][row], want_probs, atol=1e-6)
        np.testing.assert_allclose(pooled["embedding"][row], want_embedding, atol=1e-6)
        assert pooled["n_tiles"][row] == mask.sum()
        hits = int((probs[mask].argmax(axis=1) == labels[song]).sum()) if labels[song] >= 0 else -1
        assert pooled["tiles_correct"][row] == hits
