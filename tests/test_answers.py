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
