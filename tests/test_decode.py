"""Bytes -> mono float32 waveform: every format libsndfile reads, down-mixing, resampling, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.audio_helpers import dominant_frequency, encode, encode_aac_m4a, magnitude_at, sine, write_audio
from genre_batch.decode import decode_audio, is_audio_path, to_mono
from genre_batch.errors import AudioDecodeError, GenreBatchError

TARGET_RATE = 22_050
DURATION_S = 2.0
TONE_HZ = 440.0
AMPLITUDE = 0.5

# (file name, soundfile format, subtype, source rate, lossy)
FORMATS = [
    ("tone.mp3", "MP3", None, 44_100, True),
    ("tone.wav", "WAV", None, 44_100, False),
    ("tone.flac", "FLAC", None, 44_100, False),
    ("tone.ogg", "OGG", "VORBIS", 44_100, True),
    ("tone.opus", "OGG", "OPUS", 48_000, True),
    ("tone.au", "AU", None, 16_000, False),
]


@pytest.mark.parametrize("file_name, format, subtype, source_rate, lossy", FORMATS, ids=[f[0] for f in FORMATS])
def test_decode_each_format_to_mono_target_rate(
    tmp_path: Path, file_name: str, format: str, subtype: str | None, source_rate: int, lossy: bool
) -> None:
    data = write_audio(
        tmp_path / file_name, sine(TONE_HZ, DURATION_S, source_rate, AMPLITUDE), source_rate, format, subtype
    )

    audio = decode_audio(data, name=file_name, target_sample_rate=TARGET_RATE)

    assert audio.decoder == "soundfile"
    assert audio.source_sample_rate == source_rate
    assert audio.source_channels == 1
    assert audio.sample_rate == TARGET_RATE
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    # Codec delay/padding shifts lossy lengths a little; lossless resampling is exact to a sample.
    tolerance = int(0.05 * TARGET_RATE) if lossy else 1
    assert abs(len(audio.samples) - DURATION_S * TARGET_RATE) <= tolerance
    assert audio.duration_s == pytest.approx(DURATION_S, abs=tolerance / TARGET_RATE + 1e-9)
    assert dominant_frequency(audio.samples, TARGET_RATE) == pytest.approx(TONE_HZ, abs=2.0)
    # Level is kept (no int16 scaling slip): a sine's RMS is amplitude / sqrt(2).
    rms = float(np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2)))
    assert rms == pytest.approx(AMPLITUDE / np.sqrt(2), rel=0.15 if lossy else 0.02)


def test_stereo_wav_at_target_rate_is_exact_channel_mean(tmp_path: Path) -> None:
    left = sine(440.0, DURATION_S, TARGET_RATE, 0.5)
    right = sine(660.0, DURATION_S, TARGET_RATE, 0.3)
    data = write_audio(tmp_path / "stereo.wav", np.stack([left, right], axis=1), TARGET_RATE, "WAV")
    as_stored, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)

    audio = decode_audio(data, name="stereo.wav", target_sample_rate=TARGET_RATE)

    assert audio.source_channels == 2 and audio.source_sample_rate == TARGET_RATE
    assert audio.samples.shape == (as_stored.shape[0],)
    np.testing.assert_allclose(audio.samples, as_stored.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("format, subtype", [("FLAC", None), ("MP3", None), ("OGG", "VORBIS")])
def test_stereo_resampled_downmix_keeps_both_channels_at_half_level(format: str, subtype: str | None) -> None:
    left = sine(440.0, DURATION_S, 44_100, 0.5)
    right = sine(660.0, DURATION_S, 44_100, 0.3)
    data = encode(np.stack([left, right], axis=1), 44_100, format, subtype)

    audio = decode_audio(data, name="stereo", target_sample_rate=TARGET_RATE)

    assert audio.source_channels == 2 and audio.source_sample_rate == 44_100
    assert abs(len(audio.samples) - DURATION_S * TARGET_RATE) <= int(0.05 * TARGET_RATE)
    # Mean of the channels: each tone at half its channel's amplitude.
    assert magnitude_at(audio.samples, TARGET_RATE, 440.0) == pytest.approx(0.25, rel=0.1)
    assert magnitude_at(audio.samples, TARGET_RATE, 660.0) == pytest.approx(0.15, rel=0.1)


def test_to_mono_shapes() -> None:
    frames = np.array([[1.0, 0.0], [0.5, -0.5], [0.25, 0.75]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(frames), [0.5, 0.0, 0.5])
    np.testing.assert_array_equal(to_mono(frames[:, :1]), [1.0, 0.5, 0.25])
    assert to_mono(np.zeros(4, dtype=np.float64)).dtype == np.float32


@pytest.mark.parametrize(
    "data",
    [
        b"ID3\x03\x00\x00\x00\x00\x00\x0a" + bytes(range(256)) * 8,  # an ID3 header, then garbage
        b"RIFF\x24\x00\x00\x00WAVEjunk" + b"\x00" * 64,  # a truncated WAV header
        b"\x00" * 1024,
    ],
    ids=["id3-garbage", "truncated-wav", "zeros"],
)
def test_undecodable_bytes_raise_named_error(data: bytes) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        decode_audio(data, name="rock/upload-17.mp3", target_sample_rate=TARGET_RATE)
    message = str(caught.value)
    assert "rock/upload-17.mp3" in message
    assert "BytesIO" not in message
    assert "soundfile" in message and "pyav" in message  # both decoders were tried and reported
    assert isinstance(caught.value, GenreBatchError)


def test_empty_bytes_raise_named_error() -> None:
    with pytest.raises(AudioDecodeError, match=r"jazz/empty\.wav.*empty"):
        decode_audio(b"", name="jazz/empty.wav", target_sample_rate=TARGET_RATE)


def test_non_finite_samples_are_rejected() -> None:
    samples = sine(440.0, 0.5, TARGET_RATE)
    samples[100] = np.nan
    data = encode(samples, TARGET_RATE, "WAV", "FLOAT")
    with pytest.raises(AudioDecodeError, match="non-finite"):
        decode_audio(data, name="nan.wav", target_sample_rate=TARGET_RATE)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("blues/song.mp3", True),
        ("blues/SONG.MP3", True),
        ("a/b/c/Song.FlAc", True),
        ("song.wav", True),
        ("x.ogg", True),
        ("x.opus", True),
        ("x.au", True),
        ("x.m4a", True),
        ("x.AIFF", True),
        (".hidden.mp3", False),
        ("blues/._song.mp3", False),  # macOS resource fork
        ("labels.csv", False),
        ("notes.txt", False),
        ("song.mp3.txt", False),
        ("mp3", False),
        ("blues/", False),
    ],
)
def test_is_audio_path(path: str, expected: bool) -> None:
    assert is_audio_path(path) is expected


@pytest.mark.parametrize("channels", [1, 2])
def test_pyav_fallback_decodes_aac_m4a(channels: int) -> None:
    tone = sine(TONE_HZ, DURATION_S, 44_100, AMPLITUDE)
    samples = tone if channels == 1 else np.stack([tone, np.zeros_like(tone)], axis=1)
    data = encode_aac_m4a(samples, 44_100)
    with pytest.raises(soundfile.LibsndfileError):  # the precondition: libsndfile cannot read it
        soundfile.read(io.BytesIO(data))

    audio = decode_audio(data, name="tone.m4a", target_sample_rate=TARGET_RATE)

    assert audio.decoder == "pyav"
    assert audio.source_sample_rate == 44_100 and audio.source_channels == channels
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(len(audio.samples) - DURATION_S * TARGET_RATE) <= int(0.1 * TARGET_RATE)
    assert dominant_frequency(audio.samples, TARGET_RATE) == pytest.approx(TONE_HZ, abs=2.0)
    expected_level = AMPLITUDE / channels  # the silent right channel halves the mean
    assert magnitude_at(audio.samples, TARGET_RATE, TONE_HZ) == pytest.approx(expected_level, rel=0.15)
