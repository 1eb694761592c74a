"""A worker's self-supervised training without Ray: it learns (the loss falls), it checkpoints
and resumes as `train` does, its checkpoint is refused where a genre model is needed, and a
genre model starts from its encoder with a new head."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genre_batch.checkpoint import (
    CheckpointError,
    checkpoint_state,
    init_from_pretrain,
    is_pretrain,
    load_checkpoint_state,
    load_model_bundle,
    save_checkpoint,
)
from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.models import build_model
from genre_batch.pretraining import PretrainLoop
from tests.test_models import striped_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FEATURES = FeatureConfig(n_mels=128, tile_frames=128, tile_hop_frames=128, fmax=8000.0)
SMALL = ModelConfig.for_family("cnn", channels=(8, 16, 16, 32))
CONFIG = TrainConfig(epochs=6, learning_rate=3e-3, freq_mask=4, time_mask=4, model=SMALL)


def pairs(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of 8 'songs', each two different tiles of one kind of stripes and period."""
    tiles, _ = striped_tiles(16, size=128, seed=seed)
    return [(tiles[i : i + 8], torch.roll(tiles[i : i + 8], shifts=3, dims=-1)) for i in range(0, 32, 8)]


def test_pretraining_learns_and_resumes_from_its_checkpoint(tmp_path):
    loop = PretrainLoop(CONFIG, FEATURES, view_frames=96)
    first = loop.run_epoch(0, pairs(0))
    for epoch in range(1, 5):
        last = loop.run_epoch(epoch, pairs(epoch))
    assert last["train_loss"] < first["train_loss"]  # views of one song grow nearer than others
    state = loop.checkpoint_state(4, last)
    assert is_pretrain(state) and state["labels"] == ["(self-supervised)"]
    save_checkpoint(state, tmp_path / "model.pt")
    resumed = PretrainLoop(CONFIG, FEATURES, seed=7, view_frames=96)
    resumed.restore(load_checkpoint_state(tmp_path / "model.pt"))  # weights_only loading
    assert resumed.start_epoch == 5 and len(resumed.history) == 5
    for key, value in loop.inner.state_dict().items():
        torch.testing.assert_close(resumed.inner.state_dict()[key], value)


def test_a_pretrain_checkpoint_is_refused_where_a_genre_model_is_needed():
    loop = PretrainLoop(CONFIG, FEATURES, view_frames=96)
    state = loop.checkpoint_state(0, {"epoch": 1})
    with pytest.raises(CheckpointError, match="self-supervised .pretrain. run.*train --init"):
        load_model_bundle(state)
    bundle = load_model_bundle(state, allow_pretrain=True)  # an encoder, for embeddings
    assert bundle.model.embed(torch.zeros(2, 128, 128, dtype=torch.uint8)).shape == (2, 128)


def test_a_genre_model_starts_from_the_encoder_with_a_new_head():
    loop = PretrainLoop(CONFIG, FEATURES, view_frames=96)
    loop.run_epoch(0, pairs(0))
    state = loop.checkpoint_state(0, {"epoch": 1})
    torch.manual_seed(5)
    model = build_model(SMALL, n_classes=3)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    init_from_pretrain(model, state, FEATURES)
    for key, value in model.state_dict().items():
        if key.startswith("head."):
            torch.testing.assert_close(value, head_before[key])  # the genre head is the model's own
        else:
            torch.testing.assert_close(value, state["model_state"][key])  # the encoder is the pretrain run's
    assert model.state_dict()["head.2.weight"].shape == (3, 128)


def test_init_refuses_a_genre_model_another_family_or_other_tiles():
    genre = checkpoint_state(build_model(SMALL, 2), None, ["a", "b"], FEATURES, SMALL, 0, {}, [])
    with pytest.raises(CheckpointError, match="takes a pretrain run"):
        init_from_pretrain(build_model(SMALL, 2), genre, FEATURES)
    state = PretrainLoop(CONFIG, FEATURES, view_frames=96).checkpoint_state(0, {"epoch": 1})
    other = ModelConfig.for_family("resnet", channels=(8, 16, 16, 32))
    with pytest.raises(CheckpointError, match="pretrain the family you train"):
        init_from_pretrain(build_model(other, 2), state, FEATURES)
    with pytest.raises(Exception, match="featurised differently"):
        init_from_pretrain(build_model(SMALL, 2), state, dataclasses.replace(FEATURES, top_db=60.0))
