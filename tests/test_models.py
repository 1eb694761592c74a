"""GenreCNN shapes, input conversion, augmentation, registry, and a tiny overfit check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig
from genre_batch.errors import ConfigError
from genre_batch.models import GenreCNN, TileAugment, build_model, tiles_to_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = ModelConfig(channels=(8, 16, 16, 32), stem_stride=4, embedding_dim=128, dropout=0.3)



def random_tiles(n: int, size: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=generator)


def striped_tiles(n_per_class: int, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: horizontal stripes (a few loud mel bins); class 1: vertical stripes (onsets)."""
    generator = torch.Generator().manual_seed(seed)
    tiles, labels = [], []
    for label in (0, 1):
        for _ in range(n_per_class):
            period = int(torch.randint(6, 12, (1,), generator=generator))
            phase = int(torch.randint(0, period, (1,), generator=generator))
            stripes = ((torch.arange(size) + phase) % period < period // 2).to(torch.float32)
            image = stripes[:, None].expand(size, size) if label == 0 else stripes[None, :].expand(size, size)
            noise = torch.rand(size, size, generator=generator) * 60
            tiles.append((image * 180 + noise).to(torch.uint8))
            labels.append(label)
    return torch.stack(tiles), torch.tensor(labels)


def test_default_model_shapes_uint8_and_float() -> None:
    model = build_model(ModelConfig(), n_classes=7).eval()
    tiles = random_tiles(3)
    with torch.no_grad():
        logits_uint8 = model(tiles)
        logits_channel = model(tiles.unsqueeze(1))
        logits_float = model(tiles_to_input(tiles))
        embedding = model.embed(tiles)
        both = model.forward_with_embedding(tiles)
    assert logits_uint8.shape == (3, 7)
    assert embedding.shape == (3, 128)
    assert model.embedding_dim == 128
    torch.testing.assert_close(logits_uint8, logits_channel)
    torch.testing.assert_close(logits_uint8, logits_float)
    torch.testing.assert_close(both[0], logits_uint8)
    torch.testing.assert_close(both[1], embedding)
    assert (embedding < 0).any(), "embedding is taken before the ReLU (signed)"


def test_model_accepts_other_tile_sizes() -> None:
    model = GenreCNN(4, SMALL).eval()
    with torch.no_grad():
        assert model(random_tiles(2, size=64)).shape == (2, 4)


def test_model_rejects_bad_input() -> None:
    model = GenreCNN(2, SMALL)
    with pytest.raises(TypeError):
        model(torch.zeros(2, 64, 64, dtype=torch.int64))
    with pytest.raises(ValueError):
        model(torch.zeros(2, 3, 64, 64))


def test_tiles_to_input_range_shape_and_numpy() -> None:
    tiles = torch.tensor([[[0, 255], [128, 64]]], dtype=torch.uint8)
    x = tiles_to_input(tiles)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert abs(float(x[0, 0, 1, 0])) < 0.01
    torch.testing.assert_close(tiles_to_input(tiles.numpy()), x)
    assert tiles_to_input(tiles[0]).shape == (1, 1, 2, 2)
    with pytest.raises(ValueError):
        tiles_to_input(torch.zeros(1, 2, 4, 4, dtype=torch.uint8))


def test_build_model_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match=r"'transformer'.*\['cnn', 'crnn', 'musicnn', 'resnet', 'rnn'\]"):
        build_model(ModelConfig(name="transformer"), n_classes=3)


def test_augment_changes_training_input_keeps_shape_and_is_identity_in_eval() -> None:
    torch.manual_seed(0)
    augment = TileAugment(freq_mask=24, time_mask=32, max_gain_db=6.0)
    x = tiles_to_input(random_tiles(8, size=128))
    original = x.clone()
    augmented = augment.train()(x)
    assert augmented.shape == x.shape
    assert not torch.equal(augmented, x)
    torch.testing.assert_close(x, original, rtol=0, atol=0)  # input left untouched
    assert augmented.min() >= -1.0 and augmented.max() <= 1.0
    # Masks are drawn per tile, not one mask for the whole batch.
    masked = augmented == augment.mask_value
    assert not all(torch.equal(masked[0], masked[i]) for i in range(1, 8))
    assert augment.eval()(x) is x


def test_augment_from_configs() -> None:
    augment = TileAugment.from_configs(TrainConfig(freq_mask=10, time_mask=20), FeatureConfig(top_db=60.0), max_gain_db=3.0)
    assert (augment.freq_mask, augment.time_mask, augment.top_db, augment.max_gain_db) == (10, 20, 60.0, 3.0)


def test_augment_masks_along_the_right_axes() -> None:
    torch.manual_seed(1)
    x = torch.full((16, 1, 64, 96), 0.5)
    only_freq = TileAugment(freq_mask=20, time_mask=0).train()(x)
    only_time = TileAugment(freq_mask=0, time_mask=20).train()(x)
    # A frequency mask blanks whole rows (mel bins), a time mask whole columns (frames).
    freq_masked = only_freq == 0.0
    time_masked = only_time == 0.0
    assert freq_masked.any() and time_masked.any()
    assert torch.equal(freq_masked.all(dim=3), freq_masked.any(dim=3))
    assert torch.equal(time_masked.all(dim=2), time_masked.any(dim=2))


def assert_learns_stripes(model: torch.nn.Module, steps: int = 30) -> None:
    """Train ``model`` on striped tiles for ``steps`` AdamW steps: the loss halves and every
    tile ends up right. Seed torch before building the model: its weights and dropout draw on it."""
    tiles, labels = striped_tiles(8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = tiles_to_input(tiles)
    losses = []
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    model.eval()
    with torch.no_grad():
        accuracy = float((model(tiles).argmax(dim=1) == labels).float().mean())
    assert accuracy == 1.0, losses


def test_tiny_overfit_stripes() -> None:
    torch.manual_seed(0)
    assert_learns_stripes(GenreCNN(2, SMALL))


def test_time_stretch_keeps_the_shape_and_pads_a_faster_tile_with_silence() -> None:
    from genre_batch.models.augment import SILENCE, stretch_time

    torch.manual_seed(3)
    x = torch.linspace(-0.5, 0.5, 64).repeat(8, 1, 16, 1)  # a rising ramp along time
    out = stretch_time(x, 0.3)
    assert out.shape == x.shape and out.min() >= -1.0 and out.max() <= 1.0
    padded = (out == SILENCE).all(dim=2).squeeze(1)  # frames that are silence in every bin
    assert padded.any(), "some tile was stretched shorter and padded"
    for tile, silent in zip(out[:, 0, 0], padded):
        audible = tile[~silent]
        assert torch.all(audible[1:] >= audible[:-1] - 1e-6)  # still a ramp: time order kept
    torch.testing.assert_close(stretch_time(x, 0.0), x)


def test_random_crop_takes_one_window_per_tile() -> None:
    from genre_batch.models.augment import random_crop

    torch.manual_seed(4)
    x = torch.arange(40, dtype=torch.float32).repeat(6, 1, 3, 1)
    out = random_crop(x, 16)
    assert out.shape == (6, 1, 3, 16)
    for tile in out[:, 0, 0]:
        assert torch.equal(tile, torch.arange(int(tile[0]), int(tile[0]) + 16, dtype=torch.float32))
    assert len({int(tile[0]) for tile in out[:, 0, 0]}) > 1  # offsets drawn per tile
    assert random_crop(x, 64) is x


def test_frequency_shift_moves_the_mel_axis_and_fills_with_silence() -> None:
    from genre_batch.models.augment import SILENCE, shift_frequency

    torch.manual_seed(5)
    x = torch.full((16, 1, 32, 8), SILENCE)
    x[:, :, 16, :] = 0.5  # one loud band
    out = shift_frequency(x, 4)
    loud = (out[:, 0, :, 0] == 0.5).float().argmax(dim=1)
    assert set(loud.tolist()) <= set(range(12, 21)) and len(set(loud.tolist())) > 1
    assert torch.equal((out == 0.5).sum(dim=(1, 2, 3)), torch.full((16,), 8))  # nothing lost or made up


def test_rerecording_limits_the_band_raises_the_floor_and_stays_in_range() -> None:
    """Each tile through another chain: quieter at the band's edges than in its middle, never
    below a noise floor above the bottom, another chain per tile, the model input range kept."""
    from genre_batch.models.augment import SILENCE, rerecord

    torch.manual_seed(8)
    x = torch.full((64, 1, 128, 4), 0.2)  # a flat spectrum, 64 dB above the bottom of 80
    x[:, :, :, 0] = SILENCE  # and a silent frame
    out = rerecord(x, 20.0, top_db=80.0)
    assert out.shape == x.shape and out.min() >= -1.0 and out.max() <= 1.0
    loud = out[:, 0, :, 1]
    middle = loud[:, 50:70].mean(dim=1)
    assert (loud[:, -1] < middle).float().mean() > 0.9  # a low-pass nearly always bites at the top
    assert (loud[:, 0] < middle).float().mean() > 0.6  # a high-pass, or the tilt, at the bottom
    silent = out[:, 0, :, 0]
    floor_db = (silent + 1.0) * 40.0  # dB above the bottom
    assert floor_db.min() >= 0.0 and floor_db.max() <= 40.0 + 1e-3 and floor_db.std() > 5.0  # up to 2 x 20 dB
    assert len({round(float(v), 3) for v in middle}) > 32  # another chain for every tile
    torch.manual_seed(8)
    assert torch.equal(rerecord(x, 20.0, top_db=80.0), out)  # drawn from the global seed
    assert rerecord(x, 0.0, top_db=80.0) is x  # strength 0: off


def test_rerecording_in_the_augmentation_and_off_by_default() -> None:
    x = tiles_to_input(random_tiles(4, size=64))
    assert TileAugment.from_configs(TrainConfig(), FeatureConfig()).rerecord_db == 0.0
    plain = TileAugment(freq_mask=0, time_mask=0).train()
    assert torch.equal(plain(x), x)
    rerecorded = TileAugment(freq_mask=0, time_mask=0, rerecord_db=20.0).train()
    assert not torch.equal(rerecorded(x), x) and rerecorded.eval()(x) is x
    with pytest.raises(ValueError):
        TileAugment(rerecord_db=-1.0)


def test_mixup_blends_each_tile_with_a_partner() -> None:
    from genre_batch.models.augment import mixup

    torch.manual_seed(6)
    x = torch.rand(8, 1, 4, 4)
    mixed, partner, weight = mixup(x, 0.4)
    assert 0.0 <= weight <= 1.0 and sorted(partner.tolist()) == list(range(8))
    torch.testing.assert_close(mixed, weight * x + (1 - weight) * x[partner])


def test_every_augmentation_is_off_in_eval_and_drawn_from_the_global_seed() -> None:
    augment = TileAugment(freq_mask=8, time_mask=8, time_stretch=0.2, crop_frames=48, freq_shift=3)
    x = tiles_to_input(random_tiles(4, size=64))
    assert augment.eval()(x) is x
    torch.manual_seed(7)
    first = augment.train()(x)
    torch.manual_seed(7)
    assert first.shape == (4, 1, 64, 48) and torch.equal(first, augment(x))
    with pytest.raises(ValueError):
        TileAugment(time_stretch=1.0)


def test_the_training_config_switches_reach_the_augmentation() -> None:
    config = TrainConfig(time_stretch=0.1, crop_frames=200, freq_shift=6, mixup_alpha=0.3)
    augment = TileAugment.from_configs(config, FeatureConfig())
    assert (augment.time_stretch, augment.crop_frames, augment.freq_shift) == (0.1, 200, 6)
    with pytest.raises(ConfigError):
        TrainConfig(time_stretch=1.5)
    with pytest.raises(ConfigError):
        TrainConfig(mixup_alpha=-0.1)
