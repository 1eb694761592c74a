"""Reading and writing the Parquet tables by URI, schemas and config metadata included."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genre_batch import schemas
from genre_batch.errors import DamagedFileError
from genre_batch.storage import FileSum, is_local, normalise_uri, read_bytes, storage_errors, write_bytes


def read_table(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file, whole or some of its columns.

    A remote file is fetched whole by fsspec on this thread and parsed from memory. Handed an
    fsspec file instead, Arrow reads it ahead from threads of its own that call back into
    Python, and one still holding the file when the interpreter exits aborts the process
    ("terminate called without an active exception", exit -6) after the command has answered.
    """
    column_list = list(columns) if columns else None
    with storage_errors("read", uri):
        try:
            if is_local(uri):
                return pq.read_table(normalise_uri(uri), filesystem=pafs.LocalFileSystem(), columns=column_list)
            return pq.read_table(pa.BufferReader(read_bytes(uri)), columns=column_list)
        except pa.ArrowInvalid as exc:  # truncated or not Parquet at all
            raise DamagedFileError(f"{uri} is damaged: not a readable Parquet file ({exc})") from None


def read_frame(uri: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return read_table(uri, columns).to_pandas()


def write_rows(
    rows: list[dict[str, Any]], schema: pa.Schema, uri: str, metadata: dict[str, Any], sort_by: str | None = None
) -> FileSum:
    """Rows -> one Parquet file in ``schema``, carrying ``metadata`` (configs) with it."""
    table = pa.Table.from_pylist(rows, schema=schemas.with_metadata(schema, metadata))
    if sort_by and table.num_rows:
        table = table.sort_by(sort_by)
    return write_table(table, uri)


def write_table(table: pa.Table, uri: str, row_group_size: int | None = None) -> FileSum:
    """One Parquet file (zstd), made in memory so that its size and SHA-256 are known for the
    manifest, then written whole (``storage.write_bytes``: atomic on a local disk)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    data = sink.getvalue().to_pybytes()
    write_bytes(uri, data)
    return FileSum.of(data)
