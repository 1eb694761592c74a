"""The whole chain through the CLI, as a user runs it: synth -> ingest -> train -> index -> answers."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile

from genre_batch import schemas
from genre_batch.answers import PublishedIndex
from genre_batch.cli import main
from genre_batch.config import FeatureConfig
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version, read_json
from genre_batch.synth import BROKEN_FILE_NAME, GENRES, plan_catalogue, render_song

pytestmark = pytest.mark.slow


def run_cli(capsys, *argv: str) -> str:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, f"genre-batch {' '.join(argv)} exited {code}:\n{out}"
    return out


DEMO_SONGS, DEMO_SEED = 24, 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory, ray_local):
    """`genre-batch demo` once on a small catalogue (README command 1, smaller); the tests
    below inspect what it printed and left, and run the other commands against it."""
    root = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--root", str(root), "--songs", str(DEMO_SONGS), "--epochs", "2",
                     "--seed", str(DEMO_SEED)])
    assert code == 0, printed.getvalue()
    layout = RootLayout(str(root))
    version = latest_version(layout.ingest_area, "ingest")
    return {
        "root": str(root),
        "catalogue": root / "catalogue",
        "output": printed.getvalue(),
        "layout": layout,
        "version": version,
        "manifest": read_json(layout.ingest_manifest(version)),
    }


def test_demo_prints_what_the_readme_promises(demo):
    out = demo["output"]
    counts = demo["manifest"]["counts"]
    assert f"ingested: {DEMO_SONGS} songs, {counts['tiles']} tiles, 1 errors" in out
    assert "test songs: " in out and "song accuracy " in out
    assert out.count("\nsimilar to ") == 3
    assert "\nplaylist of 8 songs for a history of 2 plays of the first example" in out
    labels = pd.read_csv(demo["catalogue"] / "labels.csv")
    assert len(labels) == DEMO_SONGS and set(labels["genre"]) <= set(GENRES)


def test_synth_command_writes_the_planned_catalogue(tmp_path, capsys):
    out = run_cli(capsys, "synth", "--out", str(tmp_path), "--songs", "2", "--seed", str(DEMO_SEED))
    assert "wrote 2 songs" in out and "1 deliberately broken file" in out
    planned = sorted(song.relative_path for song in plan_catalogue(2, seed=DEMO_SEED))
    assert sorted(pd.read_csv(tmp_path / "labels.csv")["path"]) == planned
    for path in planned:
        assert soundfile.info(str(tmp_path / path)).format == "MP3"
    assert (tmp_path / GENRES[0] / BROKEN_FILE_NAME).exists()


def test_ingest_tables(demo):
    layout, version, manifest = demo["layout"], demo["version"], demo["manifest"]
    songs = pq.read_table(layout.songs_table(version))
    errors = pd.read_parquet(layout.errors_table(version))
    assert songs.schema.remove_metadata() == schemas.SONGS.remove_metadata()
    songs = songs.to_pandas()
    assert len(songs) == DEMO_SONGS
    # The deliberately broken file is an error row with its reason, and nothing else failed.
    assert errors["relative_path"].tolist() == [f"{GENRES[0]}/{BROKEN_FILE_NAME}"]
    assert errors["stage"].tolist() == ["decode"] and errors["message"].str.contains("could not decode").all()
    assert set(songs["label"]) == set(GENRES)
    # No artist (and so no song) is on two sides of the split.
    assert songs.groupby("artist")["split"].nunique().max() == 1
    assert manifest["counts"]["songs"] == len(songs) and manifest["counts"]["errors"] == 1

    tiles = pd.concat(pd.read_parquet(f"{layout.ingest_area}/{name}") for name in manifest["files"]["tiles"])
    assert len(tiles) == songs["n_tiles"].sum() == manifest["counts"]["tiles"]
    per_song = tiles.groupby("song_id").size()
    assert per_song.to_dict() == songs.set_index("song_id")["n_tiles"].to_dict()
    merged = tiles.merge(songs[["song_id", "split", "label"]], on="song_id", suffixes=("", "_song"))
    assert (merged["split"] == merged["split_song"]).all() and (merged["label"] == merged["label_song"]).all()
    config = FeatureConfig.from_dict(manifest["feature_config"])
    assert tiles["tile"].map(len).eq(config.tile_bytes).all()
    shard = pq.read_schema(f"{layout.ingest_area}/{manifest['files']['tiles'][0]}")
    assert schemas.feature_config_of(shard) == config


def test_training_outputs(demo):
    layout = demo["layout"]
    run = latest_version(layout.models_area, "model")
    metrics = read_json(layout.model_metrics(run))
    assert len(metrics["history"]) == 2
    assert metrics["labels"] == sorted(GENRES)
    for split in ("valid", "test"):
        assert 0.0 <= metrics[split]["song_accuracy"] <= 1.0
        assert set(metrics[split]["per_genre"]) == set(GENRES)
    for name in ("model.pt", "training_curves.png"):
        assert (layout.model_dir(run) + "/" + name) and open(f"{layout.model_dir(run)}/{name}", "rb").read(4)
    import glob

    assert glob.glob(f"{layout.model_dir(run)}/confusion_*.png")


def test_rerunning_a_training_run_resumes_it(demo):
    """Same command, more epochs: the run continues from its last checkpoint, not from zero."""
    layout = demo["layout"]
    run = latest_version(layout.models_area, "model")
    before = read_json(layout.model_metrics(run))["history"]
    assert main(["train", "--root", demo["root"], "--epochs", "3"]) == 0
    after = read_json(layout.model_metrics(run))["history"]
    assert latest_version(layout.models_area, "model") == run
    assert [h["epoch"] for h in after] == [1, 2, 3]
    assert after[:2] == before  # the first two epochs were not trained again


def test_a_run_that_has_its_epochs_is_not_trained_again(demo, capsys):
    """Asking a finished run for as many epochs or fewer trains nothing (no Ray) and says so;
    the summary counts the epochs the run has, not the ones asked for."""
    layout = demo["layout"]
    run = latest_version(layout.models_area, "model")
    metrics_before = read_json(layout.model_metrics(run))
    done = len(metrics_before["history"])
    for asked in (done, 1):
        out = run_cli(capsys, "train", "--root", demo["root"], "--epochs", str(asked))
        assert f"train {run}: {done} epochs" in out
    assert read_json(layout.model_metrics(run)) == metrics_before
    assert latest_version(layout.models_area, "model") == run


def test_index_outputs(demo):
    layout = demo["layout"]
    version = latest_version(layout.index_area, "index")
    manifest = read_json(layout.index_manifest(version))
    predictions = pd.read_parquet(layout.predictions_table(version))
    songs = pd.read_parquet(layout.songs_table(demo["version"]))
    assert sorted(predictions["song_id"]) == sorted(songs["song_id"])
    assert predictions["item_id"].tolist() == list(range(len(predictions)))
    vectors = np.stack(predictions["embedding"].to_numpy())
    assert vectors.shape == (len(songs), 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    threshold = manifest["threshold"]["threshold"]
    unknown = predictions["confidence"] < threshold
    assert (predictions.loc[unknown, "genre"] == "unknown").all()
    assert (predictions.loc[~unknown, "genre"] == predictions.loc[~unknown, "predicted"]).all()
    assert predictions["top_genres"].map(len).eq(3).all()


def test_similar_and_classify(demo, capsys, tmp_path):
    root = demo["root"]
    predictions = pd.read_parquet(demo["layout"].predictions_table(latest_version(demo["layout"].index_area, "")))
    query = predictions.iloc[0]
    answer = json.loads(run_cli(capsys, "similar", "--root", root, "--song", query.song_id, "-k", "5", "--json"))
    ids = [n["song_id"] for n in answer["neighbours"]]
    assert len(ids) == 5 and query.song_id not in ids
    sims = [n["similarity"] for n in answer["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    by_song = predictions.set_index("song_id")
    for neighbour in answer["neighbours"]:
        assert neighbour["genre"] == by_song.loc[neighbour["song_id"], "label"]  # labelled: its label
        assert neighbour["genre_source"] == "label" and neighbour["path"] == by_song.loc[neighbour["song_id"], "path"]
    # The same song named by its path, full or relative to the catalogue: the same answer.
    relative = query.path.removeprefix(str(demo["catalogue"]) + "/")
    for name in (query.path, relative):
        assert json.loads(run_cli(capsys, "similar", "--root", root, "--song", name, "-k", "5", "--json")) == answer

    # A catalogue file as --audio: itself excluded, and featurised exactly as ingest did, so
    # its embedding and genre are the indexed ones.
    answer = json.loads(run_cli(capsys, "similar", "--root", root, "--audio", query.path, "-k", "3", "--json"))
    assert query.song_id not in [n["song_id"] for n in answer["neighbours"]]
    fresh = PublishedIndex(root).analyse_audio(query.path)
    assert float(np.dot(fresh.embedding, np.asarray(query.embedding))) > 0.9999
    classified = json.loads(run_cli(capsys, "classify", "--root", root, query.path, "--json"))[0]
    assert classified["predicted"] == query.predicted
    assert classified["confidence"] == pytest.approx(query.confidence, abs=1e-4)

    # A song id that is not in the index: exit 1 and a one-line reason, no traceback.
    capsys.readouterr()
    assert main(["similar", "--root", root, "--song", "no-such-song"]) == 1
    assert "no-such-song" in capsys.readouterr().err

    # A new song, never ingested: classify answers with a genre (or unknown) and top-3.
    import dataclasses

    song = dataclasses.replace(plan_catalogue(1, seed=999)[0], duration_s=14.0, sample_rate=22050)

    new_file = tmp_path / "fresh.mp3"
    soundfile.write(new_file, render_song(song), 22050, format="MP3")
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3" + bytes(500))
    capsys.readouterr()
    code = main(["classify", "--root", root, str(new_file), str(broken), "--json"])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert code == 1, "a file that cannot be classified makes the exit code non-zero"
    assert results[0]["genre"] in set(GENRES) | {"unknown"} and len(results[0]["top"]) == 3
    assert "error" in results[1] and "broken.mp3" in captured.err


def test_playlist(demo, capsys, tmp_path):
    root = demo["root"]
    predictions = pd.read_parquet(demo["layout"].predictions_table(latest_version(demo["layout"].index_area, "")))
    labelled = predictions[predictions["label"].notna()].sort_values("song_id")
    genre = labelled["label"].iloc[0]
    history_songs = labelled[labelled["label"] == genre]["song_id"].head(2).tolist()
    # A listening log as users have them: a CSV naming songs by path, with play counts, and a
    # song that is not in the catalogue.
    log = tmp_path / "history.csv"
    paths = predictions.set_index("song_id").loc[history_songs, "path"].tolist()
    relative = paths[1].split("/catalogue/", 1)[1]  # as in labels.csv: relative to the catalogue
    log.write_text(f"path,plays\n{paths[0]},3\n{relative},1\n/nowhere/x.mp3,1\n")

    capsys.readouterr()
    assert main(["playlist", "--root", root, "--history", str(log), "-n", "6", "--variety", "0", "--json"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert "/nowhere/x.mp3" in captured.err and answer["skipped"] == ["/nowhere/x.mp3"]
    assert answer["history_plays"] == 4 and answer["history_mix"] == {genre: 1.0}
    entries = answer["entries"]
    assert len(entries) == 6 and not set(history_songs) & {e["song_id"] for e in entries}
    # Variety 0: as many songs of the history's genre as the catalogue has beside the history.
    others_of_genre = int((predictions["label"] == genre).sum()) - 2
    assert [e["genre"] for e in entries].count(genre) == answer["places"][genre] == min(6, others_of_genre)

    # Variety 1: every genre of the catalogue gets a place (6 genres, 6 places).
    text = run_cli(capsys, "playlist", "--root", root, "--song", history_songs[0], "-n", "6", "--variety", "1")
    assert text.startswith("playlist of 6 songs for 1 plays of 1 songs, variety 1.00")
    wide = PublishedIndex(root).playlist([(history_songs[0], 1.0)], n=6, variety=1.0)
    assert len(set(wide.places)) == 6 and all(count == 1 for count in wide.places.values())

    capsys.readouterr()
    assert main(["playlist", "--root", root, "--song", "no-such-song"]) == 1
    assert "none of the history's songs is in the index" in capsys.readouterr().err
    assert main(["playlist", "--root", root]) == 1
    with pytest.raises(SystemExit):
        main(["playlist", "--root", root, "--song", history_songs[0], "--variety", "2"])


def test_genres_writes_a_labels_csv_that_ingest_reads_back(demo, capsys, tmp_path):
    from genre_batch.catalogue import list_catalogue

    out = tmp_path / "genres.csv"
    run_cli(capsys, "genres", "--root", demo["root"], "--out", str(out))
    table = pd.read_csv(out, keep_default_na=False)
    songs = pd.read_parquet(demo["layout"].songs_table(demo["version"]))
    assert len(table) == len(songs) and (table["source"] == "label").all()
    files = {f.uri: f.label for f in list_catalogue(str(demo["catalogue"]), labels=str(out))}
    assert {path: files[path] for path in songs["path"]} == dict(zip(songs["path"], songs["label"]))
    assert set(files) - set(songs["path"]) == {str(demo["catalogue"] / GENRES[0] / BROKEN_FILE_NAME)}
    assert run_cli(capsys, "genres", "--root", demo["root"], "--unlabelled").splitlines() == [
        "path,genre,source,confidence,predicted,artist,song_id"]  # every demo song is labelled


def test_answers_from_the_index_load_no_torch_ray_or_matplotlib(demo):
    """`similar --song`, `playlist` and `genres` read the index only: torch alone costs ~1.7 s to import,
    and a command's parser must not import the jobs' modules either."""
    song = pd.read_parquet(demo["layout"].predictions_table(latest_version(demo["layout"].index_area, "")))["song_id"][0]
    script = (
        "import sys\nfrom genre_batch.cli import main\n"
        f"assert main(['similar', '--root', {demo['root']!r}, '--song', {song!r}, '-k', '2']) == 0\n"
        f"assert main(['playlist', '--root', {demo['root']!r}, '--song', {song!r}, '-n', '2']) == 0\n"
        f"assert main(['genres', '--root', {demo['root']!r}]) == 0\n"
        "print('loaded:', sorted(m for m in ('torch', 'ray', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "loaded: []" in out.stdout


def test_without_validation_songs_the_last_epoch_is_kept_and_both_jobs_say_why(demo, tmp_path, capsys, caplog):
    """A labels CSV that puts no artist on valid: no best epoch to pick (the last is kept, not
    the first), no threshold to tune (0), and train and index warn about both."""
    # Two genres of the demo, as a catalogue of links to its files (ingest follows them).
    labels = pd.read_csv(demo["catalogue"] / "labels.csv")
    labels = labels[labels["genre"].isin(GENRES[:2])].reset_index(drop=True)
    for path in labels["path"]:
        (tmp_path / "cat" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cat" / path).symlink_to(demo["catalogue"] / path)
    labels["split"] = np.where(labels.index == 0, "test", "train")
    labels.to_csv(tmp_path / "no-valid.csv", index=False)
    root = str(tmp_path / "root")
    run_cli(capsys, "ingest", "--catalogue", str(tmp_path / "cat"), "--root", root, "--labels",
            str(tmp_path / "no-valid.csv"))
    trained = run_cli(capsys, "train", "--root", root, "--epochs", "2")
    assert "best epoch 2; valid song accuracy n/a, test song accuracy " in trained
    indexed = run_cli(capsys, "index", "--root", root)
    assert "unknown threshold 0.000" in indexed
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("no labelled validation songs: the last epoch's model is kept") for w in warnings)
    assert any(w.startswith("no validation songs: unknown threshold set to 0.0") for w in warnings)


def test_gpu_asked_where_there_is_none_fails_at_once(demo, ray_local, monkeypatch, capsys):
    """`train --gpu` / `index --gpu` on a machine without a GPU: a private local Ray never gets
    one, so each command says so and exits instead of waiting for it forever (as Ray would)."""
    from pipelines import _ray

    if ray_local.cluster_resources().get("GPU"):
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(_ray, "_joined_address", None)  # this process's Ray is a private local one
    layout = demo["layout"]
    published = (latest_version(layout.models_area, "model"), latest_version(layout.index_area, "index"))
    capsys.readouterr()
    assert main(["train", "--root", demo["root"], "--gpu", "--run", "on-gpu", "--epochs", "1"]) == 1
    assert main(["index", "--root", demo["root"], "--gpu"]) == 1
    assert capsys.readouterr().err.count("error: --gpu: the local Ray has no GPU") == 2
    assert (latest_version(layout.models_area, "model"), latest_version(layout.index_area, "index")) == published


def test_evaluate(demo, capsys):
    report = json.loads(run_cli(capsys, "evaluate", "--root", demo["root"], "--json"))
    for split in ("valid", "test"):
        assert set(report[split]) >= {"song_accuracy", "tile_accuracy", "per_genre", "unknown_rule",
                                      "genre_precision_at_10"}
    assert 0.0 <= report["annoy_recall_at_10"] <= 1.0


def test_cli_help_runs_without_ray():
    out = subprocess.run([sys.executable, "-m", "genre_batch.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "similar" in out.stdout


def test_analyst_notebook_runs_on_the_outputs(demo, monkeypatch):
    """Every code cell of notebooks/explore_outputs.ipynb runs against a real root."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / "explore_outputs.ipynb").read_text())
    monkeypatch.setenv("GENRE_BATCH_ROOT", demo["root"])
    namespace: dict = {"display": lambda value: None}
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert cells
    for cell in cells:
        exec(compile("".join(cell["source"]), "notebook-cell", "exec"), namespace)
    assert len(namespace["predictions"]) == len(namespace["songs"])


def test_one_stage_execution_turns_off_the_reservation_for_its_datasets_only(ray_local):
    """Ingest's datasets run without Ray Data's per-operator reservation (it throttled the
    one map stage to ~1.2 of 2 CPUs); every other dataset keeps Ray's default."""
    from ray.data import DataContext

    from pipelines._ray import one_stage_execution

    default = DataContext.get_current().op_resource_reservation_enabled
    assert default is True  # Ray's default: what the other pipelines run with
    with one_stage_execution():
        inside = ray_local.data.from_items([{"x": 1}])
    after = ray_local.data.from_items([{"x": 1}])
    with pytest.raises(RuntimeError), one_stage_execution():
        raise RuntimeError("a failing job")

    assert inside.context.op_resource_reservation_enabled is False
    assert inside.take_all() == [{"x": 1}]
    assert after.context.op_resource_reservation_enabled is True
    assert DataContext.get_current().op_resource_reservation_enabled is True


# ---------------------------------------------------------------- published files prove they are whole
def damaged_copy(demo, tmp_path, relative: str | None) -> tuple[str, str]:
    """A copy of the demo root with one file (path relative to the root; None: the index's
    first tile shard) cut to half its size; returns (root, that file's path)."""
    import shutil

    root = tmp_path / "root"
    shutil.copytree(demo["root"], root, ignore=shutil.ignore_patterns("catalogue"))
    layout = RootLayout(str(root))
    if relative is None:
        relative = "ingest/" + read_json(layout.ingest_manifest(demo["version"]))["files"]["tiles"][0]
    path = root / relative.format(index=latest_version(layout.index_area, "index"), ingest=demo["version"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(root), str(path)


def test_every_published_file_is_listed_with_its_size_and_checksum_and_verify_passes(demo, capsys):
    import hashlib

    layout = demo["layout"]
    manifest = demo["manifest"]
    listed = manifest["checksums"]
    assert set(listed) == set(manifest["files"]["tiles"]) | {f"{demo['version']}/songs.parquet",
                                                               f"{demo['version']}/errors.parquet"}
    for name, entry in listed.items():
        data = open(os.path.join(layout.ingest_area, name), "rb").read()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    index_version = latest_version(layout.index_area, "index")
    index_sums = read_json(layout.index_manifest(index_version))["checksums"]
    assert set(index_sums) == {"songs.ann", "predictions.parquet", "model.pt"}
    out = run_cli(capsys, "verify", "--root", demo["root"])
    assert "0 damaged, 0 missing, 0 unverified" in out


@pytest.mark.parametrize("relative, command", [
    ("index/{index}/songs.ann", ["similar", "--song", "SONG"]),
    ("index/{index}/predictions.parquet", ["similar", "--song", "SONG"]),
    ("index/{index}/model.pt", ["similar", "--song", "SONG"]),
    ("ingest/{ingest}/errors.parquet", ["baseline"]),
    ("ingest/{ingest}/manifest.json", ["baseline"]),
    (None, ["baseline"]),  # a tile shard
])
def test_a_damaged_file_is_one_line_naming_it_and_verify_fails(demo, tmp_path, capsys, relative, command):
    root, damaged = damaged_copy(demo, tmp_path, relative)
    song = pd.read_parquet(demo["layout"].songs_table(demo["version"]))["song_id"].iloc[0]
    capsys.readouterr()
    assert main([part.replace("SONG", song) for part in command] + ["--root", root]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and damaged in lines[0] and "damaged" in lines[0], err
    assert "Traceback" not in err
    assert main(["verify", "--root", root]) == 1
    captured = capsys.readouterr()
    assert damaged in captured.out and "damaged" in captured.out
