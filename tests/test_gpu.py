"""Training and batch inference on CUDA (`--gpu`), where a GPU is present; skipped elsewhere.

The CPU chain is test_chain's; this module proves the same commands with one GPU per Ray Train
worker and per inference actor on a GPU machine (run there with `pytest -m gpu`)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from genre_batch.cli import main
from genre_batch.commands import write_demo_catalogue
from genre_batch.layout import RootLayout
from genre_batch.storage import latest_version, read_json

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_train_and_index_on_gpu(tmp_path, ray_local):
    assert ray_local.cluster_resources().get("GPU", 0) >= 1, "Ray must see the GPU torch sees"
    catalogue, root = tmp_path / "music", str(tmp_path / "root")
    write_demo_catalogue(catalogue, n_songs=12, seed=4, min_duration_s=12.0, max_duration_s=14.0)
    assert main(["ingest", "--catalogue", str(catalogue), "--root", root]) == 0
    assert main(["train", "--root", root, "--epochs", "2", "--workers", "1", "--gpu"]) == 0
    layout = RootLayout(root)
    metrics = read_json(layout.model_metrics(latest_version(layout.models_area, "model")))
    assert metrics["train_config"]["use_gpu"] is True and len(metrics["history"]) == 2
    assert all(h["tiles_per_s"] > 0 for h in metrics["history"])
    assert main(["index", "--root", root, "--gpu"]) == 0
    predictions = pd.read_parquet(layout.predictions_table(latest_version(layout.index_area, "index")))
    assert len(predictions) == 12 and predictions["embedding"].map(len).eq(128).all()
