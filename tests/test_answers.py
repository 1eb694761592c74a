"""Reading the predictions table for answers: scalar columns apart, vector columns as matrices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from genre_batch.answers import SCALAR_COLUMNS, list_column_matrix
from genre_batch.errors import GenreBatchError


def test_scalar_columns_leave_out_every_list_column():
    assert "song_id" in SCALAR_COLUMNS and "confidence" in SCALAR_COLUMNS
    assert not {"embedding", "probs", "top_genres", "top_probs"} & set(SCALAR_COLUMNS)


def test_list_column_matrix_from_fixed_size_and_plain_lists_across_chunks():
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    fixed = pa.chunked_array([
        pa.FixedSizeListArray.from_arrays(pa.array(values[:1].ravel()), 3),
        pa.FixedSizeListArray.from_arrays(pa.array(values[1:].ravel()), 3),
    ])
    np.testing.assert_array_equal(list_column_matrix(fixed, "embedding"), values)
    plain = pa.chunked_array([pa.array(values.tolist(), pa.list_(pa.float32()))]).slice(1)  # offsets not at 0
    matrix = list_column_matrix(plain, "probs")
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, values[1:])
    assert list_column_matrix(pa.chunked_array([], pa.list_(pa.float32())), "probs").shape == (0, 0)


@pytest.mark.parametrize("rows", [[[1.0, 2.0], [3.0]], [[1.0, 2.0], None], [[1.0], [2.0, 3.0, 4.0]]])
def test_list_column_matrix_refuses_ragged_or_missing_rows(rows):
    with pytest.raises(GenreBatchError, match="'probs': rows of different lengths or nulls"):
        list_column_matrix(pa.chunked_array([pa.array(rows, pa.list_(pa.float32()))]), "probs")


def test_the_answers_benchmark_runs(tmp_path):
    """benchmarks/answers.py on a small table: it runs and prints its ratios (no timing asserted)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "answers.py"
    out = subprocess.run([sys.executable, str(script), "--songs", "300", "--repeat", "1", "--dir", str(tmp_path),
                          "--json", str(tmp_path / "figures.json")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "(a)/(b)" in out.stdout and "(a)/(b + c)" in out.stdout
    assert (tmp_path / "figures.json").exists()


def test_filled_genres_label_first_then_prediction_then_none():
    import pandas as pd

    from genre_batch.answers import FILLED_GENRE_COLUMNS, filled_genres

    predictions = pd.DataFrame({
        "song_id": ["a", "b", "c", "d"],
        "path": ["/m/d.mp3", "/m/c.mp3", "/m/b.mp3", "/m/a.mp3"],
        "label": ["jazz", None, None, "rock"],
        "artist": ["X", None, "Y", None],
        "predicted": ["rock", "folk", "metal", "rock"],
        "genre": ["rock", "folk", "unknown", "rock"],  # the index's answer, label or not
        "confidence": np.array([0.91, 0.8, 0.31, 0.7], dtype=np.float32),
    })
    table = filled_genres(predictions)
    assert list(table.columns) == FILLED_GENRE_COLUMNS
    assert table["path"].tolist() == ["/m/a.mp3", "/m/b.mp3", "/m/c.mp3", "/m/d.mp3"]
    by_id = table.set_index("song_id")
    assert (by_id.loc["a", "genre"], by_id.loc["a", "source"], by_id.loc["a", "predicted"]) == ("jazz", "label", "rock")
    assert (by_id.loc["b", "genre"], by_id.loc["b", "source"]) == ("folk", "predicted")
    assert (by_id.loc["c", "genre"], by_id.loc["c", "source"], by_id.loc["c", "predicted"]) == ("", "unknown", "metal")
    assert by_id.loc["c", "confidence"] == pytest.approx(0.31)
    only = filled_genres(predictions, unlabelled_only=True)
    assert only["song_id"].tolist() == ["c", "b"]  # by path


def test_filled_genres_read_back_as_a_labels_csv(tmp_path):
    """The CSV `genres --out` writes is a labels CSV: full paths, an unknown song unlabelled."""
    import pandas as pd

    from genre_batch.answers import filled_genres
    from genre_batch.labels import parse_labels_csv

    predictions = pd.DataFrame({
        "song_id": ["a", "b"], "path": [f"{tmp_path}/rock/a.mp3", f"{tmp_path}/b.mp3"], "label": [None, None],
        "artist": ["Son House", None], "predicted": ["blues", "jazz"], "genre": ["blues", "unknown"],
        "confidence": [0.9, 0.2],
    })
    rows = parse_labels_csv(filled_genres(predictions).to_csv(index=False))
    assert rows[f"{tmp_path}/rock/a.mp3"].genre == "blues" and rows[f"{tmp_path}/rock/a.mp3"].artist == "Son House"
    assert rows[f"{tmp_path}/b.mp3"].genre is None


def test_the_evaluation_text_counts_songs_of_genres_the_model_never_saw():
    from genre_batch.commands import format_evaluation

    rule = {"threshold": 0.4, "coverage": 0.9, "accuracy_accepted": 0.8, "accuracy_all": 0.75}
    part = {"songs": 8, "songs_with_unknown_genre": 0, "song_accuracy": 0.75, "tile_accuracy": 0.7,
            "genre_precision_at_10": 0.6, "unknown_rule": rule, "per_genre": {"folk": 0.5, "rock": float("nan")}}
    report = {"index_version": "v1", "model_run": "run", "annoy_recall_at_10": 1.0,
              "valid": part, "test": {**part, "songs": 0, "songs_with_unknown_genre": 7, "song_accuracy": float("nan")}}
    text = format_evaluation(report, 10)
    assert "  valid: 8 songs, song accuracy 0.750," in text
    assert "  test: 0 songs (+7 of genres not in training, not scored), song accuracy n/a," in text
    assert "per genre: folk 0.500, rock n/a" in text
