"""Models for tests that need one published but not a trained one (training is proven in
test_chain and test_cluster): what these tests check does not depend on model quality."""

from __future__ import annotations

import io

import torch

from genre_batch.artifacts import published_ingest
from genre_batch.checkpoint import checkpoint_state, save_checkpoint
from genre_batch.config import ModelConfig
from genre_batch.layout import RootLayout
from genre_batch.models import build_model
from genre_batch.storage import publish, write_bytes
from genre_batch.tables import read_frame
from genre_batch.training import label_vocabulary


def publish_untrained_model(root: str, run: str, seed: int = 0) -> None:
    """Publish a freshly initialised CNN for the published ingest's genres under any root URI,
    laid out as `train` lays out a trained run (models/<run>/model.pt, models/LATEST)."""
    ingest = published_ingest(root)
    labels = label_vocabulary(read_frame(ingest.songs_uri))
    torch.manual_seed(seed)
    model = build_model(ModelConfig(), len(labels))
    buffer = io.BytesIO()
    save_checkpoint(checkpoint_state(model, None, labels, ingest.feature_config, ModelConfig(), 0, {}, []), buffer)
    layout = RootLayout(root)
    write_bytes(layout.model_file(run), buffer.getvalue())
    publish(layout.models_area, run)
