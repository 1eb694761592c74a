"""Storage by URI on the local filesystem: normalising, atomic writes, publishing, listing; the layout."""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import types
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from genre_batch import storage
from genre_batch.errors import GenreBatchError, NotPublishedError, StorageError
from genre_batch.layout import RootLayout
from genre_batch.storage import (
    LATEST,
    download_file,
    exists,
    join,
    latest_version,
    list_prefix,
    new_version,
    normalise_uri,
    publish,
    pyarrow_filesystem,
    read_bytes,
    read_json,
    read_text,
    relative_to,
    upload_file,
    walk_files,
    write_bytes,
    write_json,
)

# --- URIs -----------------------------------------------------------------------------


def test_normalise_uri_makes_relative_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalise_uri("data/songs") == str(tmp_path / "data" / "songs")
    assert normalise_uri("./data/../other/") == str(tmp_path / "other")
    assert normalise_uri(".") == str(tmp_path)


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("file:///srv/music/", "/srv/music"),
        ("file:///srv/music", "/srv/music"),
        ("/srv/music//", "/srv/music"),
        ("/", "/"),
        ("file:///", "/"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("s3://bucket", "s3://bucket"),
    ],
)
def test_normalise_uri(uri: str, expected: str) -> None:
    assert normalise_uri(uri) == expected


def test_normalise_uri_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalise_uri("~/music/") == str(tmp_path / "music")


@pytest.mark.parametrize(
    "base, parts, expected",
    [
        ("/root", ("ingest", "v1"), "/root/ingest/v1"),
        ("/root/", ("/ingest/", "/v1/"), "/root/ingest/v1"),
        ("file:///root", ("a/b",), "/root/a/b"),
        ("s3://bucket/p/", ("tiles", "part-0.parquet"), "s3://bucket/p/tiles/part-0.parquet"),
        ("/root", (), "/root"),
    ],
)
def test_join(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert join(base, *parts) == expected


def test_relative_to() -> None:
    assert relative_to("/data/music/blues/a.mp3", "/data/music/") == "blues/a.mp3"
    assert relative_to("file:///data/music/a.mp3", "/data/music") == "a.mp3"
    assert relative_to("s3://b/music/x/y.mp3", "s3://b/music") == "x/y.mp3"


@pytest.mark.parametrize("uri", ["/data/musicals/a.mp3", "/data/music", "/elsewhere/a.mp3"])
def test_relative_to_rejects_paths_outside_the_root(uri: str) -> None:
    with pytest.raises(ValueError, match="not under"):
        relative_to(uri, "/data/music")


def test_pyarrow_filesystem_for_local_paths(tmp_path: Path) -> None:
    fs, path = pyarrow_filesystem(f"file://{tmp_path}/x.parquet")
    assert isinstance(fs, pafs.LocalFileSystem)
    assert path == str(tmp_path / "x.parquet")


# --- reading and writing --------------------------------------------------------------


def test_write_bytes_creates_parents_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    uri = str(tmp_path / "a" / "b" / "blob.bin")
    payload = bytes(range(256)) * 100

    write_bytes(uri, payload)
    assert read_bytes(uri) == payload
    assert exists(uri)

    write_bytes(f"file://{uri}", b"replaced")  # overwrites in place
    assert read_bytes(uri) == b"replaced"
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["blob.bin"]


def test_read_bytes_of_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    assert not exists(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError):
        read_bytes(str(tmp_path / "missing"))


def test_write_bytes_failure_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(StorageError, match="could not write"):
        write_bytes(str(tmp_path / "a-file" / "child.bin"), b"x")  # parent is a file, not a folder


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", disk_full)
    with pytest.raises(StorageError):
        write_bytes(str(tmp_path / "out" / "model.pt"), b"x" * 1000)
    assert os.listdir(tmp_path / "out") == []


def test_json_round_trip(tmp_path: Path) -> None:
    uri = str(tmp_path / "manifest.json")
    payload = {"b": [1, 2.5, None], "a": {"nested": "é"}, "when": dt.date(2025, 1, 2)}

    write_json(uri, payload)

    assert read_json(uri) == {"a": {"nested": "é"}, "b": [1, 2.5, None], "when": "2025-01-02"}
    text = (tmp_path / "manifest.json").read_text(encoding="utf-8")
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")


def test_upload_and_download_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "local" / "model.pt"
    source.parent.mkdir()
    source.write_bytes(b"\x00weights\xff" * 1000)
    uri = str(tmp_path / "root" / "models" / "run-1" / "model.pt")

    upload_file(str(source), uri)
    target = tmp_path / "fresh" / "deep" / "model.pt"
    download_file(uri, str(target))

    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(FileNotFoundError):
        download_file(str(tmp_path / "root" / "nothing.pt"), str(tmp_path / "x.pt"))


# --- listing --------------------------------------------------------------------------


def test_walk_files_finds_nested_files_with_sizes(tmp_path: Path) -> None:
    files = {"a.mp3": 3, "blues/b.mp3": 5, "blues/deep/er/c.flac": 7, ".hidden": 1}
    for relative, size in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x" * size)
    (tmp_path / "empty-folder").mkdir()

    found = list(walk_files(str(tmp_path)))

    assert {relative_to(f.uri, str(tmp_path)): f.size for f in found} == files
    assert [f.uri for f in found] == sorted(f.uri for f in found)
    for info in found:
        assert os.path.isabs(info.uri)
        when = dt.datetime.fromisoformat(info.mtime)
        assert abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 3600


def test_walk_files_follows_links_once_and_keeps_broken_ones(tmp_path: Path) -> None:
    """A library of links: a link to a file is that file, a link to a folder is walked under
    its own name, a link back up the tree is not walked again, a broken link is kept (empty)."""
    store = tmp_path / "store"
    (store / "album").mkdir(parents=True)
    (store / "album" / "track.mp3").write_bytes(b"x" * 5)
    (store / "single.flac").write_bytes(b"x" * 7)
    library = tmp_path / "library"
    (library / "rock").mkdir(parents=True)
    (library / "rock" / "own.mp3").write_bytes(b"x" * 3)
    (library / "rock" / "single.flac").symlink_to(store / "single.flac")
    (library / "jazz").symlink_to(store / "album")
    (library / "rock" / "gone.mp3").symlink_to(tmp_path / "deleted.mp3")
    (library / "rock" / "up").symlink_to(library)

    found = {relative_to(f.uri, str(library)): f for f in walk_files(str(library))}

    assert {path: f.size for path, f in found.items()} == {
        "jazz/track.mp3": 5, "rock/gone.mp3": 0, "rock/own.mp3": 3, "rock/single.flac": 7,
    }
    assert found["rock/single.flac"].mtime == walk_one(store / "single.flac").mtime


def walk_one(path: Path):
    (info,) = [f for f in walk_files(str(path.parent)) if f.uri == str(path)]
    return info


def test_walk_files_of_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        list(walk_files(str(tmp_path / "nowhere")))


def test_walk_files_of_a_file_asks_for_its_folder(tmp_path: Path) -> None:
    (tmp_path / "song.mp3").write_bytes(b"x")
    with pytest.raises(StorageError, match="song.mp3 is a file: give the folder"):
        list(walk_files(str(tmp_path / "song.mp3")))
    (tmp_path / "linked").symlink_to(tmp_path)  # a catalogue that is a link to a folder is walked
    assert [f.uri for f in walk_files(str(tmp_path / "linked"))] == [str(tmp_path / "linked" / "song.mp3")]


def test_list_prefix(tmp_path: Path) -> None:
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "deep").mkdir(parents=True)
    (tmp_path / LATEST).write_text("v2\n")
    assert list_prefix(str(tmp_path)) == [LATEST, "v1", "v2"]
    assert list_prefix(f"{tmp_path}/") == [LATEST, "v1", "v2"]
    assert list_prefix(str(tmp_path / "missing")) == []


# --- versions and publishing ----------------------------------------------------------


def test_latest_version_before_publishing_raises(tmp_path: Path) -> None:
    with pytest.raises(NotPublishedError, match="no ingest published yet"):
        latest_version(str(tmp_path / "ingest"), "ingest")


def test_publish_points_latest_at_the_last_version(tmp_path: Path) -> None:
    area = str(tmp_path / "ingest")
    first, second = new_version(), new_version()

    publish(area, first)
    assert latest_version(area, "ingest") == first
    publish(area, second)

    assert latest_version(area, "ingest") == second
    assert (tmp_path / "ingest" / LATEST).read_text().strip() == second
    assert sorted(os.listdir(tmp_path / "ingest")) == [LATEST]  # no temporary files left


def test_new_version_is_unique_and_utc_stamped() -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    versions = [new_version() for _ in range(200)]
    after = dt.datetime.now(dt.timezone.utc)

    assert len(set(versions)) == len(versions)
    for version in versions:
        match = re.fullmatch(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}", version)
        assert match, version
        stamp = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        assert before <= stamp <= after


def test_new_versions_sort_in_time_order(monkeypatch: pytest.MonkeyPatch) -> None:
    times = [
        dt.datetime(2025, 9, 30, 23, 59, 59, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 10, 1, 0, 0, 0, tzinfo=dt.timezone.utc),  # single digit -> two digit month
        dt.datetime(2025, 10, 1, 0, 0, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 1, 1, 0, 0, 0, tzinfo=dt.timezone.utc),
    ]
    now = iter(times)

    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return next(now)

    monkeypatch.setattr(storage, "dt", types.SimpleNamespace(datetime=FrozenClock, timezone=dt.timezone))
    versions = [new_version() for _ in times]

    assert sorted(versions) == versions
    assert versions[1].startswith("20251001T000000Z-")


# --- layout ---------------------------------------------------------------------------


def layout_paths(layout: RootLayout, version: str) -> dict[str, str]:
    return {
        "ingest_area": layout.ingest_area,
        "ingest_dir": layout.ingest_dir(version),
        "tiles_dir": layout.tiles_dir(version),
        "songs_table": layout.songs_table(version),
        "errors_table": layout.errors_table(version),
        "ingest_manifest": layout.ingest_manifest(version),
        "models_area": layout.models_area,
        "model_dir": layout.model_dir(version),
        "model_file": layout.model_file(version),
        "model_metrics": layout.model_metrics(version),
        "index_area": layout.index_area,
        "index_dir": layout.index_dir(version),
        "annoy_file": layout.annoy_file(version),
        "predictions_table": layout.predictions_table(version),
        "index_manifest": layout.index_manifest(version),
        "evaluation_dir": layout.evaluation_dir(version),
    }


def test_layout_paths_are_under_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    layout = RootLayout("outputs/")
    assert layout.root == str(tmp_path / "outputs")

    paths = layout_paths(layout, "v1")

    assert {name: relative_to(path, layout.root) for name, path in paths.items()} == {
        "ingest_area": "ingest",
        "ingest_dir": "ingest/v1",
        "tiles_dir": "ingest/v1/tiles",
        "songs_table": "ingest/v1/songs.parquet",
        "errors_table": "ingest/v1/errors.parquet",
        "ingest_manifest": "ingest/v1/manifest.json",
        "models_area": "models",
        "model_dir": "models/v1",
        "model_file": "models/v1/model.pt",
        "model_metrics": "models/v1/metrics.json",
        "index_area": "index",
        "index_dir": "index/v1",
        "annoy_file": "index/v1/songs.ann",
        "predictions_table": "index/v1/predictions.parquet",
        "index_manifest": "index/v1/manifest.json",
        "evaluation_dir": "index/v1/evaluation",
    }
    assert len(set(paths.values())) == len(paths)


def test_layout_on_object_storage_keeps_the_scheme() -> None:
    layout = RootLayout("s3://bucket/genre/")
    for path in layout_paths(layout, "20250101T000000Z-abcdef").values():
        assert path.startswith("s3://bucket/genre/")
    assert layout.songs_table("v1") == "s3://bucket/genre/ingest/v1/songs.parquet"


def test_read_text_takes_utf8_with_or_without_bom_and_names_another_encoding(tmp_path: Path) -> None:
    (tmp_path / "plain.csv").write_bytes("path,genre\nÄrger.mp3,metal\n".encode("utf-8"))
    (tmp_path / "excel.csv").write_bytes("path,genre\nÄrger.mp3,metal\n".encode("utf-8-sig"))
    assert read_text(str(tmp_path / "plain.csv"), "labels CSV") == read_text(str(tmp_path / "excel.csv"), "labels CSV")
    (tmp_path / "latin1.csv").write_bytes("path,genre\nÄrger.mp3,metal\n".encode("latin-1"))
    with pytest.raises(GenreBatchError, match=r"labels CSV .*latin1\.csv is not UTF-8 text \(byte 0xc4 at offset 11\)"):
        read_text(str(tmp_path / "latin1.csv"), "labels CSV")
    with pytest.raises(FileNotFoundError):
        read_text(str(tmp_path / "missing.csv"), "labels CSV")


def test_publishing_never_replaces_a_newer_version_with_an_older_one(tmp_path: Path) -> None:
    area = str(tmp_path / "index")
    older, newer = "20261201T100000Z-aaaaaa", "20261201T100500Z-bbbbbb"
    publish(area, newer)  # the run that began later finished first
    with pytest.raises(StorageError, match=f"already names {newer}, newer than {older}"):
        publish(area, older)
    assert latest_version(area, "index") == newer
    publish(area, "20261201T100500Z-cccccc")  # begun within the same second: not ordered, published
    models = str(tmp_path / "models")
    publish(models, "rnn-x"), publish(models, "cnn-x")  # run names carry no time
    assert latest_version(models, "model") == "cnn-x"


@pytest.mark.parametrize("name", ["../planted", "a/b", "", ".hidden", "x" * 201, "v 1"])
def test_latest_may_only_name_a_version(tmp_path: Path, name: str) -> None:
    with pytest.raises(StorageError, match="not a version or run name"):
        publish(str(tmp_path / "ingest"), name)
    (tmp_path / "ingest").mkdir(exist_ok=True)
    (tmp_path / "ingest" / LATEST).write_text(name + "\n")
    with pytest.raises(StorageError, match="not a version or run name"):
        latest_version(str(tmp_path / "ingest"), "ingest")
