"""The pretrain job on a local Ray of 2 CPUs: an unlabelled catalogue, two DDP workers whose
negatives are each other's songs, a checkpoint of kind pretrain, a resumed run."""

from __future__ import annotations

import pytest

from genre_batch.checkpoint import is_pretrain, load_checkpoint_state
from genre_batch.commands import write_demo_catalogue
from genre_batch.config import ModelConfig, TrainConfig
from genre_batch.layout import RootLayout
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
    assert not exists(f"{layout.models_area}/LATEST")  # never published as the genre model
    again = run_pretrain(unlabelled, TrainConfig(epochs=2, batch_size=4, num_workers=2, model=SMALL), run="ssl")
    assert again.epochs == 2 and again.history[0] == report.history[0]  # resumed, not started over
    done = run_pretrain(unlabelled, TrainConfig(epochs=2, batch_size=4, num_workers=2, model=SMALL), run="ssl")
    assert done.seconds == 0.0  # has its epochs: not trained again
