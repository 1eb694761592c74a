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

from genre_batch.synth import write_catalogue
from tests.servers import ACCESS_KEY_ID, SECRET_ACCESS_KEY

pytestmark = pytest.mark.slow

CATALOGUE = "s3://gb-catalogue/music"
ROOT = "s3://gb-outputs/genre-batch"


def genre_batch(env: dict[str, str], *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "genre_batch.cli", *argv], env=env, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, f"genre-batch {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def s3_run(s3_server, tmp_path_factory):
    s3_server.reset()
    fs = s3fs.S3FileSystem(endpoint_url=s3_server.endpoint)
    fs.mkdir("gb-catalogue")
    fs.mkdir("gb-outputs")
    local = tmp_path_factory.mktemp("s3cat")
    summary = write_catalogue(local / "music", n_songs=18, seed=5, min_duration_s=12.0, max_duration_s=14.0)
    fs.put(str(local / "music"), "gb-catalogue/", recursive=True)
    env = {
        **os.environ,
        **s3_server.env,
        "HOME": str(tmp_path_factory.mktemp("home")),
        "GENRE_BATCH_CACHE": str(tmp_path_factory.mktemp("cache")),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RAY_ADDRESS", None)
    outputs = [
        genre_batch(env, "ingest", "--catalogue", CATALOGUE, "--root", ROOT, "--files-per-task", "6"),
        genre_batch(env, "train", "--root", ROOT, "--epochs", "1", "--batch-size", "16"),
        genre_batch(env, "index", "--root", ROOT, "--n-trees", "5"),
        genre_batch(env, "evaluate", "--root", ROOT, "--json"),
    ]
    return {"env": env, "fs": fs, "summary": summary, "outputs": outputs, "server": s3_server}


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
    run = fs.cat(f"{ROOT}/models/LATEST").decode().strip()
    assert fs.exists(f"{ROOT}/models/{run}/model.pt") and fs.exists(f"{ROOT}/models/{run}/training_curves.png")
    # Ray Train wrote its per-epoch checkpoints into the bucket too.
    assert fs.glob(f"{ROOT}/models/{run}/ray/checkpoint_*/model.pt")
    report = json.loads(s3_run["outputs"][-1].stdout)
    assert report["index_version"] == index


def test_answers_read_from_s3(s3_run):
    env = s3_run["env"]
    index = s3_run["fs"].cat(f"{ROOT}/index/LATEST").decode().strip()
    predictions = pd.read_parquet(
        f"{ROOT}/index/{index}/predictions.parquet",
        storage_options={"client_kwargs": {"endpoint_url": s3_run["server"].endpoint}},
    )
    song = predictions.iloc[0]
    similar = json.loads(genre_batch(env, "similar", "--root", ROOT, "--song", song.song_id, "-k", "3", "--json").stdout)
    assert len(similar["neighbours"]) == 3 and song.song_id not in [n["song_id"] for n in similar["neighbours"]]
    # An audio file given by its s3:// URI is featurised straight from the bucket.
    by_audio = json.loads(genre_batch(env, "similar", "--root", ROOT, "--audio", song.path, "--json").stdout)
    assert song.song_id not in [n["song_id"] for n in by_audio["neighbours"]]
    classified = json.loads(genre_batch(env, "classify", "--root", ROOT, song.path, "--json").stdout)
    assert classified[0]["predicted"] == song.predicted


def test_no_credentials_in_logs_or_outputs(s3_run):
    for result in s3_run["outputs"]:
        for stream in (result.stdout, result.stderr):
            assert SECRET_ACCESS_KEY not in stream
            assert ACCESS_KEY_ID not in stream
    fs = s3_run["fs"]
    for path in fs.find("gb-outputs"):
        if path.endswith((".json", ".parquet", "LATEST")):
            blob = fs.cat(path)
            assert SECRET_ACCESS_KEY.encode() not in blob and ACCESS_KEY_ID.encode() not in blob, path


def test_missing_bucket_fails_in_one_line_and_publishes_nothing(s3_run):
    env = s3_run["env"]
    result = genre_batch(env, "ingest", "--catalogue", CATALOGUE, "--root", "s3://no-such-bucket/x", check=False)
    assert result.returncode == 1
    message = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and "s3://no-such-bucket/x" in message[0], result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET_ACCESS_KEY not in result.stderr + result.stdout
    assert not s3_run["fs"].exists("no-such-bucket")
    # A catalogue that does not exist: same contract.
    result = genre_batch(env, "ingest", "--catalogue", "s3://gb-catalogue/nothing-here", "--root", ROOT, check=False)
    assert result.returncode == 1 and "s3://gb-catalogue/nothing-here" in result.stderr


def test_nightly_on_s3(s3_run, tmp_path):
    """The nightly job with catalogue and root in the bucket: 2 new songs, then no change."""
    import dataclasses

    import soundfile

    from genre_batch.synth import plan_catalogue, render_song

    fs, env = s3_run["fs"], s3_run["env"]
    for song in plan_catalogue(2, seed=404, min_duration_s=12.0, max_duration_s=12.5):
        song = dataclasses.replace(song, relative_path=song.relative_path.replace(".mp3", " (nightly).mp3"))
        local = tmp_path / "new.mp3"
        soundfile.write(local, render_song(song), song.sample_rate, format="MP3")
        fs.put_file(str(local), f"{CATALOGUE}/{song.relative_path}")
    grown = genre_batch(env, "nightly", "--catalogue", CATALOGUE, "--root", ROOT)
    assert "2 new, 0 changed, 0 removed" in grown.stdout and "published ingest, index" in grown.stdout
    again = genre_batch(env, "nightly", "--catalogue", CATALOGUE, "--root", ROOT)
    assert "0 new, 0 changed, 0 removed" in again.stdout and "published nothing" in again.stdout
    assert SECRET_ACCESS_KEY not in grown.stdout + grown.stderr + again.stdout + again.stderr
    reports = fs.glob(f"{ROOT}/runs/*.json")
    assert len(reports) == 2
