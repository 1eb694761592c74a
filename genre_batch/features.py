"""Waveform -> log-mel spectrogram -> uint8 -> 256x256 tiles. One STFT per song.

numpy frames and windows, torch's FFT (MKL: ~2.3x scipy's float32 FFT here), the mel
filterbank as a few dense blocks (BLAS), numpy dB and quantisation.

The same functions serve ingest, ``classify`` and ``similar --audio``, driven by one
``FeatureConfig``, so a model never sees tiles made differently from its training tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from genre_batch.config import FeatureConfig
from genre_batch.errors import AudioSilentError, AudioTooShortError


def hz_to_mel(hz: npt.ArrayLike) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    mels = hz / (200.0 / 3)
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mels)


def mel_to_hz(mels: npt.ArrayLike) -> np.ndarray:
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


@dataclass(frozen=True)
class _FilterBlock:
    """Mel bands ``[first, last)`` read FFT bins ``[lo, hi)`` of the interleaved power row."""

    first: int
    last: int
    lo: int
    hi: int
    weights: np.ndarray  # float32 [hi - lo, last - first]


# 16 bands a block: the blocks cover ~8x the filterbank's non-zeros (vs 128x for the dense
# matrix) in 16 BLAS calls per chunk, ~3x faster than a scipy.sparse product here.
_BANDS_PER_BLOCK = 16


@lru_cache(maxsize=8)
def _filter_blocks(config: FeatureConfig) -> tuple[_FilterBlock, ...]:
    """The filterbank cut into blocks of bands over the FFT bins they touch.

    Each bin's weight appears twice, for the bin's real and imaginary parts: the product with
    a row of squared interleaved (re, im) values then adds re^2 + im^2 itself, so |X|^2 is
    never written out.
    """
    bank = mel_filterbank(config)
    blocks = []
    for first in range(0, config.n_mels, _BANDS_PER_BLOCK):
        rows = bank[first : first + _BANDS_PER_BLOCK]
        touched = np.flatnonzero(rows.any(axis=0))
        lo, hi = (int(touched[0]), int(touched[-1]) + 1) if touched.size else (0, 1)
        weights = np.repeat(rows[:, lo:hi].T, 2, axis=0)  # [2 * (hi - lo), bands]
        blocks.append(_FilterBlock(first, first + len(rows), 2 * lo, 2 * hi, np.ascontiguousarray(weights)))
    return tuple(blocks)


# Frames per FFT call: a chunk's frames, spectrum and products stay in the core's cache
# (128 x 2048 float32 = 1 MiB); one whole-song pass streams ~30 MB through memory per 30 s.
_FRAMES_PER_CHUNK = 128


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    """Periodic Hann, as librosa's (``scipy.signal.get_window("hann", n, fftbins=True)``,
    tested equal); written out because importing scipy.signal costs ~1 s per process."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft_frames(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Centred STFT frames [frames, n_fft]: a strided view of the zero-padded float32 waveform."""
    padded = np.pad(np.asarray(samples, dtype=np.float32), config.n_fft // 2)
    return np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[:: config.hop_length]


class _MelKernel:
    """Frames -> mel power rows, ``_FRAMES_PER_CHUNK`` frames per FFT call: window, float32
    ``rfft``, square in place, filterbank blocks. Its buffers are reused call after call."""

    def __init__(self, config: FeatureConfig) -> None:
        import torch  # here, not at the top: listing or --help needs no torch (~2 s to import)

        half = config.n_fft // 2
        self.torch = torch
        self.n_mels = config.n_mels
        self.window = _window(config.n_fft)
        self.blocks = _filter_blocks(config)
        self.windowed = np.empty((_FRAMES_PER_CHUNK, config.n_fft), dtype=np.float32)
        self.spectrum = torch.empty((_FRAMES_PER_CHUNK, half + 1), dtype=torch.complex64)
        self.squares = torch.view_as_real(self.spectrum).numpy().reshape(_FRAMES_PER_CHUNK, 2 * (half + 1))  # a view

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """[n, n_fft] frames -> float32 [n, n_mels] mel power."""
        n_frames = len(frames)
        mel = np.empty((n_frames, self.n_mels), dtype=np.float32)
        windowed, spectrum, squares = self.windowed, self.spectrum, self.squares
        for start in range(0, n_frames, _FRAMES_PER_CHUNK):
            rows = min(_FRAMES_PER_CHUNK, n_frames - start)
            np.multiply(frames[start : start + rows], self.window, out=windowed[:rows])
            self.torch.fft.rfft(self.torch.from_numpy(windowed[:rows]), dim=1, out=spectrum[:rows])
            np.square(squares[:rows], out=squares[:rows])  # (re^2, im^2) pairs, summed by the blocks
            for block in self.blocks:
                np.matmul(
                    squares[:rows, block.lo : block.hi], block.weights, out=mel[start : start + rows, block.first : block.last]
                )
        return mel


class MelStream:
    """The mel power spectrogram of a waveform that arrives in pieces (``feed``, then
    ``finish``): the same frames, bit for bit, as ``mel_power`` of the whole waveform.

    The STFT is carried across the pieces' edges: the samples from the next frame's start on
    wait for the next piece, and frames are computed in groups of ``_FRAMES_PER_CHUNK`` at the
    same frame numbers as in one pass, so every BLAS call sees the same rows. What is kept is
    the mel power (float32, ~160 MB per hour of audio at the defaults), never the samples.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.samples = 0  # fed so far
        self.frames = 0  # computed so far
        self.parts: list[np.ndarray] = []  # float32 [rows, n_mels], in time order
        self.peak = 0.0  # the largest mel power so far
        self._pending = np.zeros(config.n_fft // 2, dtype=np.float32)  # the centring pad, then samples
        self._kernel = _MelKernel(config)
        self._finished = False

    @property
    def duration_s(self) -> float:
        return self.samples / self.config.sample_rate

    def feed(self, samples: np.ndarray) -> None:
        if self._finished:
            raise ValueError("MelStream.feed after finish")
        samples = np.asarray(samples, dtype=np.float32)
        self.samples += len(samples)
        self._pending = np.concatenate([self._pending, samples])
        self._compute(final=False)

    def finish(self) -> "MelStream":
        """The end of the waveform: the last frames, over the closing centring pad."""
        if not self._finished:
            self._pending = np.concatenate([self._pending, np.zeros(self.config.n_fft // 2, dtype=np.float32)])
            self._compute(final=True)
            self._finished = True
        return self

    def _compute(self, final: bool) -> None:
        n_fft, hop = self.config.n_fft, self.config.hop_length
        ready = (len(self._pending) - n_fft) // hop + 1 if len(self._pending) >= n_fft else 0
        if final:
            ready = min(ready, self.samples // hop + 1 - self.frames)  # as many frames as one pass has
        else:
            ready -= ready % _FRAMES_PER_CHUNK  # whole groups only, at one pass's frame numbers
        if ready <= 0:
            return
        frames = np.lib.stride_tricks.sliding_window_view(self._pending, n_fft)[::hop][:ready]
        part = self._kernel(frames)
        self.parts.append(part)
        self.peak = max(self.peak, float(part.max(initial=0.0)))
        self.frames += ready
        self._pending = self._pending[ready * hop :].copy()  # a copy lets the consumed samples go

    def power(self) -> np.ndarray:
        """The whole mel power spectrogram [n_mels, frames] (after ``finish``)."""
        if not self._finished:
            raise ValueError("MelStream.power before finish")
        if not self.parts:
            return np.zeros((self.config.n_mels, 0), dtype=np.float32)
        return (self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)).T


def mel_power(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mel power spectrogram [n_mels, frames]: centred (zero-padded) periodic-Hann STFT, power 2.

    The same numbers as ``librosa.feature.melspectrogram(center=True, pad_mode="constant")``,
    computed chunk by chunk (``MelStream`` fed the whole waveform at once).
    """
    stream = MelStream(config)
    stream.feed(samples)
    return stream.finish().power()


# librosa's ``amin``: a smaller power counts as this one (-100 dB re 1.0) when taken to dB.
POWER_FLOOR = 1e-10


def power_to_db(power: np.ndarray, config: FeatureConfig, peak: float | None = None) -> np.ndarray:
    """dB relative to the loudest bin, clipped to [-top_db, 0] (librosa's ref=np.max, top_db);
    ``peak``: the loudest bin's power when ``power`` is a piece of the song."""
    ref = max(float(power.max(initial=0.0)) if peak is None else peak, POWER_FLOOR)
    # One float32 buffer, updated in place: a 30 s song's image is ~1.3 MB, allocations show.
    db = np.maximum(np.asarray(power, dtype=np.float32), np.float32(POWER_FLOOR))
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
    """Mono waveform at ``config.sample_rate`` -> uint8 tiles (``tiles_of_stream``)."""
    stream = MelStream(config)
    stream.feed(samples)
    return tiles_of_stream(stream.finish(), config, name)


def tiles_of_stream(stream: MelStream, config: FeatureConfig, name: str = "audio") -> SongTiles:
    """A finished ``MelStream`` -> uint8 tiles, converting one piece at a time (each piece's
    float power is dropped once it is quantised).

    Raises ``AudioTooShortError``, and ``AudioSilentError`` when no mel bin rises above
    ``POWER_FLOOR``: dB relative to the loudest bin is then 0 everywhere, and digital silence
    would become an all-255 image, the loudest noise there is (the demo's model called it
    metal at confidence 1.00).
    """
    duration = stream.duration_s
    if duration < config.min_duration_s:
        raise AudioTooShortError(
            f"{name}: {duration:.2f} s of audio, shorter than the minimum {config.min_duration_s:.2f} s"
        )
    if not stream.peak > POWER_FLOOR:
        raise AudioSilentError(f"{name}: {duration:.2f} s of silence (no signal above {POWER_FLOOR:g} mel power)")
    image = np.empty((config.n_mels, stream.frames), dtype=np.uint8)
    start = 0
    while stream.parts:
        part = stream.parts.pop(0)
        image[:, start : start + len(part)] = quantise_db(power_to_db(part, config, stream.peak), config).T
        start += len(part)
    return cut_tiles(image, config)
