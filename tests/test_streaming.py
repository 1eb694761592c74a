"""Long files in bounded memory: the decoder streams blocks, the STFT is carried across the
blocks' edges, and the tiles are the same, bit for bit, as from the whole waveform at once;
``--max-duration`` stops the decoder at a cap; big catalogue files are streamed, not read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from genre_batch import decode, ingest
from genre_batch.config import FeatureConfig, SplitConfig
from genre_batch.decode import stream_audio, to_mono
from genre_batch.features import MelStream, featurise, mel_power, tiles_of_stream
from tests.audio_helpers import catalogue_file, encode_aac_m4a, noisy_sine

FEATURES = FeatureConfig()
SR = FEATURES.sample_rate


class Blocks:
    """A sink that keeps what it is fed, piece by piece."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def feed(self, samples: np.ndarray) -> None:
        self.parts.append(samples.copy())

    @property
    def samples(self) -> np.ndarray:
        return np.concatenate(self.parts)


def one_pass(data: bytes) -> np.ndarray:
    """Today's reference: the whole file read, down-mixed and resampled in one go."""
    frames, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return soxr.resample(to_mono(frames), rate, SR, quality="HQ").astype(np.float32)


def stereo_wav(seconds: float, rate: int = 48_000, seed: int = 0) -> bytes:
    left = noisy_sine(330.0, seconds, rate, seed)
    right = noisy_sine(550.0, seconds, rate, seed + 1)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([left, right], axis=1), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.mark.parametrize("pieces", [[1], [1000, 4096, 70_000], [65_536 * 2 + 1], [511, 513, 2048, 99_999]])
def test_the_mel_stream_is_the_one_pass_spectrogram_bit_for_bit(pieces):
    samples = noisy_sine(440.0, 37.3, SR, seed=3)
    stream, start, i = MelStream(FEATURES), 0, 0
    while start < len(samples):
        size = pieces[i % len(pieces)]
        stream.feed(samples[start : start + size])
        start, i = start + size, i + 1
    whole = mel_power(samples, FEATURES)
    assert np.array_equal(stream.finish().power(), whole)
    assert stream.frames == whole.shape[1] == 1 + len(samples) // FEATURES.hop_length
    assert np.array_equal(tiles_of_stream(stream, FEATURES).tiles, featurise(samples, FEATURES).tiles)
    with pytest.raises(ValueError):
        stream.feed(samples[:10])


def test_a_stream_of_less_than_one_frame_group_is_still_whole():
    samples = noisy_sine(440.0, 3.1, SR)
    stream = MelStream(FEATURES)
    for start in range(0, len(samples), 100):
        stream.feed(samples[start : start + 100])
    assert np.array_equal(stream.finish().power(), mel_power(samples, FEATURES))


def test_streamed_decoding_is_the_one_pass_waveform_over_many_blocks():
    data = stereo_wav(2.5 * decode.BLOCK_SECONDS)  # three blocks, resampled 48 -> 22.05 kHz
    info, sink = stream_audio(lambda: io.BytesIO(data), name="long.wav", target_sample_rate=SR, sink=Blocks)
    assert len(sink.parts) >= 3
    assert np.array_equal(sink.samples, one_pass(data))
    assert (info.decoder, info.source_sample_rate, info.source_channels, info.truncated) == ("soundfile", 48_000, 2, False)
    assert info.duration_s == pytest.approx(2.5 * decode.BLOCK_SECONDS, abs=1e-3)


def test_the_cap_stops_the_decoder_and_keeps_the_files_own_duration():
    data = stereo_wav(50.0)
    cap = 23 * SR + 17
    info, sink = stream_audio(lambda: io.BytesIO(data), name="long.wav", target_sample_rate=SR, sink=Blocks,
                              max_samples=cap)
    assert info.truncated and info.samples == cap == len(sink.samples)
    assert np.array_equal(sink.samples, one_pass(data)[:cap])  # the first 23 s, as one pass has them
    assert info.duration_s == pytest.approx(50.0, abs=1e-3)  # the header's, not the analysed part's
    whole, _ = stream_audio(lambda: io.BytesIO(data), name="w", target_sample_rate=SR, sink=Blocks,
                            max_samples=len(one_pass(data)))
    assert not whole.truncated  # a cap the file fits exactly does not cut it


def test_the_pyav_fallback_streams_too():
    av = pytest.importorskip("av")
    rate, seconds = 44_100, 1.5 * decode.BLOCK_SECONDS
    data = encode_aac_m4a(noisy_sine(440.0, seconds, rate), rate)
    info, sink = stream_audio(lambda: io.BytesIO(data), name="x.m4a", target_sample_rate=SR, sink=Blocks)
    assert info.decoder == "pyav" and len(sink.parts) >= 2
    with av.open(io.BytesIO(data)) as container:  # the reference: every frame at once
        frames = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1).T
    reference = soxr.resample(to_mono(frames.astype(np.float32)), rate, SR, quality="HQ")
    assert np.array_equal(sink.samples, reference)
    assert info.duration_s == pytest.approx(seconds, abs=0.1)


def test_a_big_catalogue_file_is_streamed_with_the_same_song_and_tiles(tmp_path: Path, monkeypatch):
    path = tmp_path / "rock" / "concert.wav"
    path.parent.mkdir()
    data = stereo_wav(45.0, rate=44_100)
    path.write_bytes(data)
    file = catalogue_file("rock/concert.wav", label="rock", root=str(tmp_path), size_bytes=len(data))
    in_memory = ingest.read_and_ingest(file, FEATURES, SplitConfig())
    monkeypatch.setattr(ingest, "IN_MEMORY_BYTES", len(data) // 4)  # so this file counts as big
    source = ingest.read_catalogue_file(file)
    assert callable(source)  # an opener, not the bytes
    streamed = ingest.read_and_ingest(file, FEATURES, SplitConfig())
    assert streamed.song == in_memory.song and streamed.error is None
    assert np.array_equal(streamed.tiles.tiles, in_memory.tiles.tiles)


def test_max_duration_keeps_the_first_tiles_of_a_long_file(tmp_path: Path):
    path = tmp_path / "mix.wav"
    path.write_bytes(stereo_wav(40.0, rate=SR))
    file = catalogue_file("mix.wav", root=str(tmp_path))
    full = ingest.read_and_ingest(file, FEATURES, SplitConfig())
    capped = ingest.read_and_ingest(file, FEATURES, SplitConfig(), max_duration_s=20.0)
    tile_s = FEATURES.tile_frames * FEATURES.hop_length / SR
    assert capped.song["n_tiles"] == int(20.0 // tile_s) < full.song["n_tiles"]
    assert capped.song["duration_s"] == pytest.approx(full.song["duration_s"], abs=1e-3) == pytest.approx(40.0, abs=1e-3)
    assert capped.song["content_hash"] == full.song["content_hash"]  # of the whole file
    # The first tiles are the same up to the dB reference (the loudest bin of what was analysed).
    assert capped.tiles.tiles.shape[1:] == full.tiles.tiles.shape[1:]
