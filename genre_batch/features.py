"""Waveform -> log-mel spectrogram -> uint8 -> 256x256 tiles. One STFT per song.

numpy frames and windows, torch's FFT (MKL: ~3x scipy's float32 FFT here), a sparse mel
filterbank (scipy), numpy dB and quantisation.

The same functions serve ingest, ``classify`` and ``similar --audio``, driven by one
``FeatureConfig``, so a model never sees tiles made differently from its training tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse

from genre_batch.config import FeatureConfig
from genre_batch.errors import AudioTooShortError


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    mels = hz / (200.0 / 3)
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mels)


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    return np.where(mels >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), mels * (200.0 / 3))


@lru_cache(maxsize=8)
def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Slaney-style, Slaney-normalised mel filterbank [n_mels, 1 + n_fft // 2].

    The filterbank of ``librosa.filters.mel`` (tested equal): computed here because loading
    librosa's filter module costs ~1.3 s per process (numba), which every nightly run and every
    ``classify`` call would pay for a 256 x 1025 matrix.
    """
    fft_hz = np.fft.rfftfreq(config.n_fft, d=1.0 / config.sample_rate)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(config.fmin), hz_to_mel(config.fmax), config.n_mels + 2))
    ramps = mel_hz[:, None] - fft_hz[None, :]
    widths = np.diff(mel_hz)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]  # equal area per filter (norm="slaney")
    return weights.astype(np.float32)


@lru_cache(maxsize=8)
def _sparse_filterbank(config: FeatureConfig) -> scipy.sparse.csr_matrix:
    # 99 % of the filterbank is zeros: a sparse product is ~2x faster than the dense one.
    return scipy.sparse.csr_matrix(mel_filterbank(config))


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann, as librosa's (``scipy.signal.get_window("hann", n, fftbins=True)``,
    tested equal); written out because importing scipy.signal costs ~1 s per process."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def mel_power(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mel power spectrogram [n_mels, frames]: centred (zero-padded) periodic-Hann STFT, power 2.

    The same numbers as ``librosa.feature.melspectrogram(center=True, pad_mode="constant")``,
    computed with one float32 ``rfft`` over strided frames and a sparse filterbank.
    """
    import torch  # here, not at the top: listing or --help needs no torch (~2 s to import)

    half = config.n_fft // 2
    padded = np.pad(np.asarray(samples, dtype=np.float32), half)
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[:: config.hop_length]
    windowed = torch.from_numpy(frames * _window(config.n_fft))  # contiguous [frames, n_fft]
    spectrum = torch.fft.rfft(windowed, dim=1).numpy()  # complex64 [frames, 1 + n_fft/2]
    power = np.square(np.abs(spectrum))  # |X|^2; faster here than re^2 + im^2
    return np.asarray(_sparse_filterbank(config) @ power.T, dtype=np.float32)


def power_to_db(power: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """dB relative to the loudest bin, clipped to [-top_db, 0] (librosa's ref=np.max, top_db)."""
    floor = 1e-10
    ref = max(float(power.max(initial=0.0)), floor)
    # One float32 buffer, updated in place: a 30 s song's image is ~1.3 MB, allocations show.
    db = np.maximum(np.asarray(power, dtype=np.float32), np.float32(floor))
    db /= np.float32(ref)
    np.log10(db, out=db)
    db *= np.float32(10.0)
    return np.maximum(db, np.float32(-config.top_db), out=db)


def quantise_db(db: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """[-top_db, 0] dB -> 0..255 uint8, linearly (step = top_db / 255 dB)."""
    scaled = np.asarray(db, dtype=np.float32) + np.float32(config.top_db)
    scaled *= np.float32(255.0 / config.top_db)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def dequantise(tiles: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """uint8 -> dB, the inverse of ``quantise_db`` up to half a step."""
    return tiles.astype(np.float32) * (config.top_db / 255.0) - config.top_db


@dataclass(frozen=True)
class SongTiles:
    tiles: np.ndarray  # uint8 [n_tiles, n_mels, tile_frames]
    start_s: np.ndarray  # float32 [n_tiles]

    def __len__(self) -> int:
        return int(self.tiles.shape[0])


def cut_tiles(spectrogram: np.ndarray, config: FeatureConfig) -> SongTiles:
    """Cut a uint8 [n_mels, frames] image into tiles every ``tile_hop_frames`` frames.

    A trailing part shorter than a tile is dropped, except when the song has no full tile:
    then it is padded with silence (0) to one tile. Callers enforce ``min_duration_s``.
    """
    n_mels, frames = spectrogram.shape
    width = config.tile_frames
    if frames < width:
        padded = np.zeros((n_mels, width), dtype=np.uint8)
        padded[:, :frames] = spectrogram
        return SongTiles(padded[None], np.zeros(1, dtype=np.float32))
    starts = np.arange(0, frames - width + 1, config.tile_hop_frames)
    # A strided view, then one copy: no Python loop over tiles.
    windows = np.lib.stride_tricks.sliding_window_view(spectrogram, width, axis=1)  # [n_mels, n, width]
    tiles = np.ascontiguousarray(windows[:, starts, :].transpose(1, 0, 2))
    return SongTiles(tiles, (starts * config.frame_seconds).astype(np.float32))


def featurise(samples: np.ndarray, config: FeatureConfig, name: str = "audio") -> SongTiles:
    """Mono waveform at ``config.sample_rate`` -> uint8 tiles. Raises ``AudioTooShortError``."""
    duration = len(samples) / config.sample_rate
    if duration < config.min_duration_s:
        raise AudioTooShortError(
            f"{name}: {duration:.2f} s of audio, shorter than the minimum {config.min_duration_s:.2f} s"
        )
    db = power_to_db(mel_power(samples, config), config)
    return cut_tiles(quantise_db(db, config), config)
