"""The pretrain job on a local Ray of 2 CPUs: an unlabelled catalogue, two DDP workers whose
negatives are each other's songs, a checkpoint of kind pretrain, a resumed run."""

from __future__ import annotations

import pytest

from genre_batch.checkpoint import is_pretrain, load_checkpoint_state
from genre_batch.commands import write_demo_catalogue
from genre_batch.config import ModelConfig, TrainConfig
from genre_batch.layout import RootLayout
from genre_batch.pretraining import RERECORD_DB, TEMPERATURE, VIEW_FRAMES
from genre_batch.storage import exists, read_json
from pipelines.ingest import run_ingest
from pipelines.pretrain import run_pretrain

pytestmark = pytest.mark.slow

SMALL = ModelConfig.for_family("crnn", channels=(8, 16, 16, 32), hidden=16)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory, ray_local):
    base = tmp_path_factory.mktemp("pretrain")
    write_demo_catalogue(base / "music", n_songs=10, seed=8, min_duration_s=12.0, max_duration_s=13.0)
    run_ingest(str(base / "music"), str(base / "root"), labels="none")
    return str(base / "root")


def test_two_workers_pretrain_on_unlabelled_songs_and_resume(unlabelled):
    config = TrainConfig(epochs=1, batch_size=4, num_workers=2, model=SMALL)
    report = run_pretrain(unlabelled, config, run="ssl")
    layout = RootLayout(unlabelled)
    state = load_checkpoint_state(report.model_uri)
    assert is_pretrain(state) and state["labels"] == ["(self-supervised)"]
    assert report.history[0]["songs_per_batch"] == 4  # each worker's 2 songs met the other worker's 2
    record = read_json(f"{layout.model_dir('ssl')}/pretrain.json")
    assert record["kind"] == "pretrain" and record["songs"] == 10
    assert record["views"] == {"crop_frames": VIEW_FRAMES, "rerecord_db": RERECORD_DB, "temperature": TEMPERATURE}
    assert not exists(f"{layout.models_area}/LATEST")  # never published as the genre model
    again = run_pretrain(unlabelled, TrainConfig(epochs=2, batch_size=4, num_workers=2, model=SMALL), run="ssl")
    assert again.epochs == 2 and again.history[0] == report.history[0]  # resumed, not started over
    done = run_pretrain(unlabelled, TrainConfig(epochs=2, batch_size=4, num_workers=2, model=SMALL), run="ssl")
    assert done.seconds == 0.0  # has its epochs: not trained again


def test_a_genre_model_starts_from_the_pretrain_run_and_compare_shows_both(unlabelled, tmp_path):
    """The same songs, now labelled: train --init keeps the pretrained encoder; compare --init
    reports the family from scratch and from pretraining side by side."""
    from genre_batch.checkpoint import load_model_bundle
    from genre_batch.storage import read_bytes
    from pipelines.compare import run_compare
    from pipelines.train import run_train

    base = tmp_path / "labelled"
    write_demo_catalogue(base / "music", n_songs=10, seed=8, min_duration_s=12.0, max_duration_s=13.0)
    summary_csv = base / "music" / "labels.csv"
    run_ingest(str(base / "music"), str(base / "root"), labels=str(summary_csv))
    root = str(base / "root")
    layout = RootLayout(root)
    # The family's default sizes: compare builds each family at them, from scratch and from "ssl".
    run_pretrain(root, TrainConfig(epochs=1, batch_size=4), run="ssl")
    with pytest.raises(Exception, match="give --model crnn"):  # checked before any worker starts
        run_train(root, TrainConfig(epochs=1, model=ModelConfig.for_family("cnn"), init="ssl"))
    compared = run_compare(root, ("crnn",), 1, TrainConfig(epochs=1, init="ssl")).comparison
    assert [row.family for row in compared.rows] == ["crnn", "crnn+ssl"]
    with pytest.raises(Exception, match="genre model, not a pretrain run"):
        run_train(root, TrainConfig(epochs=1, init=compared.rows[0].run))
    metrics = read_json(layout.model_metrics(compared.rows[1].run))
    assert metrics["train_config"]["init"] == "ssl"  # the fine-tuned run started from the pretrain run
    assert set(compared.summary()) == {"crnn", "crnn+ssl"}
    bundle = load_model_bundle(read_bytes(layout.model_file(compared.rows[1].run)))
    assert bundle.labels and "(self-supervised)" not in bundle.labels  # a genre model, with its own head


def test_a_catalogue_without_labels_is_indexed_and_searched_with_a_pretrain_run(unlabelled, capsys):
    import json

    import pandas as pd

    from genre_batch.cli import main
    from genre_batch.storage import latest_version

    run_pretrain(unlabelled, TrainConfig(epochs=1, batch_size=4, num_workers=2, model=SMALL), run="ssl")  # done: reused
    assert main(["index", "--root", unlabelled, "--model", "ssl", "--n-trees", "5"]) == 0
    layout = RootLayout(unlabelled)
    version = latest_version(layout.index_area, "index")
    manifest = read_json(layout.index_manifest(version))
    assert manifest["model_run"] == "ssl" and manifest["labels"] == []
    assert "self-supervised" in manifest["genres"] and "train --init ssl" in manifest["genres"]
    predictions = pd.read_parquet(layout.predictions_table(version))
    assert len(predictions) == 10 and (predictions["genre"] == "unknown").all()
    assert "no genres (a pretrain run" in capsys.readouterr().out
    song = predictions["song_id"].iloc[0]
    assert main(["similar", "--root", unlabelled, "--song", song, "-k", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["neighbours"]) == 3 and song not in [n["song_id"] for n in answer["neighbours"]]
    assert main(["evaluate", "--root", unlabelled]) == 0
    text = capsys.readouterr().out
    assert "self-supervised" in text and "genre precision@10 of similar songs" in text


def test_the_demo_without_labels(ray_local, tmp_path, capsys):
    from genre_batch.cli import main

    assert main(["demo", "--root", str(tmp_path / "demo"), "--songs", "6", "--epochs", "1", "--unlabelled"]) == 0
    out = capsys.readouterr().out
    assert "genre-batch demo, no labels" in out and "pretrain crnn-pretrain-" in out
    assert "every genre is unknown" in out and out.count("similar to ") == 3
