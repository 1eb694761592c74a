"""What the training workers are fed: the labelled train and valid tiles, read in one go
when small (genre_batch.training.small_split_blocks)."""

from __future__ import annotations

import pyarrow as pa
import pytest
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genre_batch import schemas
from genre_batch import training


def write_shard(path, rows: list[tuple[str, int, str | None, str]]) -> None:
    table = pa.table(
        {
            "song_id": [r[0] for r in rows],
            "tile_index": pa.array([r[1] for r in rows], pa.int32()),
            "start_s": pa.array([0.0] * len(rows), pa.float32()),
            "tile": [f"{r[0]}:{r[1]}".encode() for r in rows],
            "label": [r[2] for r in rows],
            "split": [r[3] for r in rows],
        },
        schema=schemas.TILES,
    )
    pq.write_table(table, path)


def test_small_splits_keep_exactly_the_labelled_train_and_valid_tiles(tmp_path):
    write_shard(tmp_path / "a.parquet", [("s1", 0, "rock", "train"), ("s1", 1, "rock", "train"),
                                         ("s2", 0, "jazz", "valid"), ("s3", 0, "jazz", "test")])
    write_shard(tmp_path / "b.parquet", [("s4", 0, None, "train"), ("s5", 0, "polka", "train"),
                                         ("s6", 0, "rock", "train"), ("s6", 1, "rock", "train"),
                                         ("s6", 2, "rock", "train")])
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    blocks = training.small_split_blocks(pafs.LocalFileSystem(), paths, ["jazz", "rock"], block_tiles=2)

    assert [b.num_rows for b in blocks["train"]] == [2, 2, 1]  # unlabelled, polka and test left out
    tiles = [t for b in blocks["train"] for t in b.column("tile").to_pylist()]
    assert tiles == [b"s1:0", b"s1:1", b"s6:0", b"s6:1", b"s6:2"]
    assert [b.column("tile").to_pylist() for b in blocks["valid"]] == [[b"s2:0"]]
    assert all(b.column_names == ["song_id", "tile", "label", "split"] for b in blocks["train"] + blocks["valid"])


def test_a_split_with_no_tiles_is_one_empty_block(tmp_path):
    write_shard(tmp_path / "a.parquet", [("s1", 0, "rock", "train"), ("s2", 0, "jazz", "train")])
    blocks = training.small_split_blocks(pafs.LocalFileSystem(), [str(tmp_path / "a.parquet")], ["jazz", "rock"])
    assert [b.num_rows for b in blocks["valid"]] == [0]
    assert blocks["valid"][0].schema.names == ["song_id", "tile", "label", "split"]


def test_the_same_tiles_come_in_one_order_whatever_the_shards(tmp_path):
    """Shard names are random and which songs share a shard depends on the tasks: the training
    input must not, or the same catalogue and seed would train different models."""
    rows = [("s3", 1, "rock", "train"), ("s1", 0, "jazz", "train"), ("s3", 0, "rock", "train"),
            ("s2", 0, "jazz", "valid"), ("s1", 1, "jazz", "train"), ("s4", 0, "rock", "train")]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    write_shard(one / "part-ffff.parquet", rows[:3])
    write_shard(one / "part-0000.parquet", rows[3:])
    write_shard(two / "part-aaaa.parquet", rows[::2])
    write_shard(two / "part-bbbb.parquet", rows[1::2])

    def tiles(folder) -> dict[str, list[bytes]]:
        paths = sorted(str(p) for p in folder.iterdir())
        blocks = training.small_split_blocks(pafs.LocalFileSystem(), paths, ["jazz", "rock"])
        return {split: [t for b in bs for t in b.column("tile").to_pylist()] for split, bs in blocks.items()}

    assert tiles(one) == tiles(two) == {"train": [b"s1:0", b"s1:1", b"s3:0", b"s3:1", b"s4:0"], "valid": [b"s2:0"]}


@pytest.mark.slow
def test_past_the_drivers_share_ray_data_builds_the_same_cache_and_then_streams(tmp_path, ray_local, monkeypatch):
    """Bigger caches are built by Ray Data's tasks (the driver holds no tile): the same rows in
    the same order as the driver's read; past the object store's share, the same rows streamed."""
    from types import SimpleNamespace

    import pandas as pd

    from pipelines import train

    rows = [("s3", 1, "rock", "train"), ("s1", 0, "jazz", "train"), ("s3", 0, "rock", "train"),
            ("s2", 0, "jazz", "valid"), ("s1", 1, "jazz", "train"), ("s4", 0, None, "train"), ("s5", 0, "rock", "test")]
    write_shard(tmp_path / "part-b.parquet", rows[:4])
    write_shard(tmp_path / "part-a.parquet", rows[4:])
    uris = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    ingest = SimpleNamespace(tile_uris=uris, feature_config=SimpleNamespace(tile_bytes=4))
    songs = pd.DataFrame({"split": ["train", "valid", "train", "train"], "label": ["jazz", "jazz", "rock", None],
                          "n_tiles": [2, 1, 2, 1]})

    def tiles(datasets) -> dict[str, list[bytes]]:
        return {split: [row["tile"] for row in ds.take_all()] for split, ds in datasets.items()}

    by_driver = tiles(train.tile_datasets(ingest, ["jazz", "rock"], songs))
    assert by_driver == {"train": [b"s1:0", b"s1:1", b"s3:0", b"s3:1"], "valid": [b"s2:0"]}
    monkeypatch.setattr(train, "DRIVER_READ_BYTES", 0)
    assert tiles(train.tile_datasets(ingest, ["jazz", "rock"], songs)) == by_driver
    monkeypatch.setattr(train, "IN_MEMORY_SHARE", 0.0)
    streamed = tiles(train.tile_datasets(ingest, ["jazz", "rock"], songs))
    assert {split: sorted(t) for split, t in streamed.items()} == by_driver
