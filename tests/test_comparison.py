"""The comparison report without Ray: per-family mean and spread, the run it publishes, the
CSV and table it writes, the precision of similar songs, the plot."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pandas as pd
import pytest

from genre_batch.baseline import BaselineReport
from genre_batch.comparison import Comparison, RunRow, genre_precision_at_k, plot_comparison

BASELINE = BaselineReport(n_mfcc=20, l2=0.01, train_songs=10, valid_songs=4, test_songs=4, valid_song_accuracy=0.5,
                          test_song_accuracy=0.55, per_genre_test={"jazz": 0.5, "rock": 0.6})


def row(family: str, seed: int, valid: float, test: float) -> RunRow:
    return RunRow(family=family, seed=seed, run=f"{family}-seed{seed}-v", valid_song_accuracy=valid,
                  test_song_accuracy=test, valid_tile_accuracy=valid, test_tile_accuracy=test,
                  test_genre_precision_at_10=0.4, parameters=1000, seconds=10.0 + seed, tiles_per_s=50.0,
                  per_genre_test={"jazz": test, "rock": test})


COMPARISON = Comparison("compare-x", "v", (row("cnn", 0, 0.6, 0.5), row("cnn", 1, 0.8, 0.7),
                                           row("rnn", 0, 0.8, 0.9), row("rnn", 1, float("nan"), 0.1)), BASELINE)


def test_the_summary_is_mean_and_sample_sd_over_seeds_leaving_nan_out():
    summary = COMPARISON.summary()
    assert summary["cnn"]["test_song_accuracy"] == pytest.approx([0.6, np.std([0.5, 0.7], ddof=1)])
    assert summary["rnn"]["valid_song_accuracy"] == [0.8, 0.0]  # the NaN run counts for nothing
    assert summary["cnn"]["seeds"] == 2 and summary["cnn"]["parameters"] == 1000


def test_the_best_run_is_chosen_on_validation_first_of_equals():
    assert COMPARISON.best_run().run == "cnn-seed1-v"  # 0.8, before rnn's 0.8 (and not rnn's test 0.9)
    only_nan = Comparison("c", "v", (row("cnn", 0, float("nan"), 0.9), row("rnn", 0, 0.1, 0.1)), BASELINE)
    assert only_nan.best_run().run == "rnn-seed0-v"


def test_csv_and_table_carry_every_run_and_the_baseline():
    rows = list(csv.DictReader(io.StringIO(COMPARISON.csv())))
    assert [r["family"] for r in rows] == ["cnn", "cnn", "rnn", "rnn", "mfcc-baseline"]
    assert rows[-1]["test_song_accuracy"] == "0.55"
    table = COMPARISON.table()
    assert table.splitlines()[-1].split() == ["mfcc-baseline", "0.500", "0.550"]
    assert "0.600 ± 0.141" in table
    as_json = COMPARISON.to_dict()
    assert as_json["best_run"] == "cnn-seed1-v" and as_json["runs"][3]["valid_song_accuracy"] is None


def test_precision_of_similar_songs_leaves_the_query_out():
    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = ["jazz", "jazz", "rock", "rock"]
    assert genre_precision_at_k(embeddings, labels, [0, 2], k=1) == 1.0
    assert genre_precision_at_k(embeddings, labels, [0], k=3) == pytest.approx(1 / 3)
    assert math.isnan(genre_precision_at_k(embeddings, labels, [], k=1))


def test_the_plot_is_a_png(tmp_path):
    path = tmp_path / "report.png"
    plot_comparison(COMPARISON, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_of_another_recipe_is_another_run():
    import dataclasses

    from genre_batch.config import TrainConfig
    from pipelines.compare import recipe_tag

    base = TrainConfig()
    assert recipe_tag(base) == recipe_tag(dataclasses.replace(base, seed=5, num_workers=4, use_gpu=True))
    assert recipe_tag(base) != recipe_tag(dataclasses.replace(base, learning_rate=3e-4))
    assert recipe_tag(base) != recipe_tag(dataclasses.replace(base, mixup_alpha=0.2))
    assert len(recipe_tag(base)) == 7 and recipe_tag(base).startswith("r")


def test_the_vote_accuracy_decides_songs_by_the_tiles_votes_per_split():
    from genre_batch.comparison import vote_song_accuracy

    # Song a: the mean says "x" (one very sure tile) but two of three tiles vote "y".
    known = pd.DataFrame({
        "song_id": ["a", "b", "c"], "split": ["valid", "test", "test"], "label": ["y", "x", "y"],
        "n_tiles": [3, 2, 2],
        "probs": [np.array([0.6, 0.4]), np.array([0.9, 0.1]), np.array([0.8, 0.2])],
        "votes": [np.array([1, 2]), np.array([2, 0]), np.array([2, 0])],
    })
    assert vote_song_accuracy(known, ["x", "y"]) == {"valid": 1.0, "test": 0.5}
    assert np.isnan(vote_song_accuracy(known[known["split"] == "test"], ["x", "y"])["valid"])
