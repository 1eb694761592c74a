"""Tiny synthetic audio for tests: sines and noise made with numpy, encoded with soundfile."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile

from genre_batch.catalogue import CatalogueFile, song_id_for


def sine(freq_hz: float, duration_s: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 [n] sine starting at phase 0."""
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def noisy_sine(freq_hz: float, duration_s: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A sine plus slowly swelling white noise: every mel band has some energy, levels vary in time."""
    rng = np.random.default_rng(seed)
    tone = sine(freq_hz, duration_s, sample_rate, amplitude=0.3)
    t = np.arange(len(tone)) / sample_rate
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t)
    return (tone + 0.05 * swell * rng.standard_normal(len(tone))).astype(np.float32)


def encode(samples: np.ndarray, sample_rate: int, format: str, subtype: str | None = None) -> bytes:
    """Encode [n] or [n, channels] samples in memory with libsndfile."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format=format, subtype=subtype)
    return buffer.getvalue()


def encode_aac_m4a(samples: np.ndarray, sample_rate: int) -> bytes:
    """[n] or [n, channels] float32 -> AAC in an MP4 (.m4a) container, with PyAV's FFmpeg."""
    import av

    planar = samples[None, :] if samples.ndim == 1 else np.ascontiguousarray(samples.T)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def write_audio(
    path: Path, samples: np.ndarray, sample_rate: int, format: str, subtype: str | None = None
) -> bytes:
    """Write an audio file to ``path`` (parents created) and return its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, sample_rate, format=format, subtype=subtype)
    return path.read_bytes()


def tag_mp3(path: Path, *, title: str, artist: str, genre: str) -> bytes:
    """Add ID3 TIT2/TPE1/TCON frames to an mp3 on disk; returns the tagged bytes."""
    from mutagen.id3 import ID3, TCON, TIT2, TPE1

    tags = ID3()
    tags.add(TIT2(encoding=3, text=title))
    tags.add(TPE1(encoding=3, text=artist))
    tags.add(TCON(encoding=3, text=genre))
    tags.save(str(path))
    return path.read_bytes()


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    """Frequency (Hz) of the largest FFT magnitude of a Hann-windowed signal."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[int(np.argmax(spectrum))])


def magnitude_at(samples: np.ndarray, sample_rate: int, freq_hz: float, width_hz: float = 5.0) -> float:
    """Peak FFT magnitude within ``width_hz`` of ``freq_hz`` (Hann window, normalised to amplitude)."""
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) * 2 / window.sum()
    freqs = np.fft.rfftfreq(len(samples), 1 / sample_rate)
    return float(spectrum[np.abs(freqs - freq_hz) <= width_hz].max())


def catalogue_file(
    relative_path: str,
    *,
    label: str | None = "blues",
    artist: str | None = None,
    split_override: str | None = None,
    size_bytes: int = 0,
    root: str = "/catalogue",
) -> CatalogueFile:
    """A CatalogueFile as ``list_catalogue`` would make it for a folder-labelled file."""
    return CatalogueFile(
        song_id=song_id_for(relative_path),
        uri=f"{root}/{relative_path}",
        relative_path=relative_path,
        size_bytes=size_bytes,
        mtime="2025-01-01T00:00:00+00:00",
        label=label,
        label_source="folder" if label else "none",
        artist=artist,
        split_override=split_override,
    )
