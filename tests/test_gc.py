"""`genre-batch gc`: the unpublished versions of dead runs go, after a grace period; a published
version, a version something published reads, and a run still writing never do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from genre_batch.cli import main
from genre_batch.config import FeatureConfig, ModelConfig, SplitConfig
from genre_batch.layout import RootLayout
from genre_batch.manifests import IndexManifest, IngestManifest
from genre_batch.pooling import choose_threshold
from genre_batch.retention import collect_garbage
from genre_batch.storage import publish

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(hours=24)


def ingest_version(layout: RootLayout, name: str, shards_of: str | None = None) -> None:
    manifest = IngestManifest(
        version=name, catalogue="/c", labels="folder", feature_config=FeatureConfig(), split_config=SplitConfig(),
        tiles=(f"{shards_of or name}/tiles/part-1.parquet",), counts={"songs": 1}, splits={"train": 1})
    (Path(layout.ingest_dir(name)) / "tiles").mkdir(parents=True, exist_ok=True)
    manifest.write(layout.ingest_manifest(name))


def index_version(layout: RootLayout, name: str, ingest: str) -> None:
    manifest = IndexManifest(
        version=name, model_run="m", model_uri="/m", model_sha256="0" * 64, ingest_version=ingest, labels=("a", "b"),
        feature_config=FeatureConfig(), model_config=ModelConfig(), embedding_dim=128, n_trees=1, songs=1,
        threshold=choose_threshold([0.9], [True]))
    manifest.write(layout.index_manifest(name))


def dead(layout_dir: str, name: str) -> None:
    """A version a killed run left: files, no manifest."""
    (Path(layout_dir) / name / "tiles").mkdir(parents=True)
    (Path(layout_dir) / name / "tiles" / "part-x.parquet").write_bytes(b"half")


def test_gc_removes_dead_runs_leftovers_and_nothing_in_use(tmp_path):
    layout = RootLayout(str(tmp_path))
    old, live, refused = "20261130T000000Z-aaaaaa", "20261201T000000Z-bbbbbb", "20261201T060000Z-cccccc"
    ingest_version(layout, old)
    ingest_version(layout, live, shards_of=old)  # a nightly version: its shards live in `old`
    publish(layout.ingest_area, live)
    ingest_version(layout, refused)  # finished after a newer run had published: never published
    dead(layout.ingest_area, "20261130T120000Z-dddddd")
    dead(layout.ingest_area, "20261202T110000Z-eeeeee")  # begun an hour ago: may still be writing
    index_version(layout, "20261201T010000Z-ffffff", ingest=old)
    publish(layout.index_area, "20261201T010000Z-ffffff")
    dead(layout.index_area, "20261201T020000Z-abcabc")

    removed = collect_garbage(layout, DAY, dry_run=True, now=NOW)
    assert sorted(Path(uri).name for uri in removed) == [
        "20261130T120000Z-dddddd", "20261201T020000Z-abcabc", refused]
    assert all(Path(uri).exists() for uri in removed)  # a dry run
    assert sorted(collect_garbage(layout, DAY, now=NOW)) == sorted(removed)
    assert not any(Path(uri).exists() for uri in removed)
    for kept in (old, live, "20261202T110000Z-eeeeee"):
        assert (Path(layout.ingest_area) / kept).exists()
    assert (Path(layout.index_area) / "20261201T010000Z-ffffff").exists()
    assert collect_garbage(layout, DAY, now=NOW) == []  # nothing left to do


def test_gc_command(tmp_path, capsys):
    layout = RootLayout(str(tmp_path))
    dead(layout.ingest_area, "20200101T000000Z-aaaaaa")
    assert main(["gc", "--root", str(tmp_path), "--dry-run"]) == 0
    assert "would remove 1 unpublished" in capsys.readouterr().out
    assert main(["gc", "--root", str(tmp_path)]) == 0
    assert "removed 1 unpublished" in capsys.readouterr().out
    assert not (Path(layout.ingest_area) / "20200101T000000Z-aaaaaa").exists()
    assert main(["gc", "--root", str(tmp_path), "--grace", "-1"]) == 1
