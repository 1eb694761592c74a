"""`genre-batch tag`: genres into the files' own tags, on real tagged files of every format,
with the audio untouched, provenance, an atomic write that survives SIGKILL, an undo, and a
nightly that knows a tag-only change."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genre_batch.cli import main
from genre_batch.decode import decode_audio
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version, sha256_of, write_bytes
from genre_batch.tagfiles import UnsupportedTagFormat, read_file_tags, write_file_tags
from genre_batch.tagging import TagError, TagOptions, parse_genre_map, plan_tags, refuse_remote, tag_only_change
from tests.audio_helpers import encode, encode_aac_m4a, noisy_sine, tag_mp3
from tests.model_helpers import publish_untrained_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

# name -> (genre in labels.csv, encoder)
FORMATS = {
    "one.mp3": lambda x: encode(x, 44100, "MP3"),
    "two.ogg": lambda x: encode(x, 44100, "OGG", "VORBIS"),
    "three.flac": lambda x: encode(x, 44100, "FLAC"),
    "four.opus": lambda x: encode(x, 48000, "OGG", "OPUS"),
    "five.m4a": lambda x: encode_aac_m4a(x, 44100),
    "six.wav": lambda x: encode(x, 44100, "WAV"),
    "seven.aiff": lambda x: encode(x, 44100, "AIFF"),
}


def samples_of(path: Path) -> np.ndarray:
    return decode_audio(path.read_bytes(), name=path.name, target_sample_rate=22050).samples


def cli(*argv: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(list(argv)) == 0
    return printed.getvalue()


def write_library(folder: Path) -> dict[str, str]:
    """Every format, labelled in labels.csv (jazz / rock alternating); one mp3 already tagged."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i, (name, encoder) in enumerate(FORMATS.items()):
        rate = 48000 if name.endswith("opus") else 44100
        (folder / name).write_bytes(encoder(noisy_sine(220.0 * (i + 1), 7.0, rate, seed=i)))
        labels[name] = "jazz" if i % 2 else "rock"
    tag_mp3(folder / "one.mp3", title="One", artist="A", genre="Blues")
    (folder / "labels.csv").write_text("path,genre\n" + "".join(f"{p},{g}\n" for p, g in labels.items()))
    return labels


@pytest.fixture(scope="module")
def library(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("tagging")
    catalogue, root = base / "catalogue", str(base / "root")
    labels = write_library(catalogue)
    assert main(["ingest", "--catalogue", str(catalogue), "--root", root, "--labels", str(catalogue / "labels.csv")]) == 0
    publish_untrained_model(root, "untrained")
    assert main(["index", "--root", root, "--n-trees", "5"]) == 0
    pristine = base / "pristine"
    shutil.copytree(catalogue, pristine)
    layout = RootLayout(root)
    published = {area: latest_version(area, "version") for area in (layout.ingest_area, layout.index_area)}
    return {"catalogue": catalogue, "root": root, "labels": labels, "pristine": pristine, "base": base,
            "published": published}


@pytest.fixture()
def fresh(library):
    """The library's files as ingested (a test that wrote tags is undone by copying back)."""
    for path in library["pristine"].iterdir():
        shutil.copy2(path, library["catalogue"] / path.name)
    shutil.rmtree(Path(library["root"]) / "tags", ignore_errors=True)
    for area, version in library["published"].items():  # as ingested (a nightly test moves them)
        write_bytes(f"{area}/LATEST", f"{version}\n".encode())
    return library


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------ dry run, write, read back
def test_the_dry_run_lists_every_file_and_touches_nothing(fresh):
    before = snapshot(fresh["catalogue"])
    out = json.loads(cli("tag", "--root", fresh["root"], "--json"))
    assert snapshot(fresh["catalogue"]) == before and not (Path(fresh["root"]) / "tags").exists()
    rows = {Path(r["path"]).name: r for r in out["files"]}
    assert set(rows) == set(FORMATS)
    assert rows["one.mp3"]["action"] == "skip" and "has a genre tag (Blues)" in rows["one.mp3"]["reason"]
    for name in set(FORMATS) - {"one.mp3"}:
        assert rows[name]["action"] == "write" and rows[name]["new"] == fresh["labels"][name], rows[name]
        assert rows[name]["source"] == "label" and rows[name]["current"] is None


def test_write_tags_every_format_with_provenance_and_the_audio_untouched(fresh, tmp_path):
    audio = {name: samples_of(fresh["catalogue"] / name) for name in FORMATS}
    out = json.loads(cli("tag", "--root", fresh["root"], "--write", "--json"))
    written = {Path(r["path"]).name: r for r in out["written"]}
    assert set(written) == set(FORMATS) - {"one.mp3"}
    index = latest_version(RootLayout(fresh["root"]).index_area, "index")
    for name in FORMATS:
        path = fresh["catalogue"] / name
        assert np.array_equal(samples_of(path), audio[name]), f"{name}: the audio changed"
        tags = read_file_tags(str(path))
        if name == "one.mp3":
            assert tags.genre == "Blues" and tags.provenance is None  # a person's tag stays
            continue
        assert tags.genre == fresh["labels"][name]
        assert f"run={out['run']}" in tags.provenance and f"index={index}" in tags.provenance
        assert "model=untrained" in tags.provenance and "source=label" in tags.provenance
        assert written[name]["new_content_hash"] == sha256_of(str(path)) != written[name]["old_content_hash"]
    log = pd.read_parquet(out["log"])
    assert sorted(Path(p).name for p in log["path"]) == sorted(written)
    assert not list(fresh["catalogue"].glob(".*genre-batch-tag*")), "a copy was left behind"

    # A new ingest that reads genres from the tags reads the written genres back.
    root = str(tmp_path / "from-tags")
    assert main(["ingest", "--catalogue", str(fresh["catalogue"]), "--root", root, "--labels", "tags"]) == 0
    songs = pd.read_parquet(RootLayout(root).songs_table(latest_version(RootLayout(root).ingest_area, "ingest")))
    got = {Path(p).name: g for p, g in zip(songs["path"], songs["label"])}
    assert got == {**fresh["labels"], "one.mp3": "blues"}


def test_all_replaces_disagreeing_tags_and_undo_restores_them(fresh):
    out = json.loads(cli("tag", "--root", fresh["root"], "--write", "--all", "--json"))
    assert read_file_tags(str(fresh["catalogue"] / "one.mp3")).genre == fresh["labels"]["one.mp3"]
    assert len(out["written"]) == len(FORMATS)
    # A file a person edits after the run is not undone.
    edited = fresh["catalogue"] / "two.ogg"
    write_file_tags(str(edited), "Polka", None)
    undone = json.loads(cli("tag", "--root", fresh["root"], "--undo", out["run"], "--json"))
    assert [Path(r["path"]).name for r in undone["skipped"]] == ["two.ogg"]
    assert "changed since" in undone["skipped"][0]["reason"]
    assert read_file_tags(str(edited)).genre == "Polka"
    assert read_file_tags(str(fresh["catalogue"] / "one.mp3")).genre == "Blues"
    for name in set(FORMATS) - {"one.mp3", "two.ogg"}:
        tags = read_file_tags(str(fresh["catalogue"] / name))
        assert tags.genre is None and tags.provenance is None, name


def test_a_file_changed_since_ingest_is_skipped_and_a_genre_map_renames(fresh, tmp_path):
    changed = fresh["catalogue"] / "three.flac"
    write_file_tags(str(changed), None, "someone else's edit")  # bytes differ, no genre tag
    genre_map = tmp_path / "map.csv"
    genre_map.write_text("model_genre,library_genre\njazz,Jazz\nrock,Rock & Roll\n")
    out = json.loads(cli("tag", "--root", fresh["root"], "--genre-map", str(genre_map), "--json"))
    rows = {Path(r["path"]).name: r for r in out["files"]}
    assert rows["three.flac"]["action"] == "skip" and "changed since it was ingested" in rows["three.flac"]["reason"]
    assert rows["two.ogg"]["new"] == "Jazz" and rows["six.wav"]["new"] in ("Jazz", "Rock & Roll")


def test_nightly_after_tag_decodes_nothing(fresh):
    cli("tag", "--root", fresh["root"], "--write")
    out = cli("nightly", "--catalogue", str(fresh["catalogue"]), "--root", fresh["root"])
    assert "0 new, 0 changed" in out and "0 tiles written" in out, out
    layout = RootLayout(fresh["root"])
    songs = pd.read_parquet(layout.songs_table(latest_version(layout.ingest_area, "ingest")))
    for path, content_hash in zip(songs["path"], songs["content_hash"]):
        assert sha256_of(path) == content_hash  # the songs table knows the tagged bytes now
    # ... so the next tag run's hash check passes and finds nothing left to write.
    plan = json.loads(cli("tag", "--root", fresh["root"], "--json"))["files"]
    assert not [r for r in plan if r["action"] == "write"]
    assert all("changed since" not in r["reason"] for r in plan)


# ------------------------------------------------------------------ a run killed mid-write
KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {repo!r})
from genre_batch import tagfiles, tagging
from genre_batch.answers import PublishedIndex
from genre_batch.layout import RootLayout
calls = []
real = tagfiles.write_file_tags
def dying(path, genre, provenance):
    calls.append(path)
    if len(calls) == {die_at}:
        with open(path, "r+b") as handle:  # half of a write, on the copy
            handle.write(b"garbage")
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, genre, provenance)
tagging.write_file_tags = dying
index = PublishedIndex({root!r})
plan = tagging.plan_tags(index.predictions, index.catalogue_songs, index.threshold, tagging.TagOptions())
tagging.write_tags(RootLayout({root!r}), plan, "untrained", index.version.version, run="tag-killed")
"""


def test_a_run_killed_mid_write_leaves_every_file_old_or_new_and_undo_uses_its_journal(fresh):
    before = {name: (fresh["catalogue"] / name).read_bytes() for name in FORMATS}
    audio = {name: samples_of(fresh["catalogue"] / name) for name in FORMATS}
    script = KILLED_RUN.format(repo=str(REPO), root=fresh["root"], die_at=4)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr
    changed = []
    for name in FORMATS:
        path = fresh["catalogue"] / name
        assert np.array_equal(samples_of(path), audio[name]), name  # whole, and the same audio
        if path.read_bytes() != before[name]:
            changed.append(name)
            assert read_file_tags(str(path)).genre == fresh["labels"][name]
    assert len(changed) == 3  # three renames happened before the fourth write died
    assert list(fresh["catalogue"].glob(".*genre-batch-tag*")), "the killed write's copy should be there"
    cli("tag", "--root", fresh["root"], "--undo", "tag-killed")
    for name in changed:
        assert read_file_tags(str(fresh["catalogue"] / name)).genre is None
    assert not list(fresh["catalogue"].glob(".*genre-batch-tag*")), "the next write run removes dead runs' copies"


# ------------------------------------------------------------------ rules and refusals
def test_object_storage_is_refused_for_writing_with_one_line():
    with pytest.raises(TagError, match=r"s3://bucket/a\.mp3 is in object storage.*genres --out"):
        refuse_remote(["/music/a.mp3", "s3://bucket/a.mp3"])


def test_unknown_and_unconfident_genres_are_never_written(tmp_path):
    path = tmp_path / "a.mp3"
    path.write_bytes(encode(noisy_sine(440.0, 4.0, 44100), 44100, "MP3"))
    content_hash = sha256_of(str(path))
    predictions = pd.DataFrame({"song_id": ["s1", "s2", "s3"], "path": [str(path)] * 3, "label": [None] * 3,
                                "genre": ["unknown", "jazz", "jazz"], "confidence": [0.2, 0.4, 0.9]})
    songs = pd.DataFrame({"song_id": ["s1", "s2", "s3"], "relative_path": ["a.mp3"] * 3,
                          "label_source": ["none"] * 3, "content_hash": [content_hash] * 3})
    plan = plan_tags(predictions, songs, threshold=0.3, options=TagOptions(min_confidence=0.5))
    assert [row.action for row in plan] == ["skip", "skip", "write"]
    assert "unknown" in plan[0].reason and "under --min-confidence 0.50" in plan[1].reason
    assert plan[2].new == "jazz" and plan[2].source == "predicted"


def test_formats_without_a_genre_tag_are_skipped_with_the_reason(tmp_path):
    with pytest.raises(UnsupportedTagFormat, match=r"no genre tag is written to \.aac"):
        read_file_tags(str(tmp_path / "x.aac"))


def test_genre_maps_are_checked():
    assert parse_genre_map("jazz,Jazz\nhip-hop,Hip Hop\n") == {"jazz": "Jazz", "hip-hop": "Hip Hop"}
    with pytest.raises(TagError, match="line 2"):
        parse_genre_map("jazz,Jazz\nrock\n")
    with pytest.raises(TagError, match="mapped twice"):
        parse_genre_map("jazz,Jazz\njazz,Swing\n")


def test_a_tag_only_change_is_followed_back_through_runs_and_undos():
    chain = {"h2": "h1", "h3": "h2"}
    assert tag_only_change("h3", "h1", chain) and tag_only_change("h2", "h1", chain)
    assert not tag_only_change("h9", "h1", chain) and not tag_only_change("h1", "h3", chain)
