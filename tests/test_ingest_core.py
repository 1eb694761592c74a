"""The pure ingest core: one file's bytes -> a song row and tiles (or an error row); tile shards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.audio_helpers import catalogue_file, noisy_sine, tag_mp3, write_audio
from genre_batch import schemas
from genre_batch.catalogue import CatalogueFile
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.decode import decode_audio
from genre_batch.features import featurise
from genre_batch.ingest import (
    FileOutcome,
    catalogue_file_from_record,
    catalogue_record,
    ingest_file,
    write_tile_shard,
)
from genre_batch.splits import SPLITS, assign_split, split_key
from genre_batch.tiles import tiles_from_binary

FEATURES = FeatureConfig()
SPLIT_CONFIG = SplitConfig()
SOURCE_RATE = 44_100
DURATION_S = 7.0


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="module")
def stereo_mp3(audio_dir: Path) -> bytes:
    left = noisy_sine(440.0, DURATION_S, SOURCE_RATE, seed=1)
    right = noisy_sine(660.0, DURATION_S, SOURCE_RATE, seed=2)
    return write_audio(audio_dir / "stereo.mp3", np.stack([left, right], axis=1), SOURCE_RATE, "MP3")


@pytest.fixture(scope="module")
def tagged_mp3(audio_dir: Path) -> bytes:
    path = audio_dir / "tagged.mp3"
    write_audio(path, noisy_sine(220.0, 6.5, SOURCE_RATE, seed=3), SOURCE_RATE, "MP3")
    return tag_mp3(path, title="Crossroads", artist="Robert Johnson", genre="Delta Blues")


@pytest.fixture(scope="module")
def mono_wav(audio_dir: Path) -> bytes:
    return write_audio(
        audio_dir / "mono.wav", noisy_sine(330.0, 12.5, FEATURES.sample_rate, seed=4), FEATURES.sample_rate, "WAV"
    )


def sized(file: CatalogueFile, data: bytes) -> CatalogueFile:
    return catalogue_file(
        file.relative_path,
        label=file.label,
        artist=file.artist,
        split_override=file.split_override,
        size_bytes=len(data),
    )


# --- ingest_file ----------------------------------------------------------------------


def test_ingest_file_makes_a_complete_song_row(stereo_mp3: bytes) -> None:
    file = sized(catalogue_file("blues/stereo.mp3", label="blues"), stereo_mp3)

    outcome = ingest_file(file, stereo_mp3, FEATURES, SPLIT_CONFIG)

    assert outcome.error is None and outcome.song is not None and outcome.tiles is not None
    song = outcome.song
    assert set(song) == set(schemas.SONGS.names)
    expected_tiles = featurise(
        decode_audio(stereo_mp3, name="x", target_sample_rate=FEATURES.sample_rate).samples, FEATURES
    )
    assert song["song_id"] == file.song_id
    assert (song["path"], song["relative_path"], song["size_bytes"], song["mtime"]) == (
        file.uri,
        file.relative_path,
        len(stereo_mp3),
        file.mtime,
    )
    assert song["content_hash"] == hashlib.sha256(stereo_mp3).hexdigest()
    assert song["duration_s"] == pytest.approx(DURATION_S, abs=0.05)
    assert song["sample_rate"] == SOURCE_RATE and song["channels"] == 2
    assert song["decoder"] == "soundfile"
    assert song["title"] is None and song["artist"] is None  # untagged, no CSV artist
    assert (song["label"], song["label_source"]) == ("blues", "folder")
    assert song["split"] in SPLITS
    assert song["split"] == assign_split(split_key(file.song_id, None), SPLIT_CONFIG)
    assert song["n_tiles"] == len(outcome.tiles) == len(expected_tiles) >= 1
    np.testing.assert_array_equal(outcome.tiles.tiles, expected_tiles.tiles)
    assert song["tiles_file"] == ""
    pa.Table.from_pylist([song], schema=schemas.SONGS)  # the row fits the published schema


def test_ingest_file_reads_title_and_artist_from_tags(tagged_mp3: bytes) -> None:
    file = catalogue_file("blues/tagged.mp3", label="blues")

    song = ingest_file(file, tagged_mp3, FEATURES, SPLIT_CONFIG).song

    assert song is not None
    assert (song["title"], song["artist"]) == ("Crossroads", "Robert Johnson")
    assert (song["label"], song["label_source"]) == ("blues", "folder")  # folder label kept
    assert song["split"] == assign_split(split_key(file.song_id, "Robert Johnson"), SPLIT_CONFIG)


def test_labels_from_tags_take_the_genre_tag(tagged_mp3: bytes, stereo_mp3: bytes) -> None:
    tagged = ingest_file(catalogue_file("t.mp3", label=None), tagged_mp3, FEATURES, SPLIT_CONFIG, True).song
    untagged = ingest_file(catalogue_file("u.mp3", label=None), stereo_mp3, FEATURES, SPLIT_CONFIG, True).song

    assert tagged is not None and untagged is not None
    assert (tagged["label"], tagged["label_source"]) == ("delta blues", "tags")
    assert (untagged["label"], untagged["label_source"]) == (None, "none")


def test_csv_artist_and_split_override_win(tagged_mp3: bytes) -> None:
    file = catalogue_file("blues/tagged.mp3", artist="R. Johnson", split_override="valid")

    song = ingest_file(file, tagged_mp3, FEATURES, SPLIT_CONFIG).song

    assert song is not None
    assert song["artist"] == "R. Johnson" and song["split"] == "valid"


def test_songs_of_one_tagged_artist_share_a_split(tagged_mp3: bytes) -> None:
    expected = assign_split(split_key("any-song", "Robert Johnson"), SPLIT_CONFIG)
    for relative in ("blues/a.mp3", "jazz/b.mp3", "rock/live/c.mp3"):
        song = ingest_file(catalogue_file(relative), tagged_mp3, FEATURES, SPLIT_CONFIG).song
        assert song is not None and song["split"] == expected


def check_error_row(outcome: FileOutcome, file: CatalogueFile, data: bytes, stage: str, error_type: str) -> None:
    assert outcome.song is None and outcome.tiles is None and outcome.error is not None
    error = outcome.error
    assert set(error) == set(schemas.ERRORS.names)
    assert error["stage"] == stage and error["error_type"] == error_type
    assert file.relative_path in error["message"]
    assert (error["path"], error["relative_path"], error["size_bytes"]) == (
        file.uri,
        file.relative_path,
        file.size_bytes,
    )
    assert error["content_hash"] == hashlib.sha256(data).hexdigest()
    pa.Table.from_pylist([error], schema=schemas.ERRORS)


def test_broken_bytes_become_a_decode_error_row() -> None:
    data = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(range(256)) * 8
    file = sized(catalogue_file("rock/corrupted-upload.mp3"), data)

    outcome = ingest_file(file, data, FEATURES, SPLIT_CONFIG)

    check_error_row(outcome, file, data, "decode", "AudioDecodeError")


def test_too_short_audio_becomes_a_featurise_error_row(audio_dir: Path) -> None:
    data = write_audio(
        audio_dir / "short.wav",
        noisy_sine(440.0, FEATURES.min_duration_s / 2, FEATURES.sample_rate),
        FEATURES.sample_rate,
        "WAV",
    )
    file = sized(catalogue_file("jazz/short.wav"), data)

    outcome = ingest_file(file, data, FEATURES, SPLIT_CONFIG)

    check_error_row(outcome, file, data, "featurise", "AudioTooShortError")


def test_silent_audio_becomes_a_featurise_error_row(audio_dir: Path) -> None:
    data = write_audio(audio_dir / "blank.wav", np.zeros(6 * FEATURES.sample_rate, np.float32),
                       FEATURES.sample_rate, "WAV")
    file = sized(catalogue_file("jazz/blank.wav"), data)
    check_error_row(ingest_file(file, data, FEATURES, SPLIT_CONFIG), file, data, "featurise", "AudioSilentError")


def test_catalogue_record_round_trip() -> None:
    file = catalogue_file("a/b.mp3", artist="X", split_override="test", size_bytes=12)
    assert catalogue_file_from_record({**catalogue_record(file), "extra_column": 1}) == file


# --- tile shards ----------------------------------------------------------------------


def test_write_tile_shard(tmp_path: Path, stereo_mp3: bytes, mono_wav: bytes) -> None:
    broken = b"not audio at all"
    outcomes = [
        ingest_file(catalogue_file("blues/stereo.mp3", label="blues"), stereo_mp3, FEATURES, SPLIT_CONFIG),
        ingest_file(catalogue_file("x/broken.mp3"), broken, FEATURES, SPLIT_CONFIG),
        ingest_file(catalogue_file("mono.wav", label=None), mono_wav, FEATURES, SPLIT_CONFIG),
    ]
    songs = [o for o in outcomes if o.song is not None]
    assert len(songs) == 2 and outcomes[1].error is not None
    tiles_dir = tmp_path / "ingest" / "v1" / "tiles"

    name = write_tile_shard(outcomes, str(tiles_dir), FEATURES, shard_prefix="v1/tiles/")

    assert name is not None and name.startswith("part-") and name.endswith(".parquet")
    assert sorted(p.name for p in tiles_dir.iterdir()) == [name]
    table = pq.read_table(tiles_dir / name)
    assert table.schema.equals(schemas.TILES, check_metadata=False)
    assert [f.metadata for f in table.schema] == [f.metadata for f in schemas.TILES]  # docs travel along
    assert schemas.feature_config_of(table.schema) == FEATURES

    counts = [len(o.tiles) for o in songs]  # type: ignore[arg-type]
    assert table.num_rows == sum(counts)
    stored = tiles_from_binary(table.column("tile").to_pylist(), FEATURES)
    np.testing.assert_array_equal(stored, np.concatenate([o.tiles.tiles for o in songs]))  # type: ignore[union-attr]
    assert table.column("song_id").to_pylist() == [
        o.song["song_id"] for o, n in zip(songs, counts) for _ in range(n)  # type: ignore[index]
    ]
    assert table.column("tile_index").to_pylist() == [i for n in counts for i in range(n)]
    np.testing.assert_array_equal(
        table.column("start_s").to_numpy(), np.concatenate([o.tiles.start_s for o in songs])  # type: ignore[union-attr]
    )
    assert table.column("label").to_pylist() == ["blues"] * counts[0] + [None] * counts[1]
    assert table.column("split").to_pylist() == [
        o.song["split"] for o, n in zip(songs, counts) for _ in range(n)  # type: ignore[index]
    ]
    for outcome in songs:
        assert outcome.song["tiles_file"] == f"v1/tiles/{name}"  # type: ignore[index]
    assert "tiles_file" not in outcomes[1].error  # type: ignore[operator]


def test_error_only_batch_writes_nothing(tmp_path: Path) -> None:
    outcomes = [ingest_file(catalogue_file("x/broken.mp3"), b"junk", FEATURES, SPLIT_CONFIG)]
    assert write_tile_shard(outcomes, str(tmp_path / "tiles"), FEATURES) is None
    assert write_tile_shard([], str(tmp_path / "tiles"), FEATURES) is None
    assert not (tmp_path / "tiles").exists()


def test_a_batch_mixing_known_and_missing_artists_labels_and_splits(tmp_path: Path) -> None:
    """What the Ray stage gets: records where some fields are missing. Missing must stay None
    (pandas would make it NaN: a float, truthy, that broke the artist split and the labels)."""
    import dataclasses

    import json

    import pyarrow as pa

    from genre_batch.layout import RootLayout
    from pipelines.ingest import ingest_batch

    files = []
    for name, artist, label, split in (("a.wav", "Son House", "blues", "test"), ("b.wav", None, None, None)):
        data = write_audio(tmp_path / "cat" / name, noisy_sine(220, 7.0, 22050), 22050, "WAV")
        files.append(dataclasses.replace(
            catalogue_file(name, label=label, artist=artist, split_override=split, root=str(tmp_path / "cat")),
            size_bytes=len(data)))
    layout = RootLayout(str(tmp_path / "root"))
    outcomes = ingest_batch(pa.Table.from_pylist([catalogue_record(f) for f in files]),
                            tiles_dir=layout.tiles_dir("v1"), shard_prefix=layout.tiles_prefix("v1"),
                            features=FeatureConfig().to_dict(), splits=SplitConfig().to_dict(),
                            labels_from_tags=False).to_pylist()
    songs = [json.loads(o["record"]) for o in outcomes if o["kind"] == "song"]
    errors = [json.loads(o["record"]) for o in outcomes if o["kind"] == "error"]
    assert errors == []
    by_path = {song["relative_path"]: song for song in songs}
    assert (by_path["a.wav"]["artist"], by_path["a.wav"]["label"], by_path["a.wav"]["split"]) == ("Son House", "blues", "test")
    missing = by_path["b.wav"]
    assert missing["artist"] is None and missing["label"] is None
    assert missing["split"] == assign_split(split_key(files[1].song_id, None), SplitConfig())


def test_links_in_a_catalogue_are_ingested_and_a_broken_one_is_an_error_row(tmp_path: Path) -> None:
    """A folder of links, listed and ingested as the jobs do: the link to a file becomes a
    song, the broken link a `read` error row that says what it points to; nothing is dropped."""
    from genre_batch.catalogue import list_catalogue
    from genre_batch.ingest import ingest_group
    from genre_batch.layout import RootLayout

    write_audio(tmp_path / "store" / "song.wav", noisy_sine(330, 7.0, 22050), 22050, "WAV")
    (tmp_path / "cat" / "folk").mkdir(parents=True)
    (tmp_path / "cat" / "folk" / "linked.wav").symlink_to(tmp_path / "store" / "song.wav")
    (tmp_path / "cat" / "folk" / "gone.wav").symlink_to(tmp_path / "store" / "deleted.wav")

    files = list_catalogue(str(tmp_path / "cat"))
    layout = RootLayout(str(tmp_path / "root"))
    songs, errors = ingest_group(files, layout.tiles_dir("v1"), layout.tiles_prefix("v1"), FeatureConfig(),
                                 SplitConfig(), labels_from_tags=False)

    assert [(s["relative_path"], s["label"]) for s in songs] == [("folk/linked.wav", "folk")]
    assert [(e["relative_path"], e["stage"], e["error_type"]) for e in errors] == [
        ("folk/gone.wav", "read", "FileNotFoundError")]
    assert errors[0]["message"].startswith("broken link: ") and "deleted.wav, which does not exist" in errors[0]["message"]
