"""``TrainLoop``, the training workers' loop, on plain torch batches (no Ray): it learns, its
validation pass changes nothing, it checkpoints and resumes, and a seed gives one model."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from genre_batch.checkpoint import CheckpointError
from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.errors import ConfigError
from genre_batch.models import tiles_to_input
from genre_batch.training import TrainLoop, cosine_lr, early_stop_reached, selection_metric

FEATURES = FeatureConfig()
SMALL = ModelConfig(channels=(4, 8), embedding_dim=16, dropout=0.0)
CONFIG = TrainConfig(epochs=10, batch_size=4, learning_rate=3e-3, seed=3, model=SMALL, freq_mask=0, time_mask=0)
LABELS = ["dark", "bright"]


def batches(seed: int, n_batches: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two classes a CNN tells apart at once: dark tiles (0..100) and bright ones (150..255)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        targets = torch.tensor([0, 1, 0, 1])
        low = torch.randint(0, 100, (4, 256, 256), generator=generator)
        high = torch.randint(150, 256, (4, 256, 256), generator=generator)
        out.append((torch.where(targets[:, None, None] == 1, high, low).to(torch.uint8), targets))
    return out


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    loop = TrainLoop(CONFIG, FEATURES, LABELS)
    metrics = [loop.run_epoch(epoch, batches(epoch), batches(100)) for epoch in range(CONFIG.epochs)]
    return loop, metrics


def test_it_learns_and_keeps_every_epochs_numbers(trained):
    loop, metrics = trained
    assert loop.history == metrics and [m["epoch"] for m in metrics] == list(range(1, CONFIG.epochs + 1))
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["train_accuracy"] == metrics[-1]["valid_accuracy"] == 1.0  # BatchNorm statistics settle by then
    assert all(m["tiles_per_s"] > 0 and m["epoch_seconds"] > 0 for m in metrics)


def test_the_learning_rate_follows_the_cosine_of_the_epoch(trained):
    loop, _ = trained
    last = CONFIG.epochs - 1
    assert loop.optimizer.param_groups[0]["lr"] == pytest.approx(cosine_lr(CONFIG.learning_rate, last, CONFIG.epochs))
    assert cosine_lr(1.0, 0, 10) == 1.0 and cosine_lr(1.0, 9, 10) == pytest.approx(0.05)


def test_the_validation_pass_changes_no_weight_and_keeps_no_gradient(trained):
    loop, _ = trained
    before = {k: v.clone() for k, v in loop.model.state_dict().items()}
    totals = loop.run_pass(batches(7), train=False)
    assert totals.seen == 12 and not loop.model.training
    after = loop.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included


def test_a_checkpoint_resumes_where_it_stopped(trained):
    loop, metrics = trained
    state = loop.checkpoint_state(CONFIG.epochs - 1, metrics[-1])
    resumed = TrainLoop(CONFIG, FEATURES, LABELS, seed=99)
    resumed.restore(state)
    assert resumed.start_epoch == CONFIG.epochs and resumed.history == loop.history
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(), loop.model.state_dict().values()))
    assert state["extra"]["train_config"] == CONFIG.to_dict()


def test_it_refuses_to_resume_on_other_genres(trained):
    loop, metrics = trained
    state = loop.checkpoint_state(0, metrics[0])
    with pytest.raises(CheckpointError, match="trained on genres"):
        TrainLoop(CONFIG, FEATURES, ["bright", "dark"]).restore(state)


def test_one_seed_one_model(one_torch_thread):
    def train_once() -> dict[str, torch.Tensor]:
        loop = TrainLoop(CONFIG, FEATURES, LABELS)
        loop.run_epoch(0, batches(0), batches(100))
        return loop.model.state_dict()

    first, second = train_once(), train_once()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_validation_songs_are_scored_as_index_pools_them(one_torch_thread):
    """Song accuracy: each validation song's tiles' probabilities summed, argmax against its label."""
    loop = TrainLoop(CONFIG, FEATURES, LABELS, valid_songs=["s0", "s1", "s2"])
    tiles, targets = batches(100, n_batches=1)[0]  # targets 0, 1, 0, 1
    rows = torch.tensor([0, 1, 2, -1])  # the last tile belongs to no validation song
    totals = loop.run_pass([(tiles, targets, rows)], train=False)
    assert totals.song_targets is not None and totals.song_targets.tolist() == [0, 1, 0]
    assert totals.song_probs is not None and torch.allclose(totals.song_probs.sum(dim=1), torch.ones(3, dtype=torch.float64))
    predicted = totals.song_probs.argmax(dim=1)
    assert totals.song_accuracy() == pytest.approx(float((predicted == totals.song_targets).double().mean()))
    metrics = loop.run_epoch(0, batches(0), [(tiles, targets, rows)])
    assert 0.0 <= metrics["valid_song_accuracy"] <= 1.0
    assert math.isnan(TrainLoop(CONFIG, FEATURES, LABELS).run_epoch(0, batches(0), batches(100))["valid_song_accuracy"])


def test_early_stopping_waits_patience_epochs_without_a_better_score():
    history = [{"valid_song_accuracy": v} for v in (0.5, 0.7, 0.6, 0.7)]
    assert early_stop_reached(history, "valid_song_accuracy", 2)  # 0.6 and 0.7 do not beat 0.7
    assert not early_stop_reached(history, "valid_song_accuracy", 3)  # 0.7 beats 0.5
    assert not early_stop_reached(history, "valid_song_accuracy", 0)  # off
    assert not early_stop_reached(history[:2], "valid_song_accuracy", 2)  # too early to tell
    unscored = [{"valid_song_accuracy": float("nan")}] * 4
    assert not early_stop_reached(unscored, "valid_song_accuracy", 1)  # no validation songs: never
    loop = TrainLoop(dataclasses.replace(CONFIG, patience=2), FEATURES, LABELS)
    loop.history = history
    assert loop.should_stop()


def test_the_selection_metric_follows_the_config():
    assert selection_metric(CONFIG) == "valid_song_accuracy"
    assert selection_metric(dataclasses.replace(CONFIG, select_on="tile")) == "valid_accuracy"
    with pytest.raises(ConfigError):
        TrainConfig(select_on="loss")
    with pytest.raises(ConfigError):
        TrainConfig(patience=-1)


def test_mixup_trains_and_one_seed_gives_one_model(one_torch_thread):
    config = dataclasses.replace(CONFIG, mixup_alpha=0.4, freq_shift=4, crop_frames=200)

    def train_once() -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        loop = TrainLoop(config, FEATURES, LABELS)
        return loop.run_epoch(0, batches(0), batches(100)), loop.model.state_dict()

    (metrics, first), (_, second) = train_once(), train_once()
    assert math.isfinite(metrics["train_loss"]) and 0.0 <= metrics["valid_accuracy"] <= 1.0
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_moving_average_is_what_is_validated_saved_and_resumed(one_torch_thread):
    from genre_batch.checkpoint import load_model_bundle
    from genre_batch.training import RAW_WEIGHTS

    config = dataclasses.replace(CONFIG, ema_decay=0.9)
    loop = TrainLoop(config, FEATURES, LABELS)
    metrics = loop.run_epoch(0, batches(0), batches(100))
    raw, averaged = loop.model.state_dict(), loop.evaluated_model.state_dict()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw if raw[k].is_floating_point())
    state = loop.checkpoint_state(0, metrics)
    assert all(torch.equal(state["model_state"][k], averaged[k]) for k in averaged)
    assert all(torch.equal(state["extra"][RAW_WEIGHTS][k], raw[k]) for k in raw)
    bundle = load_model_bundle(state)  # inference gets the average
    assert all(torch.equal(bundle.model.state_dict()[k], averaged[k]) for k in averaged)

    resumed = TrainLoop(config, FEATURES, LABELS, seed=9)
    resumed.restore(state)
    assert all(torch.equal(resumed.model.state_dict()[k], raw[k]) for k in raw)
    assert all(torch.equal(resumed.evaluated_model.state_dict()[k], averaged[k]) for k in averaged)
    assert int(resumed.ema.n_averaged) == int(loop.ema.n_averaged) > 0  # the next step averages, not copies
    assert TrainLoop(CONFIG, FEATURES, LABELS).ema is None  # off by default
    with pytest.raises(ConfigError):
        TrainConfig(ema_decay=1.0)


def test_band_norm_keeps_the_training_bands_statistics_in_the_model(one_torch_thread, tmp_path):
    """The statistics come from the training tiles, live in the model's state dict, reach the
    checkpoint and are applied at inference; a model without them is unchanged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genre_batch import schemas
    from genre_batch.checkpoint import load_model_bundle
    from genre_batch.training import band_statistics

    tiles = torch.zeros(2, 256, 256, dtype=torch.uint8)
    tiles[:, 128:, :] = 255  # the upper half of the bands loud, the lower silent
    table = pa.table({"song_id": ["a", "b"], "tile_index": pa.array([0, 0], pa.int32()),
                      "start_s": pa.array([0.0, 0.0], pa.float32()), "tile": [t.numpy().tobytes() for t in tiles],
                      "label": ["dark", "bright"], "split": ["train", "train"]}, schema=schemas.TILES)
    pq.write_table(table, tmp_path / "shard.parquet")
    mean, std = band_statistics([str(tmp_path / "shard.parquet")], {"a", "b"}, FEATURES)
    assert mean[:128] == [-1.0] * 128 and mean[128:] == [1.0] * 128 and max(std) == 0.0

    config = dataclasses.replace(CONFIG, band_norm=True)
    with pytest.raises(ValueError, match="band statistics"):
        TrainLoop(config, FEATURES, LABELS)
    loop = TrainLoop(config, FEATURES, LABELS, band_stats=(mean, [0.5] * 256))
    assert loop.model_config.input_bands == 256 and CONFIG.model.input_bands == 0
    metrics = loop.run_epoch(0, batches(0), batches(100))
    bundle = load_model_bundle(loop.checkpoint_state(0, metrics))
    assert bundle.model_config.input_bands == 256
    assert torch.equal(bundle.model.band_mean, torch.tensor(mean)) and torch.equal(bundle.model.band_std, torch.full((256,), 0.5))
    x = tiles_to_input(batches(3)[0][0])
    torch.testing.assert_close(bundle.model.normalise_bands(x), (x - torch.tensor(mean).view(1, 1, -1, 1)) / 0.5)
    with pytest.raises(ValueError, match="mel bands"):
        bundle.model(torch.zeros(1, 128, 64, dtype=torch.uint8))
    assert "band_mean" not in TrainLoop(CONFIG, FEATURES, LABELS).model.state_dict()


def test_the_moving_average_warms_up_then_keeps_its_decay():
    import torch

    from genre_batch.training import ema_decay_at, warmup_ema

    assert ema_decay_at(0.99, 0) == pytest.approx(0.1)  # the first steps mostly follow the weights
    assert ema_decay_at(0.99, 90) == pytest.approx(0.91)
    assert ema_decay_at(0.99, 10_000) == 0.99
    averaged, current = [torch.zeros(3), torch.tensor(5)], [torch.ones(3), torch.tensor(7)]
    warmup_ema(0.99)(averaged, current, torch.tensor(0))
    torch.testing.assert_close(averaged[0], torch.full((3,), 0.9))
    assert int(averaged[1]) == 7  # an integer counter is copied, not averaged
