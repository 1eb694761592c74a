"""Every model family keeps the contract: uint8 tiles in, logits and a signed embedding (the
penultimate layer) out of one pass; any tile size; every parameter learns; it saves, loads
and resumes through the checkpoint; and it can learn a two-class toy task."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genre_batch.checkpoint import checkpoint_state, load_model_bundle, save_checkpoint
from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.models import MODEL_REGISTRY, build_model, parameter_count, tiles_to_input
from genre_batch.training import TrainLoop
from tests.test_models import assert_learns_stripes, random_tiles, striped_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = sorted(MODEL_REGISTRY)
# Smaller than the defaults, so that the suite stays fast; the layouts are the same.
SMALL = {
    "cnn": ModelConfig.for_family("cnn", channels=(8, 16, 16, 32)),
    "crnn": ModelConfig.for_family("crnn", channels=(8, 16, 16, 32), hidden=16),
    "rnn": ModelConfig.for_family("rnn", channels=(32,), hidden=16),
    "resnet": ModelConfig.for_family("resnet", channels=(8, 16, 16, 32)),
    "musicnn": ModelConfig.for_family("musicnn", channels=(4, 16)),
}


def test_every_family_has_defaults_and_a_small_test_size():
    assert set(SMALL) == set(FAMILIES) == {"cnn", "crnn", "rnn", "resnet", "musicnn"}
    for name in FAMILIES:
        assert ModelConfig.for_family(name).name == name
    assert ModelConfig.for_family("cnn") == ModelConfig()  # the default model is unchanged


@pytest.mark.parametrize("name", FAMILIES)
def test_the_default_sizes_keep_the_contract(name):
    model = build_model(ModelConfig.for_family(name), n_classes=10).eval()
    tiles = random_tiles(2)
    with torch.no_grad():
        logits, embedding = model.forward_with_embedding(tiles)
        again = model.embed(tiles)
    assert logits.shape == (2, 10) and embedding.shape == (2, 128) and model.embedding_dim == 128
    torch.testing.assert_close(embedding, again)  # eval mode is deterministic
    torch.testing.assert_close(model(tiles_to_input(tiles)), logits)  # uint8 or converted input
    assert (embedding < 0).any(), "the embedding is taken before the ReLU (signed)"
    assert parameter_count(model) < 2_000_000  # sized to train on a CPU


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("shape", [(128, 128), (256, 96)])
def test_other_tile_sizes(name, shape):
    model = build_model(SMALL[name], n_classes=3).eval()
    tiles = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    with torch.no_grad():
        assert model(tiles).shape == (2, 3)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(SMALL[name], n_classes=4).train()
    F.cross_entropy(model(random_tiles(4, size=128)), torch.tensor([0, 1, 2, 3])).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_and_resume_through_the_checkpoint(name):
    features, labels = FeatureConfig(), ["a", "b"]
    config = TrainConfig(epochs=3, batch_size=4, seed=1, model=SMALL[name], freq_mask=0, time_mask=0)
    loop = TrainLoop(config, features, labels)
    tiles, targets = striped_tiles(2, size=256)
    metrics = loop.run_epoch(0, [(tiles, targets)], [(tiles, targets)])
    buffer = io.BytesIO()
    save_checkpoint(loop.checkpoint_state(0, metrics), buffer)

    bundle = load_model_bundle(buffer.getvalue())
    assert bundle.model_config == SMALL[name] and type(bundle.model) is type(loop.model)
    loop.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.model.embed(tiles), loop.model.embed(tiles))
    resumed = TrainLoop(config, features, labels, seed=7)
    resumed.restore(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    assert resumed.start_epoch == 1
    np.testing.assert_equal(resumed.history, loop.history)  # NaN (no validation songs) equals NaN here
    resumed.run_epoch(1, [(tiles, targets)], [(tiles, targets)])  # and trains on from there


@pytest.mark.parametrize("name", FAMILIES)
def test_it_learns_a_toy_task(name):
    """Horizontal stripes (loud mel bins) against vertical ones (onsets): timbre against rhythm,
    which every family can see (the recurrent ones take a few more steps)."""
    torch.manual_seed(0)
    assert_learns_stripes(build_model(SMALL[name], n_classes=2), steps=40)


def test_a_checkpoint_of_the_first_model_still_loads():
    """Checkpoints written before the families (no ``hidden`` in their model config) rebuild
    the same cnn."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(), n_classes=2)
    state = checkpoint_state(model, None, ["a", "b"], FeatureConfig(), ModelConfig(), 0, {}, [])
    del state["model_config"]["hidden"]
    bundle = load_model_bundle(state)
    assert bundle.model_config == ModelConfig()
    tiles = random_tiles(1)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(tiles), model.eval()(tiles))


@pytest.mark.parametrize("frames, windows, width, expected", [
    (256, 3, 192, [0, 32, 64]),
    (256, 2, 128, [0, 128]),
    (256, 1, 192, [0]),  # off
    (192, 3, 192, [0]),  # a tile no wider than a window is read whole
    (200, 5, 198, [0, 1, 2]),  # windows that would start at the same frame are one window
])
def test_window_offsets_cover_the_tile_evenly(frames, windows, width, expected):
    from genre_batch.models.base import window_offsets

    config = ModelConfig(eval_windows=windows, eval_window_frames=width)
    offsets = window_offsets(frames, config)
    assert offsets == expected
    assert offsets[-1] + (width if len(offsets) > 1 else frames) == frames  # the last window ends with the tile


@pytest.mark.parametrize("name", FAMILIES)
def test_the_window_ensemble_is_the_mean_of_the_windows_in_eval_mode_only(name):
    torch.manual_seed(0)
    windowed = build_model(dataclasses.replace(SMALL[name], eval_windows=3, eval_window_frames=192), n_classes=4)
    whole = build_model(SMALL[name], n_classes=4)
    whole.load_state_dict(windowed.state_dict())  # same weights: windows are no parameter
    tiles = random_tiles(3)
    windowed.eval(), whole.eval()
    with torch.no_grad():
        logits, embedding = windowed.forward_with_embedding(tiles)
        parts = [whole.forward_with_embedding(tiles[..., start : start + 192]) for start in (0, 32, 64)]
    assert embedding.shape == (3, 128)
    torch.testing.assert_close(embedding, sum(part[1] for part in parts) / 3)
    torch.testing.assert_close(logits, sum(part[0] for part in parts) / 3)
    windowed.train(), whole.train()
    torch.manual_seed(1)
    trained_logits = windowed(tiles)
    torch.manual_seed(1)
    torch.testing.assert_close(trained_logits, whole(tiles))  # training reads the whole tile


def test_compare_builds_each_family_with_the_recipe_fields_of_the_base_model():
    base = ModelConfig(dropout=0.1, eval_windows=3, eval_window_frames=160)
    for name in FAMILIES:
        config = base.as_family(name)
        assert config == ModelConfig.for_family(name, dropout=0.1, eval_windows=3, eval_window_frames=160)
    with pytest.raises(Exception, match="eval_windows"):
        ModelConfig(eval_windows=0)
