"""The whole chain with catalogue and root in a real S3-compatible server (moto, separate process).

Commands run as subprocesses, the way a user runs them, with credentials only in the standard
AWS environment variables; their complete output is kept to prove no credential leaks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import s3fs

from genre_batch.commands import write_demo_catalogue
from tests.model_helpers import publish_untrained_model
from tests.servers import ACCESS_KEY_ID, SECRET_ACCESS_KEY

pytestmark = pytest.mark.slow

CATALOGUE = "s3://gb-catalogue/music"
LABELS = "s3://gb-catalogue/labels-partial.csv"
ROOT = "s3://gb-outputs/genre-batch"
UNLABELLED = 3  # songs whose genre the labels CSV leaves empty: the index must fill them in

# Every command's output, for the credential scan at the end of the module.
OUTPUTS: list[subprocess.CompletedProcess] = []


def genre_batch(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "genre_batch.cli", *argv], env=env, capture_output=True, text=True, timeout=600
    )
    OUTPUTS.append(result)
    if check:
        assert result.returncode == 0, f"genre-batch {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def run_in_process(*argv: str) -> subprocess.CompletedProcess:
    """A command in this process (the S3 server's environment is this process's, and the
    module's local Ray is up); its output joins the credential scan."""
    import contextlib
    import io

    from genre_batch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    result = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    OUTPUTS.append(result)
    assert code == 0, f"genre-batch {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def s3_run(s3_server, tmp_path_factory, ray_local_s3):
    s3_server.reset()
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint)
    fs.mkdir("gb-catalogue")
    fs.mkdir("gb-outputs")
    local = tmp_path_factory.mktemp("s3cat")
    summary = write_demo_catalogue(local / "music", n_songs=18, seed=5, min_duration_s=12.0, max_duration_s=14.0)
    fs.put(str(local / "music"), "gb-catalogue/", recursive=True)
    # Labels from a CSV in the bucket (path relative to the catalogue), some songs unlabelled.
    labels = pd.read_csv(summary.labels_csv)
    labels.loc[labels.index[:UNLABELLED], "genre"] = None
    labels.to_csv(local / "labels-partial.csv", index=False)
    fs.put_file(str(local / "labels-partial.csv"), LABELS)
    env = {
        **os.environ,
        **s3_server.env,
        "HOME": str(tmp_path_factory.mktemp("home")),
        "GENRE_BATCH_CACHE": str(tmp_path_factory.mktemp("cache")),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RAY_ADDRESS", None)
    outputs = [genre_batch(env, "ingest", "--catalogue", CATALOGUE, "--root", ROOT, "--files-per-task", "6",
                           "--labels", LABELS)]
    # Training into the bucket (Ray Train's storage_path there) is proven by test_cluster.
    publish_untrained_model(ROOT, "untrained")
    # The ingest above ran as a user runs it, in a process of its own; index and evaluate run
    # here, on the module's Ray (whose workers have only the same AWS environment variables).
    outputs += [
        run_in_process("index", "--root", ROOT, "--n-trees", "5"),
        run_in_process("evaluate", "--root", ROOT, "--json"),
    ]
    return {"env": env, "fs": fs, "summary": summary, "outputs": outputs, "server": s3_server,
            "unlabelled": set(labels.loc[labels.index[:UNLABELLED], "path"])}


def test_outputs_readable_with_pyarrow_and_pandas(s3_run):
    fs = s3_run["fs"]
    ingest = fs.cat(f"{ROOT}/ingest/LATEST").decode().strip()
    index = fs.cat(f"{ROOT}/index/LATEST").decode().strip()
    endpoint = s3_run["server"].endpoint
    arrow_s3 = pafs.S3FileSystem(
        endpoint_override=endpoint, scheme="http", access_key=ACCESS_KEY_ID, secret_key=SECRET_ACCESS_KEY,
        region="us-east-1",
    )
    songs = pq.read_table(f"gb-outputs/genre-batch/ingest/{ingest}/songs.parquet", filesystem=arrow_s3)
    assert songs.num_rows == s3_run["summary"].songs
    assert all(path.startswith(CATALOGUE + "/") for path in songs.column("path").to_pylist())
    options = {"client_kwargs": {"endpoint_url": endpoint}}
    predictions = pd.read_parquet(f"{ROOT}/index/{index}/predictions.parquet", storage_options=options)
    assert len(predictions) == songs.num_rows
    errors = pd.read_parquet(f"{ROOT}/ingest/{ingest}/errors.parquet", storage_options=options)
    assert errors["stage"].tolist() == ["decode"]
    assert fs.exists(f"{ROOT}/index/{index}/songs.ann")
    assert fs.exists(f"{ROOT}/index/{index}/model.pt")
    report = json.loads(s3_run["outputs"][-1].stdout)
    assert report["index_version"] == index and report["unlabelled_songs"] == UNLABELLED
    # Unlabelled songs are ingested like the others and get a predicted genre.
    unlabelled = predictions[predictions["label"].isna()]
    assert set(unlabelled["path"]) == {f"{CATALOGUE}/{path}" for path in s3_run["unlabelled"]}
    assert unlabelled["predicted"].notna().all() and unlabelled["genre"].notna().all()
    assert (songs.to_pandas().set_index("path").loc[unlabelled["path"], "label_source"] == "none").all()


def test_answers_read_from_s3(s3_run, monkeypatch):
    env = s3_run["env"]
    monkeypatch.setenv("GENRE_BATCH_CACHE", env["GENRE_BATCH_CACHE"])  # the Annoy file's local copy
    index = s3_run["fs"].cat(f"{ROOT}/index/LATEST").decode().strip()
    predictions = pd.read_parquet(
        f"{ROOT}/index/{index}/predictions.parquet",
        storage_options={"client_kwargs": {"endpoint_url": s3_run["server"].endpoint}},
    )
    song = predictions[predictions["label"].notna()].iloc[0]
    everyone = len(predictions) - 1
    similar = json.loads(genre_batch(env, "similar", "--root", ROOT, "--song", song.song_id, "-k", str(everyone),
                                     "--json").stdout)
    assert len(similar["neighbours"]) == everyone and song.song_id not in [n["song_id"] for n in similar["neighbours"]]
    # A neighbour without a label is shown with the genre the index gave it, marked as such.
    by_song = predictions.set_index("song_id")
    for neighbour in similar["neighbours"]:
        row = by_song.loc[neighbour["song_id"]]
        expected = (row["label"], "label") if isinstance(row["label"], str) else (row["genre"], "predicted")
        assert (neighbour["genre"], neighbour["genre_source"]) == expected
    assert sum(n["genre_source"] == "predicted" for n in similar["neighbours"]) == UNLABELLED
    # An audio file given by its s3:// URI is featurised straight from the bucket (in this
    # process: the command line is the one just run).
    by_audio = json.loads(run_in_process("similar", "--root", ROOT, "--audio", song.path, "--json").stdout)
    assert song.song_id not in [n["song_id"] for n in by_audio["neighbours"]]
    classified = json.loads(run_in_process("classify", "--root", ROOT, song.path, "--json").stdout)
    assert classified[0]["predicted"] == song.predicted

    # The genres filled in for the unlabelled songs, as a labels CSV written into the bucket.
    run_in_process("genres", "--root", ROOT, "--unlabelled", "--out", f"{ROOT}/filled-genres.csv")
    with s3_run["fs"].open(f"{ROOT}/filled-genres.csv") as handle:
        filled = pd.read_csv(handle, keep_default_na=False)
    assert set(filled["path"]) == set(predictions.loc[predictions["label"].isna(), "path"])
    assert set(filled["source"]) <= {"predicted", "unknown"}
    assert ((filled["genre"] == "") == (filled["source"] == "unknown")).all()
    by_path = predictions.set_index("path")
    assert (filled["predicted"] == by_path.loc[filled["path"], "predicted"].to_numpy()).all()

    # A playlist for a listening history kept in the bucket: s3:// URIs and a path relative to
    # the catalogue; the vectors are read from the bucket's predictions table.
    unlabelled = predictions[predictions["label"].isna()].sort_values("song_id")
    relative = unlabelled.iloc[1].path.removeprefix(f"{CATALOGUE}/")
    history = f"path,plays\n{unlabelled.iloc[0].path},2\n{relative},1\n{CATALOGUE}/gone.mp3,1\n"
    s3_run["fs"].pipe("gb-catalogue/history.csv", history.encode())
    result = genre_batch(env, "playlist", "--root", ROOT, "--history", "s3://gb-catalogue/history.csv", "-n", "4", "--json")
    playlist = json.loads(result.stdout)
    assert playlist["history_plays"] == 3 and playlist["skipped"] == [f"{CATALOGUE}/gone.mp3"]
    assert len(playlist["entries"]) == 4
    assert not {e["song_id"] for e in playlist["entries"]} & set(unlabelled["song_id"].iloc[:2])


def test_missing_bucket_fails_in_one_line_and_publishes_nothing(s3_run, capsys):
    from genre_batch.cli import main

    assert main(["ingest", "--catalogue", CATALOGUE, "--root", "s3://no-such-bucket/x"]) == 1
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "s3://no-such-bucket/x" in message[0], err
    assert "Traceback" not in err and SECRET_ACCESS_KEY not in err
    assert not s3_run["fs"].exists("no-such-bucket")
    # A catalogue that does not exist: same contract.
    assert main(["ingest", "--catalogue", "s3://gb-catalogue/nothing-here", "--root", ROOT]) == 1
    assert "s3://gb-catalogue/nothing-here" in capsys.readouterr().err


def test_nightly_on_s3(s3_run, tmp_path):
    """The nightly job with catalogue and root in the bucket: 2 new songs, one replaced and one
    removed in one night (its tile shard is rewritten without it, in the bucket), then no change."""
    import dataclasses

    import soundfile

    from genre_batch.synth import plan_catalogue, render_song

    fs, env = s3_run["fs"], s3_run["env"]
    options = {"client_kwargs": {"endpoint_url": s3_run["server"].endpoint}}
    index = fs.cat(f"{ROOT}/index/LATEST").decode().strip()
    before = pd.read_parquet(f"{ROOT}/index/{index}/predictions.parquet", storage_options=options)
    old_ingest = fs.cat(f"{ROOT}/ingest/LATEST").decode().strip()
    removed, replaced = before.iloc[0], before.iloc[1]
    *new, other = plan_catalogue(3, seed=404, min_duration_s=12.0, max_duration_s=12.5)
    for song in new:
        song = dataclasses.replace(song, relative_path=song.relative_path.replace(".mp3", " (nightly).mp3"))
        soundfile.write(tmp_path / "new.mp3", render_song(song), song.sample_rate, format="MP3")
        fs.put_file(str(tmp_path / "new.mp3"), f"{CATALOGUE}/{song.relative_path}")
    soundfile.write(tmp_path / "other.mp3", render_song(other), other.sample_rate, format="MP3")
    fs.put_file(str(tmp_path / "other.mp3"), replaced.path)
    fs.rm(removed.path)

    grown = genre_batch(env, "nightly", "--catalogue", CATALOGUE, "--root", ROOT)
    assert "2 new, 1 changed, 1 removed" in grown.stdout and "published ingest, index" in grown.stdout, grown.stdout
    index = fs.cat(f"{ROOT}/index/LATEST").decode().strip()
    after = pd.read_parquet(f"{ROOT}/index/{index}/predictions.parquet", storage_options=options)
    assert len(after) == len(before) + 1 and removed.song_id not in set(after["song_id"]), grown.stdout + grown.stderr[-3000:]
    ingest = fs.cat(f"{ROOT}/ingest/LATEST").decode().strip()
    songs = pd.read_parquet(f"{ROOT}/ingest/{ingest}/songs.parquet", storage_options=options).set_index("song_id")
    old_songs = pd.read_parquet(f"{ROOT}/ingest/{old_ingest}/songs.parquet", storage_options=options).set_index("song_id")
    assert songs.loc[replaced.song_id, "content_hash"] != old_songs.loc[replaced.song_id, "content_hash"]
    assert songs.loc[replaced.song_id, "etag"]  # the bucket's ETag is part of the listing facts

    again = genre_batch(env, "nightly", "--catalogue", CATALOGUE, "--root", ROOT)
    assert "0 new, 0 changed, 0 removed" in again.stdout and "published nothing" in again.stdout
    reports = fs.glob(f"{ROOT}/runs/*.json")
    assert len(reports) == 2


def test_no_credentials_in_any_output_or_object(s3_run):
    """Last in the module: every command above, and every object the jobs wrote."""
    assert len(OUTPUTS) >= 7
    for result in OUTPUTS:
        for stream in (result.stdout, result.stderr):
            assert SECRET_ACCESS_KEY not in stream and ACCESS_KEY_ID not in stream, result.args
    fs = s3_run["fs"]
    objects = fs.find("gb-outputs")
    assert any("/runs/" in path for path in objects)  # the nightly's reports are scanned too
    for path in objects:
        blob = fs.cat(path)
        assert SECRET_ACCESS_KEY.encode() not in blob and ACCESS_KEY_ID.encode() not in blob, path
