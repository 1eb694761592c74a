"""Reading and writing the Parquet tables by URI, schemas and config metadata included."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genre_batch import schemas
from genre_batch.errors import DamagedFileError
from genre_batch.storage import FileSum, pyarrow_filesystem, storage_errors, write_bytes


def read_table(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    fs, path = pyarrow_filesystem(uri)
    with storage_errors("read", uri):
        try:
            return pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)
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
