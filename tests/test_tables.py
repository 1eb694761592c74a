"""Parquet tables by URI: read back as written, on a local disk and from a remote store, with no
Arrow thread calling back into Python for a remote read."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

from genre_batch.errors import DamagedFileError
from genre_batch.storage import write_bytes
from genre_batch.tables import read_frame, read_table, write_table

# Several row groups, so that a reader that reads ahead has more than one range to fetch.
TABLE = pa.table({"song_id": [f"{i:016x}" for i in range(20_000)], "value": np.arange(20_000, dtype=np.float32)})


@pytest.fixture
def memory_uri():
    """A URI in fsspec's in-memory filesystem: a remote store as far as the code can tell
    (fsspec, not the local disk), in this process; removed afterwards."""
    uri = "memory://gb-tables-test/table.parquet"
    yield uri
    MemoryFileSystem().rm("/gb-tables-test", recursive=True)


@pytest.fixture
def reading_threads(monkeypatch):
    """Names of the threads that read from a file of fsspec's in-memory filesystem."""
    names: set[str] = set()
    for method in ("read", "seek"):
        original = getattr(MemoryFile, method)

        def spy(self, *args, _original=original):
            names.add(threading.current_thread().name)
            return _original(self, *args)

        monkeypatch.setattr(MemoryFile, method, spy)
    return names


def test_local_table_round_trip(tmp_path):
    uri = str(tmp_path / "table.parquet")
    write_table(TABLE, uri, row_group_size=2_000)
    assert read_table(uri).equals(TABLE)
    assert read_table(f"file://{uri}", ["value"]).column_names == ["value"]


def test_remote_table_is_read_on_the_calling_thread_only(memory_uri, reading_threads):
    write_table(TABLE, memory_uri, row_group_size=2_000)
    table = read_table(memory_uri, ["song_id", "value"])
    assert table.equals(TABLE)
    # An Arrow thread in there ("Dummy-N" to Python) is one that may still hold the file when
    # the interpreter exits, and abort the process after the command has answered.
    assert reading_threads == {threading.current_thread().name}
    assert read_frame(memory_uri, ["value"])["value"].sum() == TABLE.column("value").to_numpy().sum()


def test_truncated_remote_table_is_one_error_naming_it(memory_uri):
    write_table(TABLE, memory_uri)
    whole = MemoryFileSystem().cat_file(memory_uri.removeprefix("memory://"))
    write_bytes(memory_uri, whole[: len(whole) // 2])
    with pytest.raises(DamagedFileError, match=f"{memory_uri} is damaged: not a readable Parquet file"):
        read_table(memory_uri)
