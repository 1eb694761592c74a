"""Waveform -> log-mel dB -> uint8 -> tiles, checked against librosa; tile blobs; FeatureConfig."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Any

import librosa
import numpy as np
import pytest

from tests.audio_helpers import noisy_sine, sine
from genre_batch.config import FeatureConfig, ensure_same_features
from genre_batch.errors import AudioSilentError, AudioTooShortError, ConfigMismatchError
from genre_batch.features import (
    dequantise,
    featurise,
    mel_power,
    power_to_db,
    quantise_db,
)
from genre_batch.tiles import tiles_from_binary

CONFIG = FeatureConfig()
SR = CONFIG.sample_rate
DB_STEP = CONFIG.top_db / 255


def full_image(samples: np.ndarray, config: FeatureConfig = CONFIG) -> np.ndarray:
    """The whole song as one uint8 [n_mels, frames] image (what tiles are cut from)."""
    return quantise_db(power_to_db(mel_power(samples, config), config), config)


def expected_frames(n_samples: int, config: FeatureConfig = CONFIG) -> int:
    return 1 + n_samples // config.hop_length  # centred STFT


def expected_tiles(n_samples: int, config: FeatureConfig = CONFIG) -> int:
    return (expected_frames(n_samples, config) - config.tile_frames) // config.tile_hop_frames + 1


# --- mel / dB -------------------------------------------------------------------------


def test_default_geometry_is_the_documented_one() -> None:
    assert (CONFIG.sample_rate, CONFIG.n_fft, CONFIG.hop_length, CONFIG.n_mels) == (22_050, 2048, 512, 256)
    assert (CONFIG.fmin, CONFIG.fmax, CONFIG.top_db) == (0.0, 11_025.0, 80.0)
    assert CONFIG.tile_shape == (256, 256) and CONFIG.tile_bytes == 256 * 256
    assert CONFIG.tile_seconds == pytest.approx(256 * 512 / 22_050)


def test_mel_filterbank_equals_librosa() -> None:
    from genre_batch.features import mel_filterbank

    for config in (CONFIG, FeatureConfig(n_mels=128, fmin=30.0, fmax=8000.0), FeatureConfig(sample_rate=16_000, fmax=8000.0)):
        expected = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                       fmin=config.fmin, fmax=config.fmax)
        np.testing.assert_allclose(mel_filterbank(config), expected, rtol=1e-5, atol=1e-9)


def test_window_is_scipys_periodic_hann() -> None:
    import scipy.signal

    from genre_batch.features import _window

    np.testing.assert_allclose(_window(2048), scipy.signal.get_window("hann", 2048, fftbins=True), atol=1e-7)


def test_mel_db_matches_librosa() -> None:
    samples = noisy_sine(440.0, 6.0, SR)
    reference = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=samples, sr=SR, n_fft=2048, hop_length=512, n_mels=256, fmin=0, fmax=11_025
        ),
        ref=np.max,
        top_db=80,
    )

    db = power_to_db(mel_power(samples, CONFIG), CONFIG)

    assert db.shape == reference.shape == (CONFIG.n_mels, expected_frames(len(samples)))
    assert db.dtype == np.float32
    # float32 rfft vs librosa's STFT differ by float rounding only, visible in the quietest
    # bins near the -80 dB floor (~1e-3 dB); 0.01 dB is 1/30 of one uint8 step (80/255 dB).
    np.testing.assert_allclose(db, reference, atol=1e-2, rtol=0)
    assert np.median(np.abs(db - reference)) < 1e-4
    assert db.max() == 0.0 and db.min() >= -CONFIG.top_db


@pytest.mark.parametrize("n_frames", [1, 127, 128, 129, 300])
@pytest.mark.parametrize("config", [CONFIG, FeatureConfig(n_mels=100, fmin=40.0, fmax=9000.0)], ids=["default", "100-mels"])
def test_chunked_blocked_mel_power_equals_the_dense_product(n_frames: int, config: FeatureConfig) -> None:
    """Chunk edges (128 frames) and a last, partial block of bands lose or double nothing."""
    from genre_batch.features import _window, mel_filterbank

    samples = noisy_sine(330.0, (n_frames - 1) * config.hop_length / SR, SR, seed=n_frames)
    padded = np.pad(samples.astype(np.float64), config.n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[:: config.hop_length]
    dense = mel_filterbank(config).astype(np.float64) @ (np.abs(np.fft.rfft(frames * _window(config.n_fft), axis=1)) ** 2).T

    power = mel_power(samples, config)

    assert power.shape == dense.shape == (config.n_mels, n_frames)
    np.testing.assert_allclose(power, dense, rtol=2e-4, atol=1e-6 * dense.max())


def test_power_to_db_of_silence_is_the_floor_not_nan() -> None:
    db = power_to_db(np.zeros((4, 3), dtype=np.float32), CONFIG)
    assert np.isfinite(db).all()
    assert db.min() >= -CONFIG.top_db


# --- quantisation ---------------------------------------------------------------------


def test_quantise_endpoints_and_clipping() -> None:
    db = np.array([-200.0, -CONFIG.top_db, -CONFIG.top_db / 2, 0.0, 5.0], dtype=np.float32)
    q = quantise_db(db, CONFIG)
    assert q.dtype == np.uint8
    assert q[0] == 0 and q[1] == 0
    assert q[2] in (127, 128)
    assert q[3] == 255 and q[4] == 255


def test_quantise_is_monotone_uses_every_level_and_dequantises_within_half_a_step() -> None:
    db = np.linspace(-CONFIG.top_db, 0.0, 100_001, dtype=np.float32)
    q = quantise_db(db, CONFIG)
    assert np.all(np.diff(q.astype(np.int16)) >= 0)
    assert set(np.unique(q).tolist()) == set(range(256))
    error = np.abs(dequantise(q, CONFIG) - db)
    assert error.max() <= DB_STEP / 2 + 1e-4
    np.testing.assert_allclose(dequantise(np.array([0, 255], dtype=np.uint8), CONFIG), [-CONFIG.top_db, 0.0])


# --- tiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("duration_s", [6.0, 8.7, 12.0, 15.0])
def test_tile_count_shape_and_start_times(duration_s: float) -> None:
    samples = noisy_sine(440.0, duration_s, SR, seed=1)

    song = featurise(samples, CONFIG)

    n = expected_tiles(len(samples))
    assert len(song) == n >= 1
    assert song.tiles.shape == (n, *CONFIG.tile_shape) and song.tiles.dtype == np.uint8
    np.testing.assert_allclose(
        song.start_s, np.arange(n) * CONFIG.tile_frames * CONFIG.hop_length / SR, rtol=1e-6
    )
    assert song.start_s.dtype == np.float32


def test_tiles_are_consecutive_slices_of_the_song_image() -> None:
    samples = noisy_sine(440.0, 12.0, SR, seed=2)
    image = full_image(samples)

    song = featurise(samples, CONFIG)

    for index, tile in enumerate(song.tiles):
        start = index * CONFIG.tile_hop_frames
        np.testing.assert_array_equal(tile, image[:, start : start + CONFIG.tile_frames])


def test_half_overlap_roughly_doubles_tiles_and_shares_frames() -> None:
    overlapping = dataclasses.replace(CONFIG, tile_hop_frames=CONFIG.tile_frames // 2)
    samples = noisy_sine(440.0, 15.0, SR, seed=3)

    plain = featurise(samples, CONFIG)
    overlapped = featurise(samples, overlapping)

    assert len(overlapped) == expected_tiles(len(samples), overlapping)
    assert 2 * len(plain) - 1 <= len(overlapped) <= 2 * len(plain) + 1
    half = CONFIG.tile_frames // 2
    np.testing.assert_array_equal(overlapped.tiles[1][:, :half], overlapped.tiles[0][:, half:])
    np.testing.assert_array_equal(overlapped.tiles[::2][: len(plain)], plain.tiles)  # every other tile
    np.testing.assert_allclose(overlapped.start_s[1], half * CONFIG.frame_seconds, rtol=1e-6)


def test_song_shorter_than_a_tile_is_padded_on_the_right() -> None:
    duration_s = (CONFIG.min_duration_s + CONFIG.tile_seconds) / 2
    samples = noisy_sine(440.0, duration_s, SR, seed=4)
    frames = expected_frames(len(samples))
    assert frames < CONFIG.tile_frames

    song = featurise(samples, CONFIG)

    assert song.tiles.shape == (1, *CONFIG.tile_shape)
    np.testing.assert_array_equal(song.start_s, [0.0])
    np.testing.assert_array_equal(song.tiles[0][:, :frames], full_image(samples))
    assert not song.tiles[0][:, frames:].any()
    assert song.tiles[0][:, :frames].max(axis=0).min() > 0  # every real frame has content


def test_song_of_exactly_the_minimum_duration_is_kept() -> None:
    samples = noisy_sine(440.0, CONFIG.min_duration_s, SR)
    assert len(featurise(samples, CONFIG)) == 1


def test_too_short_song_raises_named_error() -> None:
    samples = noisy_sine(440.0, CONFIG.min_duration_s - 0.1, SR)
    with pytest.raises(AudioTooShortError, match=r"blues/short\.wav"):
        featurise(samples, CONFIG, name="blues/short.wav")


def test_digital_silence_is_a_named_error_not_the_loudest_image() -> None:
    """dB relative to the loudest bin is undefined without a signal: silence would be all 255."""
    with pytest.raises(AudioSilentError, match=r"blues/blank\.wav: 8\.00 s of silence"):
        featurise(np.zeros(8 * SR, dtype=np.float32), CONFIG, name="blues/blank.wav")
    # Very quiet is not silent: 16-bit dither (one LSB) still has a picture of its own.
    dither = np.random.default_rng(1).uniform(-1, 1, 8 * SR).astype(np.float32) / 32768
    assert featurise(dither, CONFIG).tiles.min() < 255


def test_tiles_do_not_depend_on_playback_level() -> None:
    samples = noisy_sine(440.0, 8.0, SR, seed=5)
    loud = featurise(samples, CONFIG).tiles.astype(np.int16)
    quiet = featurise(samples * np.float32(0.1), CONFIG).tiles.astype(np.int16)
    assert np.abs(loud - quiet).max() <= 1


@pytest.mark.parametrize("tone_hz", [1_000.0, 4_000.0])
def test_tone_lights_up_the_mel_row_of_its_frequency(tone_hz: float) -> None:
    song = featurise(sine(tone_hz, 6.0, SR), CONFIG)

    brightest_row = int(np.argmax(song.tiles[0].astype(np.float64).mean(axis=1)))

    # Filter k of a mel filterbank peaks at the (k+1)-th of n_mels + 2 mel-spaced edges.
    centres = librosa.mel_frequencies(n_mels=CONFIG.n_mels + 2, fmin=CONFIG.fmin, fmax=CONFIG.fmax)[1:-1]
    expected_row = int(np.argmin(np.abs(centres - tone_hz)))
    assert abs(brightest_row - expected_row) <= 1
    assert brightest_row == int(np.argmin(np.abs(centres - librosa.mel_to_hz(librosa.hz_to_mel(tone_hz)))))


# --- tile blobs -----------------------------------------------------------------------


def test_tiles_from_binary_round_trip() -> None:
    tiles = featurise(noisy_sine(440.0, 12.0, SR, seed=6), CONFIG).tiles
    blobs = [tile.tobytes() for tile in tiles]

    restored = tiles_from_binary(blobs, CONFIG)
    np.testing.assert_array_equal(restored, tiles)
    assert restored.dtype == np.uint8 and restored.shape == tiles.shape

    as_object_array = tiles_from_binary(np.array(blobs, dtype=object), CONFIG)
    np.testing.assert_array_equal(as_object_array, tiles)


def test_tiles_from_binary_of_no_tiles_is_empty() -> None:
    assert tiles_from_binary([], CONFIG).shape == (0, *CONFIG.tile_shape)


@pytest.mark.parametrize(
    "blobs, config",
    [
        ([bytes(CONFIG.tile_bytes), bytes(CONFIG.tile_bytes - 1)], CONFIG),  # one blob truncated
        ([bytes(CONFIG.tile_bytes)], dataclasses.replace(CONFIG, n_mels=128)),  # made with other geometry
    ],
    ids=["truncated", "other-n_mels"],
)
def test_tiles_from_binary_rejects_wrong_blob_size(blobs: list[bytes], config: FeatureConfig) -> None:
    with pytest.raises(ConfigMismatchError, match=f"{config.n_mels}x{config.tile_frames}"):
        tiles_from_binary(blobs, config)


# --- FeatureConfig --------------------------------------------------------------------

# A different valid value for every field (tile_frames grows so that tile_hop_frames still fits).
CHANGED: dict[str, Any] = {
    "sample_rate": 44_100,
    "n_fft": 4096,
    "hop_length": 256,
    "n_mels": 128,
    "fmin": 20.0,
    "fmax": 8_000.0,
    "top_db": 60.0,
    "tile_frames": 512,
    "tile_hop_frames": 128,
    "min_duration_s": 4.0,
    "version": 2,
}


def test_changed_values_cover_every_field() -> None:
    assert set(CHANGED) == {f.name for f in dataclasses.fields(FeatureConfig)}


def test_to_dict_from_dict_round_trip_through_json() -> None:
    config = dataclasses.replace(CONFIG, **CHANGED)
    restored = FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.fingerprint() == config.fingerprint()


def test_fingerprint_is_stable_across_processes() -> None:
    code = "from genre_batch.config import FeatureConfig; print(FeatureConfig().fingerprint())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other_process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert other_process == CONFIG.fingerprint() == FeatureConfig().fingerprint()
    assert len(CONFIG.fingerprint()) == 12


@pytest.mark.parametrize("field_name", sorted(CHANGED))
def test_fingerprint_changes_with_every_field(field_name: str) -> None:
    changed = dataclasses.replace(CONFIG, **{field_name: CHANGED[field_name]})
    assert changed.fingerprint() != CONFIG.fingerprint()


@pytest.mark.parametrize(
    "overrides",
    [
        {"hop_length": 500},  # does not divide n_fft
        {"fmax": 12_000.0},  # above Nyquist of 22.05 kHz
        {"sample_rate": 16_000},  # default fmax 11025 is now above Nyquist
        {"tile_hop_frames": 0},
        {"tile_hop_frames": 257},  # more than a tile
        {"top_db": 0.0},
        {"min_duration_s": 0.05},  # shorter than one FFT window
    ],
)
def test_invalid_feature_config_raises(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FeatureConfig(**overrides)


def test_from_dict_rejects_unknown_fields() -> None:
    data = {**CONFIG.to_dict(), "window": "hamming"}
    with pytest.raises(ConfigMismatchError, match="window"):
        FeatureConfig.from_dict(data)


def test_ensure_same_features_passes_on_equal_configs() -> None:
    ensure_same_features(FeatureConfig(), FeatureConfig.from_dict(CONFIG.to_dict()), "tiles")


def test_ensure_same_features_names_each_differing_field() -> None:
    found = dataclasses.replace(CONFIG, n_mels=128, top_db=60.0)
    with pytest.raises(ConfigMismatchError) as caught:
        ensure_same_features(CONFIG, found, "ingest/v1/tiles/part-0.parquet")
    message = str(caught.value)
    assert "ingest/v1/tiles/part-0.parquet" in message
    assert "n_mels: expected 256, found 128" in message
    assert "top_db: expected 80.0, found 60.0" in message
    assert "hop_length" not in message and "sample_rate" not in message
