"""Nightly re-indexing: idempotent, incremental, atomic, and readers unaffected by a publish."""

from __future__ import annotations

import dataclasses
import json

import duckdb
import pandas as pd
import pytest
import soundfile

from genre_batch.answers import PublishedIndex
from genre_batch.artifacts import published_ingest
from genre_batch.cli import main
from genre_batch.commands import write_demo_catalogue
from genre_batch.config import IngestConfig, TrainConfig
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version, read_json
from genre_batch.synth import plan_catalogue, render_song
from pipelines.nightly import run_nightly
from tests.model_helpers import publish_untrained_model

pytestmark = pytest.mark.slow


def add_songs(catalogue, n: int, seed: int) -> list[str]:
    """Write n new songs into the catalogue; returns their relative paths."""
    written = []
    for song in plan_catalogue(n, seed=seed, min_duration_s=12.0, max_duration_s=13.0):
        song = dataclasses.replace(song, relative_path=song.relative_path.replace(".mp3", f" (s{seed}).mp3"))
        path = catalogue / song.relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, render_song(song), song.sample_rate, format="MP3")
        written.append(song.relative_path)
    return written


def pointers(root: str) -> tuple[str, str]:
    layout = RootLayout(root)
    return latest_version(layout.ingest_area, "ingest"), latest_version(layout.index_area, "index")


def songs_table(root: str) -> pd.DataFrame:
    layout = RootLayout(root)
    return pd.read_parquet(layout.songs_table(latest_version(layout.ingest_area, "ingest")))


@pytest.fixture(scope="module")
def grown(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("nightly")
    catalogue, root = base / "catalogue", str(base / "root")
    write_demo_catalogue(catalogue, n_songs=14, seed=21, min_duration_s=12.0, max_duration_s=13.0)
    # Labels from the files' own ID3 genre tags, as for a personal library; the nightly runs
    # keep the label source of the published ingest.
    assert main(["ingest", "--catalogue", str(catalogue), "--root", root, "--files-per-task", "4",
                 "--labels", "tags"]) == 0
    songs = songs_table(root)
    assert (songs["label_source"] == "tags").all() and songs["label"].notna().all()
    publish_untrained_model(root, "untrained")  # training itself is proven in test_chain
    assert main(["index", "--root", root, "--n-trees", "5"]) == 0
    return {"catalogue": catalogue, "root": root}


def test_local_and_ray_embeddings_agree(grown):
    """The nightly's in-process path gives the rows Ray Data batch inference gave: the
    fixture's index was built by `genre-batch index`, through Ray Data. First in the module,
    while that index is live."""
    import numpy as np

    from genre_batch.inference import TileClassifier, predict_songs_in_process
    from genre_batch.storage import read_bytes

    index = PublishedIndex(grown["root"])
    ingest = published_ingest(grown["root"])
    assert index.version.manifest.ingest_version == ingest.version
    by_ray = index.predictions.set_index("song_id").sort_index()
    model_copy = RootLayout(grown["root"]).index_model_file(index.version.version)
    classifier = TileClassifier.load(read_bytes(model_copy), ingest.feature_config)
    local = predict_songs_in_process(ingest.tile_uris, classifier, set(by_ray.index))
    local = local.set_index("song_id").sort_index()
    assert list(local.index) == list(by_ray.index)
    assert local["n_tiles"].tolist() == by_ray["n_tiles"].tolist()
    assert local["tiles_correct"].tolist() == by_ray["tiles_correct"].astype(int).tolist()
    for column in ("embedding", "probs"):
        by_ray_rows = dict(zip(index.predictions["song_id"], index.vectors(column)))
        np.testing.assert_allclose(np.stack(local[column]), np.stack([by_ray_rows[s] for s in local.index]), atol=1e-5)


def test_no_change_decodes_and_publishes_nothing(grown):
    before = pointers(grown["root"])
    report = run_nightly(str(grown["catalogue"]), grown["root"])
    assert report.published == [] and report.tiles_written == 0
    assert report.counts["new"] == report.counts["changed"] == report.counts["removed"] == 0
    assert report.counts["unchanged"] == 14 and report.counts["failed"] == 1  # the broken file, kept
    assert pointers(grown["root"]) == before
    assert "ingest" not in report.seconds  # nothing was decoded


def test_incremental_add_remove_replace(grown, capsys):
    root, catalogue = grown["root"], grown["catalogue"]
    reader = PublishedIndex(root)  # loaded before the publish: must keep answering after it
    old_index = reader.version.version
    some_song = reader.predictions.iloc[0].song_id
    assert reader.similar_to_song(some_song, 3)

    added = add_songs(catalogue, 3, seed=77)
    # 3 files > 2 per task and no local embedding: this run goes through Ray Data.
    report = run_nightly(str(catalogue), root, ingest_config=IngestConfig(files_per_task=2), local_max_tiles=0)
    assert report.counts["new"] == 3 and report.counts["changed"] == 0
    songs = songs_table(root)
    new_rows = songs[songs["relative_path"].isin(added)]
    assert len(new_rows) == 3 and report.tiles_written == new_rows["n_tiles"].sum()
    assert set(report.published) == {"ingest", "index"}
    index = PublishedIndex(root)
    assert len(index.predictions) == 17 and set(new_rows["song_id"]) <= set(index.predictions["song_id"])
    # The reader that mapped the previous version still answers from it.
    assert reader.version.version == old_index and len(reader.similar_to_song(some_song, 3)) == 3

    # Remove one song: gone from the index and from every `similar` answer.
    victim = songs.iloc[1]
    (catalogue / victim.relative_path).unlink()
    report = run_nightly(str(catalogue), root)
    assert report.counts["removed"] == 1 and report.tiles_written == 0
    index = PublishedIndex(root)
    assert victim.song_id not in set(index.predictions["song_id"])
    for song_id in index.predictions["song_id"]:
        assert victim.song_id not in [n.song_id for n in index.similar_to_song(song_id, 10)]

    # Replace one song's file with other audio: re-ingested, same id, new hash and tiles.
    target = songs.iloc[2]
    other = plan_catalogue(1, seed=123, min_duration_s=12.5, max_duration_s=12.6)[0]
    soundfile.write(catalogue / target.relative_path, render_song(other), other.sample_rate, format="MP3")
    report = run_nightly(str(catalogue), root)
    assert report.counts["changed"] == 1 and report.counts["new"] == 0
    after = songs_table(root).set_index("song_id").loc[target.song_id]
    assert after.content_hash != target.content_hash and after.tiles_file != target.tiles_file
    assert report.tiles_written == after.n_tiles


def test_touching_a_file_decodes_nothing(grown):
    songs = songs_table(grown["root"])
    path = grown["catalogue"] / songs.iloc[0].relative_path
    path.write_bytes(path.read_bytes())  # same bytes, new mtime
    report = run_nightly(str(grown["catalogue"]), grown["root"])
    assert report.tiles_written == 0 and report.counts["changed"] == 0
    assert "index" not in report.published  # nothing the index holds changed


def test_retention_keeps_what_the_live_index_reads(grown):
    """Nightly runs that publish only ingest versions (touched files) must not prune the
    ingest version the live index was built from: `similar --audio` reads its songs table."""
    from genre_batch.retention import version_names

    root, layout = grown["root"], RootLayout(grown["root"])
    songs = songs_table(root)

    def touch_and_run(i: int):
        path = grown["catalogue"] / songs.iloc[i].relative_path
        path.write_bytes(path.read_bytes())  # same bytes, new mtime: a new ingest version only
        return run_nightly(str(grown["catalogue"]), root, keep=2)

    # An index built on an ingest version that owns no tile shards (a touch-only version), so
    # only the index's reference keeps it: a new model makes the nightly re-index on it.
    assert touch_and_run(0).published == ["ingest"]
    publish_untrained_model(root, "untrained-2")
    assert run_nightly(str(grown["catalogue"]), root, keep=2).published == ["index"]
    index_ingest = PublishedIndex(root).version.manifest.ingest_version
    assert not any(path.startswith(index_ingest) for path in read_json(layout.ingest_manifest(index_ingest))["files"]["tiles"])
    pruned = []
    for i in range(1, 5):
        report = touch_and_run(i)
        assert report.published == ["ingest"]
        pruned += report.pruned
    assert any("/ingest/" in uri for uri in pruned)  # retention did remove ingest versions
    assert index_ingest in version_names(layout.ingest_area)
    query = songs.iloc[5]
    _, neighbours = PublishedIndex(root).similar_to_audio(query.path, 3)
    assert len(neighbours) == 3 and query.song_id not in [n.song_id for n in neighbours]


def test_failed_files_retried_only_when_asked(grown):
    report = run_nightly(str(grown["catalogue"]), grown["root"], retry_failed=True)
    assert report.counts["retried"] == 1 and report.counts["failed"] == 1  # still broken, still recorded
    layout = RootLayout(grown["root"])
    errors = pd.read_parquet(layout.errors_table(latest_version(layout.ingest_area, "ingest")))
    assert len(errors) == 1 and errors.iloc[0]["stage"] == "decode"


def test_interrupted_publish_leaves_previous_version_live(grown):
    """A nightly process SIGKILLed between building the new index version and moving LATEST
    (no exception handler, no finally, no atexit runs): LATEST still names the previous,
    complete version, and readers answer from it."""
    import signal
    import subprocess
    import sys

    root, catalogue = grown["root"], grown["catalogue"]
    before_index = pointers(root)[1]
    added = add_songs(catalogue, 1, seed=78)
    killed_at_publish = (
        "import os, signal, sys\n"
        "import genre_batch.indexing\n"
        "genre_batch.indexing.publish = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from genre_batch.cli import main\n"
        f"sys.exit(main(['nightly', '--catalogue', {str(catalogue)!r}, '--root', {root!r}]))\n"
    )
    run = subprocess.run([sys.executable, "-c", killed_at_publish], capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stdout + run.stderr
    assert "built Annoy index" in run.stderr, run.stderr[-3000:]  # it died after building, not before
    assert pointers(root)[1] == before_index
    reader = PublishedIndex(root)
    assert reader.version.version == before_index and reader.similar_to_song(reader.predictions.iloc[0].song_id, 2)
    # The next run completes the work: the song was ingested (and published) before the
    # kill, so it is not new any more, but the index catches up with it.
    report = run_nightly(str(catalogue), root)
    assert report.counts["new"] == 0 and report.published == ["index"]
    new_id = songs_table(root).set_index("relative_path").loc[added[0], "song_id"]
    assert new_id in set(PublishedIndex(root).predictions["song_id"])


def publish_constant_model(root: str, run: str, genre: str) -> None:
    """Publish a copy of the live model that answers ``genre`` for every tile: a current
    model whose validation accuracy is known in advance (0 when no validation song has it)."""
    import torch

    from genre_batch.checkpoint import load_checkpoint_state, save_checkpoint
    from genre_batch.storage import publish

    layout = RootLayout(root)
    state = load_checkpoint_state(layout.model_file(latest_version(layout.models_area, "model")))
    weights = state["model_state"]
    weights["head.2.weight"] = torch.zeros_like(weights["head.2.weight"])
    weights["head.2.bias"] = torch.full_like(weights["head.2.bias"], -10.0)
    weights["head.2.bias"][state["labels"].index(genre)] = 10.0
    save_checkpoint(state, layout.model_file(run))
    publish(layout.models_area, run)


def test_retrain_publishes_a_better_model_and_re_embeds_every_song(grown):
    """--retrain against a current model that is certainly worse: the candidate is published,
    and because the model changed every song is embedded again with it."""
    import numpy as np

    from genre_batch.config import TrainConfig
    from pipelines.train import validation_song_accuracy

    root = grown["root"]
    layout = RootLayout(root)
    songs = songs_table(root)
    before = PublishedIndex(root)
    absent = sorted(set(before.model.labels) - set(songs.loc[songs["split"] == "valid", "label"]))
    assert absent, "the fixture's validation songs must leave some genre out"
    publish_constant_model(root, "constant", absent[0])
    assert validation_song_accuracy(published_ingest(root), layout.model_file("constant")) == 0.0

    report = run_nightly(str(grown["catalogue"]), root, retrain=True,
                         train_config=TrainConfig(epochs=1, batch_size=16, seed=5))
    candidate = f"{TrainConfig().model.name}-{report.ingest_version}-nightly-{report.run_id}"
    assert report.retrain.startswith(f"published {candidate}") and "current constant 0.000" in report.retrain
    assert "both scored on this ingest's validation songs" in report.retrain  # the rule, printed
    assert report.model_run == candidate and latest_version(layout.models_area, "model") == candidate
    assert report.published == ["model", "index"]
    after = PublishedIndex(root)
    assert after.version.manifest.model_run == candidate
    assert len(after.predictions) == len(songs)
    # Every song's vector comes from the new model: none equals its previous embedding.
    old = dict(zip(before.predictions["song_id"], before.vectors("embedding")))
    new = dict(zip(after.predictions["song_id"], after.vectors("embedding")))
    for song_id in songs["song_id"]:
        assert not np.allclose(np.asarray(new[song_id]), np.asarray(old[song_id]), atol=1e-4), song_id


def test_run_reports_and_runs_table(grown, capsys):
    assert main(["nightly", "--catalogue", str(grown["catalogue"]), "--root", grown["root"]]) == 0
    assert "published nothing (no change)" in capsys.readouterr().out
    runs = duckdb.sql(f"SELECT * FROM '{grown['root']}/runs/*.parquet' ORDER BY started, run_id").df()
    assert len(runs) >= 6
    last = runs.iloc[-1]
    report = read_json(f"{grown['root']}/runs/{last.run_id}.json")
    assert report["counts"]["unchanged"] == last.unchanged and list(last.published) == []
    assert json.dumps(report)  # plain JSON
    # Retention kept at most 3 index versions, including the live one.
    layout = RootLayout(grown["root"])
    from genre_batch.storage import list_prefix

    versions = [n for n in list_prefix(layout.index_area) if n[:1].isdigit()]
    assert len(versions) <= 3 and latest_version(layout.index_area, "index") in versions


def test_the_first_night_without_labels_pretrains_and_indexes_for_similar_songs(ray_local, tmp_path, caplog):
    catalogue, root = tmp_path / "catalogue", str(tmp_path / "root")
    write_demo_catalogue(catalogue, n_songs=6, seed=5, min_duration_s=8.0, max_duration_s=9.0)
    one_epoch = dataclasses.replace(TrainConfig(), epochs=1, batch_size=4)
    report = run_nightly(str(catalogue), root, labels="none", train_config=one_epoch)
    assert report.published == ["ingest", "pretrain", "index"], report.summary()
    assert "fewer than two labelled genres" in caplog.text
    layout = RootLayout(root)
    manifest = read_json(layout.index_manifest(report.index_version))
    assert "-pretrain-" in manifest["model_run"] and "self-supervised" in manifest["genres"]
    assert published_ingest(root).manifest.labels == "none"
    again = run_nightly(str(catalogue), root, train_config=one_epoch)  # the index's run stays in force
    assert again.published == [] and again.model_run == manifest["model_run"]


def test_the_first_night_of_a_new_root_runs_the_whole_chain_pretraining_first(ray_local, tmp_path):
    """A schedule set up on an empty root works from its first night: ingest, a pretrain run on
    every song (--retrain --pretrain), a first model started from it (there are labels), the
    index; the second night is incremental and finds nothing to do."""
    from genre_batch.checkpoint import load_checkpoint_state

    catalogue, root = tmp_path / "catalogue", str(tmp_path / "root")
    write_demo_catalogue(catalogue, n_songs=12, seed=4, min_duration_s=8.0, max_duration_s=9.0)
    one_epoch = dataclasses.replace(TrainConfig(), epochs=1, batch_size=4)
    first = run_nightly(str(catalogue), root, retrain=True, pretrain=True, train_config=one_epoch)
    assert first.published == ["ingest", "pretrain", "model", "index"], first.summary()
    assert first.counts["new"] == len(list(catalogue.rglob("*.mp3"))) and first.model_run and first.index_version
    assert latest_version(RootLayout(root).models_area, "model") == first.model_run
    state = load_checkpoint_state(str(tmp_path / "root" / "models" / first.model_run / "model.pt"))
    assert "-pretrain-" in state["extra"]["train_config"]["init"]  # the model started from the pretrain run
    again = run_nightly(str(catalogue), root, train_config=one_epoch)
    assert again.published == [] and again.counts["new"] == 0
    assert pointers(root) == (first.ingest_version, first.index_version)
