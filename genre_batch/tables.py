"""Reading and writing the Parquet tables by URI, schemas and config metadata included."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from genre_batch import schemas
from genre_batch.storage import pyarrow_filesystem, storage_errors


def read_table(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    fs, path = pyarrow_filesystem(uri)
    with storage_errors("read", uri):
        return pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)


def read_frame(uri: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return read_table(uri, columns).to_pandas()


def write_rows(
    rows: list[dict[str, Any]], schema: pa.Schema, uri: str, metadata: dict[str, Any], sort_by: str | None = None
) -> None:
    """Rows -> one Parquet file in ``schema``, carrying ``metadata`` (configs) with it."""
    table = pa.Table.from_pylist(rows, schema=schemas.with_metadata(schema, metadata))
    if sort_by and table.num_rows:
        table = table.sort_by(sort_by)
    write_table(table, uri)


def write_table(table: pa.Table, uri: str, row_group_size: int | None = None) -> None:
    fs, path = pyarrow_filesystem(uri)
    with storage_errors("write", uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=fs, compression="zstd", row_group_size=row_group_size)
