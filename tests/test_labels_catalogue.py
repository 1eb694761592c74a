"""Labels from folders, a CSV or tags; the catalogue listing with ids and labels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.audio_helpers import encode, sine, tag_mp3, write_audio
from genre_batch.catalogue import list_catalogue, song_id_for
from genre_batch.errors import LabelError, StorageError
from genre_batch.labels import LabelRow, Tags, label_from_folder, normalise_label, parse_labels_csv, read_tags

SR = 22_050

# --- folder labels --------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative_path, expected",
    [
        ("blues/song.mp3", "blues"),
        ("Hip-Hop/song.mp3", "hip-hop"),
        ("archive/2020/Jazz/song.mp3", "jazz"),  # nested: the immediate parent
        ("  Rock   Roll /song.mp3", "rock roll"),
        ("song.mp3", None),  # a file at the catalogue root has no folder label
    ],
)
def test_label_from_folder(relative_path: str, expected: str | None) -> None:
    assert label_from_folder(relative_path) == expected


@pytest.mark.parametrize("raw, expected", [(" Jazz ", "jazz"), ("Hip  Hop", "hip hop"), ("", None), ("  ", None), (None, None)])
def test_normalise_label(raw: str | None, expected: str | None) -> None:
    assert normalise_label(raw) == expected


# --- labels CSV -----------------------------------------------------------------------


def test_parse_labels_csv_with_all_columns() -> None:
    text = (
        "path,genre,artist,split\n"
        "blues/a.mp3,Blues,Muddy Waters,train\n"
        "./jazz/b.mp3, Jazz ,,TEST\n"
        "jazz\\c.mp3,jazz,  Nina Simone  ,\n"
    )
    rows = parse_labels_csv(text)
    assert rows == {
        "blues/a.mp3": LabelRow(genre="blues", artist="Muddy Waters", split="train"),
        "jazz/b.mp3": LabelRow(genre="jazz", artist=None, split="test"),
        "jazz/c.mp3": LabelRow(genre="jazz", artist="Nina Simone", split=None),
    }


def test_parse_labels_csv_optional_columns_absent() -> None:
    rows = parse_labels_csv("genre,path\nrock,r/1.mp3\n,r/2.mp3\n")
    assert rows == {"r/1.mp3": LabelRow("rock"), "r/2.mp3": LabelRow(None)}


def test_parse_labels_csv_headers_ignore_case_and_spaces() -> None:
    rows = parse_labels_csv("Path, Genre ,ARTIST,Split\nr/1.mp3,Rock,Son House,test\n")
    assert rows == {"r/1.mp3": LabelRow("rock", "Son House", "test")}


@pytest.mark.parametrize(
    "text, match",
    [
        ("file,genre\na.mp3,rock\n", r"missing column.*path"),
        ("path,artist\na.mp3,x\n", r"missing column.*genre"),
        ("", r"missing column"),
        ("path,genre,split\na.mp3,rock,training\n", r"line 2: split 'training'"),
        ("path,genre\na.mp3,rock\nb.mp3,pop\n./a.mp3,jazz\n", r"line 4: a\.mp3 is listed twice"),
        ("path,genre\n ,rock\n", r"line 2: empty path"),
    ],
    ids=["no-path", "no-genre", "empty", "bad-split", "duplicate", "empty-path"],
)
def test_parse_labels_csv_rejects_malformed(text: str, match: str) -> None:
    with pytest.raises(LabelError, match=match):
        parse_labels_csv(text, source="labels.csv")


def test_parse_labels_csv_expects_the_caller_to_strip_a_bom() -> None:
    with_bom = "\ufeffpath,genre\na.mp3,rock\n"
    with pytest.raises(LabelError, match="missing column"):
        parse_labels_csv(with_bom)
    assert parse_labels_csv(with_bom.encode("utf-8").decode("utf-8-sig")) == {"a.mp3": LabelRow("rock")}


@pytest.mark.parametrize("listed", [".staging/a.mp3", "./.staging/a.mp3"])
def test_parse_labels_csv_keeps_leading_dot_of_a_folder_name(listed: str) -> None:
    assert set(parse_labels_csv(f"path,genre\n{listed},rock\n")) == {".staging/a.mp3"}


# --- tags -----------------------------------------------------------------------------


def test_read_tags_from_id3(tmp_path: Path) -> None:
    path = tmp_path / "tagged.mp3"
    write_audio(path, sine(440.0, 1.0, SR), SR, "MP3")
    data = tag_mp3(path, title="So What", artist="Miles Davis", genre="Jazz ")
    assert read_tags(data) == Tags(title="So What", artist="Miles Davis", genre="jazz")


def test_read_tags_from_vorbis_comments(tmp_path: Path) -> None:
    from mutagen.oggvorbis import OggVorbis

    path = tmp_path / "tagged.ogg"
    write_audio(path, sine(440.0, 1.0, SR), SR, "OGG", "VORBIS")
    ogg = OggVorbis(str(path))
    ogg["title"] = "Paranoid"
    ogg["artist"] = "Black Sabbath"
    ogg["genre"] = "Heavy  Metal"
    ogg.save()
    assert read_tags(path.read_bytes()) == Tags(title="Paranoid", artist="Black Sabbath", genre="heavy metal")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage" * 100,
        b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(range(256)) * 4,
        encode(sine(440.0, 0.5, SR), SR, "WAV"),  # decodable, but no tags
    ],
    ids=["empty", "garbage", "id3-garbage", "untagged-wav"],
)
def test_read_tags_without_tags_is_empty(data: bytes) -> None:
    assert read_tags(data) == Tags()


# --- catalogue listing ----------------------------------------------------------------

AUDIO_FILES = [
    "blues/a.mp3",
    "blues/B.MP3",
    "jazz/bebop/c.flac",
    "jazz/d.Ogg",
    "root.wav",
]
OTHER_FILES = ["blues/.hidden.mp3", "notes.txt", "labels.csv", "jazz/cover.jpg", "song.mp3.txt"]


@pytest.fixture()
def catalogue_dir(tmp_path: Path) -> Path:
    root = tmp_path / "catalogue"
    for index, relative in enumerate(AUDIO_FILES + OTHER_FILES):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (index + 1))  # listing never reads the bytes; sizes tell files apart
    (root / "empty-folder").mkdir()
    return root


def test_list_catalogue_by_folder(catalogue_dir: Path) -> None:
    files = list_catalogue(str(catalogue_dir))

    by_path = {f.relative_path: f for f in files}
    assert sorted(by_path) == sorted(AUDIO_FILES)
    assert len(files) == len(AUDIO_FILES)
    for relative, file in by_path.items():
        assert file.song_id == song_id_for(relative)
        assert file.uri == str(catalogue_dir / relative)
        assert file.size_bytes == (catalogue_dir / relative).stat().st_size
        dt.datetime.fromisoformat(file.mtime)
        assert file.artist is None and file.split_override is None
    assert {p: f.label for p, f in by_path.items()} == {
        "blues/a.mp3": "blues",
        "blues/B.MP3": "blues",
        "jazz/bebop/c.flac": "bebop",
        "jazz/d.Ogg": "jazz",
        "root.wav": None,
    }
    assert {p: f.label_source for p, f in by_path.items()} == {
        p: ("none" if p == "root.wav" else "folder") for p in AUDIO_FILES
    }


def test_list_catalogue_is_stable(catalogue_dir: Path) -> None:
    first = list_catalogue(str(catalogue_dir))
    assert list_catalogue(f"file://{catalogue_dir}/") == first
    assert len({f.song_id for f in first}) == len(first)


def test_song_id_depends_only_on_the_relative_path() -> None:
    assert song_id_for("blues/a.mp3") == song_id_for("blues/a.mp3")
    assert song_id_for("blues/a.mp3") != song_id_for("blues/A.mp3")
    assert len(song_id_for("x")) == 16


def test_list_catalogue_with_labels_csv(catalogue_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "my-labels.csv"
    labels.write_text(
        "path,genre,artist,split\n"
        "blues/a.mp3,Delta Blues,Son House,test\n"
        "./root.wav,Ambient,,\n"
        "jazz/bebop/c.flac,,Charlie Parker,valid\n",
        encoding="utf-8-sig",  # spreadsheet exports start with a BOM
    )

    files = {f.relative_path: f for f in list_catalogue(str(catalogue_dir), labels=str(labels))}

    assert sorted(files) == sorted(AUDIO_FILES)
    a, root, c = files["blues/a.mp3"], files["root.wav"], files["jazz/bebop/c.flac"]
    assert (a.label, a.label_source, a.artist, a.split_override) == ("delta blues", "csv", "Son House", "test")
    assert (root.label, root.label_source, root.artist, root.split_override) == ("ambient", "csv", None, None)
    assert (c.label, c.label_source, c.artist, c.split_override) == (None, "none", "Charlie Parker", "valid")
    for absent in ("blues/B.MP3", "jazz/d.Ogg"):  # not in the CSV: unlabelled, even inside a genre folder
        file = files[absent]
        assert (file.label, file.label_source, file.artist, file.split_override) == (None, "none", None, None)


def test_labels_csv_may_name_files_by_full_path_or_uri(catalogue_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,genre\n{catalogue_dir}/blues/a.mp3,blues\nfile://{catalogue_dir}/root.wav,ambient\n"
                      "jazz/d.Ogg,jazz\n")
    files = {f.relative_path: f.label for f in list_catalogue(str(catalogue_dir), labels=str(labels))}
    assert (files["blues/a.mp3"], files["root.wav"], files["jazz/d.Ogg"]) == ("blues", "ambient", "jazz")

    labels.write_text(f"path,genre\n{tmp_path}/elsewhere/a.mp3,blues\n")
    with pytest.raises(LabelError, match=r"1 path\(s\) not found.*elsewhere/a\.mp3"):
        list_catalogue(str(catalogue_dir), labels=str(labels))
    labels.write_text(f"path,genre\nblues/a.mp3,blues\n{catalogue_dir}/blues/a.mp3,jazz\n")
    with pytest.raises(LabelError, match="blues/a.mp3 is listed twice"):
        list_catalogue(str(catalogue_dir), labels=str(labels))


def test_labels_csv_naming_a_missing_file_raises(catalogue_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,genre\nblues/a.mp3,blues\nblues/gone.mp3,blues\nnotes.txt,blues\n")
    with pytest.raises(LabelError, match=r"2 path\(s\) not found.*blues/gone\.mp3"):
        list_catalogue(str(catalogue_dir), labels=str(labels))


@pytest.mark.parametrize("mode", ["none", "tags"])
def test_list_catalogue_without_folder_labels(catalogue_dir: Path, mode: str) -> None:
    files = list_catalogue(str(catalogue_dir), labels=mode)
    assert sorted(f.relative_path for f in files) == sorted(AUDIO_FILES)
    assert all(f.label is None and f.label_source == "none" for f in files)


def test_missing_catalogue_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        list_catalogue(str(tmp_path / "nowhere"))


def test_labels_csv_can_label_a_file_in_a_dot_folder(tmp_path: Path) -> None:
    root = tmp_path / "catalogue"
    (root / ".staging").mkdir(parents=True)
    (root / ".staging" / "a.mp3").write_bytes(b"x")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,genre\n.staging/a.mp3,rock\n")
    assert [f.relative_path for f in list_catalogue(str(root))] == [".staging/a.mp3"]  # listed...

    files = list_catalogue(str(root), labels=str(labels))  # ...but its CSV row no longer matches it

    assert [(f.relative_path, f.label) for f in files] == [(".staging/a.mp3", "rock")]


def test_labels_csv_naming_a_removed_file_is_logged_when_not_strict(catalogue_dir: Path, tmp_path: Path, caplog) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("path,genre\nblues/a.mp3,blues\nblues/gone.mp3,blues\n")
    files = {f.relative_path: f for f in list_catalogue(str(catalogue_dir), labels=str(labels), strict_labels=False)}
    assert files["blues/a.mp3"].label == "blues" and "blues/gone.mp3" not in files
    assert "1 path(s) not found" in caplog.text and "blues/gone.mp3" in caplog.text
