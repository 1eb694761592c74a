"""The whole chain through the CLI, as a user runs it: synth -> ingest -> train -> index -> answers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from genre_batch import schemas
from genre_batch.cli import main
from genre_batch.config import FeatureConfig
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version, read_json
from genre_batch.synth import GENRES, plan_catalogue, render_song, write_catalogue

pytestmark = pytest.mark.slow


def run_cli(capsys, *argv: str) -> str:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, f"genre-batch {' '.join(argv)} exited {code}:\n{out}"
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory, ray_local):
    """Run the chain once on a small catalogue; tests below inspect what it left."""
    base = tmp_path_factory.mktemp("chain")
    catalogue, root = base / "catalogue", base / "root"
    summary = write_catalogue(catalogue, n_songs=24, seed=3, min_duration_s=12.0, max_duration_s=16.0)
    return {"catalogue": catalogue, "root": str(root), "summary": summary, "base": base}


@pytest.fixture(scope="module")
def ingested(chain):
    code = main(["ingest", "--catalogue", str(chain["catalogue"]), "--root", chain["root"], "--files-per-task", "6"])
    assert code == 0
    layout = RootLayout(chain["root"])
    version = latest_version(layout.ingest_area, "ingest")
    return {**chain, "layout": layout, "version": version, "manifest": read_json(layout.ingest_manifest(version))}


@pytest.fixture(scope="module")
def trained(ingested):
    assert main(["train", "--root", ingested["root"], "--epochs", "2", "--batch-size", "16"]) == 0
    return ingested


@pytest.fixture(scope="module")
def indexed(trained):
    assert main(["index", "--root", trained["root"], "--n-trees", "10"]) == 0
    return trained


def test_ingest_tables(ingested):
    layout, version, manifest = ingested["layout"], ingested["version"], ingested["manifest"]
    songs = pq.read_table(layout.songs_table(version))
    errors = pd.read_parquet(layout.errors_table(version))
    assert songs.schema.remove_metadata() == schemas.SONGS.remove_metadata()
    songs = songs.to_pandas()
    assert len(songs) == ingested["summary"].songs
    # The deliberately broken file is an error row with its reason, and nothing else failed.
    assert errors["relative_path"].tolist() == [p for p in ingested["summary"].broken_files]
    assert errors["stage"].tolist() == ["decode"]
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


def test_training_outputs(trained):
    layout = trained["layout"]
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


def test_rerunning_a_training_run_resumes_it(trained):
    """Same command, more epochs: the run continues from its last checkpoint, not from zero."""
    layout = trained["layout"]
    run = latest_version(layout.models_area, "model")
    before = read_json(layout.model_metrics(run))["history"]
    assert main(["train", "--root", trained["root"], "--epochs", "3", "--batch-size", "16"]) == 0
    after = read_json(layout.model_metrics(run))["history"]
    assert latest_version(layout.models_area, "model") == run
    assert [h["epoch"] for h in after] == [1, 2, 3]
    assert after[:2] == before  # the first two epochs were not trained again


def test_index_outputs(indexed):
    layout = indexed["layout"]
    version = latest_version(layout.index_area, "index")
    manifest = read_json(layout.index_manifest(version))
    predictions = pd.read_parquet(layout.predictions_table(version))
    songs = pd.read_parquet(layout.songs_table(indexed["version"]))
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


def test_similar_and_classify(indexed, capsys, tmp_path):
    root = indexed["root"]
    predictions = pd.read_parquet(indexed["layout"].predictions_table(latest_version(indexed["layout"].index_area, "")))
    query = predictions.iloc[0]
    answer = json.loads(run_cli(capsys, "similar", "--root", root, "--song", query.song_id, "-k", "5", "--json"))
    ids = [n["song_id"] for n in answer["neighbours"]]
    assert len(ids) == 5 and query.song_id not in ids
    sims = [n["similarity"] for n in answer["neighbours"]]
    assert sims == sorted(sims, reverse=True)

    # A catalogue file as --audio: itself excluded, and its embedding equals the indexed one.
    answer = json.loads(run_cli(capsys, "similar", "--root", root, "--audio", query.path, "-k", "3", "--json"))
    assert query.song_id not in [n["song_id"] for n in answer["neighbours"]]

    # A new song, never ingested: classify answers with a genre (or unknown) and top-3.
    import dataclasses

    import soundfile

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


def test_evaluate(indexed, capsys):
    report = json.loads(run_cli(capsys, "evaluate", "--root", indexed["root"], "--json"))
    for split in ("valid", "test"):
        assert set(report[split]) >= {"song_accuracy", "tile_accuracy", "per_genre", "unknown_rule",
                                      "genre_precision_at_10"}
    assert 0.0 <= report["annoy_recall_at_10"] <= 1.0


def test_cli_help_runs_without_ray():
    out = subprocess.run([sys.executable, "-m", "genre_batch.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "similar" in out.stdout


def test_analyst_notebook_runs_on_the_outputs(indexed, monkeypatch):
    """Every code cell of notebooks/explore_outputs.ipynb runs against a real root."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / "explore_outputs.ipynb").read_text())
    monkeypatch.setenv("GENRE_BATCH_ROOT", indexed["root"])
    namespace: dict = {"display": lambda value: None}
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert cells
    for cell in cells:
        exec(compile("".join(cell["source"]), "notebook-cell", "exec"), namespace)
    assert len(namespace["predictions"]) == len(namespace["songs"])
