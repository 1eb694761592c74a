"""Synthesis, second half: mixing and mastering; ``render_song`` turns a planned song into samples."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

from genre_batch.synth.arrangement import SongForm, bass_notes, chord_notes, drum_hits, lead_notes, plan_form
from genre_batch.synth.instruments import (
    BASS_INSTRUMENTS,
    CHORD_INSTRUMENTS,
    LEAD_INSTRUMENTS,
    FloatArray,
    Voice,
    _butterworth,
    _drum_sounds,
    _fast_fft_size,
    _normalise_peak,
    _rfft_hz,
    fft_filter,
    place,
    render_notes,
    room_impulse,
    sub_bass,
)
from genre_batch.synth.plan import SynthSong
from genre_batch.synth.styles import (
    DRUM_PATTERNS,
    HARD_BALANCE_DB,
    HARD_SONG_BORROW_CHANCE,
    LOFI_CHANCE,
    SONG_BORROW_CHANCE,
    ArtistProfile,
    DrumKit,
    Recording,
    Timbre,
    _jitter_floats,
    _style,
    artist_profile,
    borrow_part,
)

# Everything is synthesised at this rate; 44.1 kHz songs are upsampled (in the frequency
# domain) at mastering and get their noise floor at the full rate. Halves the cost of
# 44.1 kHz songs; a classifier working at 22.05 kHz never sees the difference.
RENDER_RATE = 22_050
PEAK_RANGE = (0.6, 0.9)  # final peak level, drawn per song; below 0.95 leaves MP3 headroom

STEM_PANS = {"drums": 0.0, "bass": 0.0, "chords": -0.3, "lead": 0.3, "texture": 0.0}
# Share of each stem sent to the room.
REVERB_SENDS = {"drums": 0.3, "bass": 0.0, "chords": 1.0, "lead": 1.0, "texture": 0.0}


def render_song(song: SynthSong) -> np.ndarray:
    """Synthesise one song: float32, (frames,) for mono or (frames, 2) for stereo.

    A pure function of ``song`` (its seed, genre, artist, tempo, length, format and
    difficulty). A hard song borrows a part more often and goes through its artist's
    recording chain (``styles.Recording``: noise floor, band limit, room, clipping, gain)
    instead of the normal per-song recording quality; it costs the same to render.
    """
    if song.sample_rate % RENDER_RATE != 0:
        raise ValueError(f"sample_rate must be a multiple of {RENDER_RATE}, got {song.sample_rate}")
    rng = np.random.default_rng(song.seed)
    profile = artist_profile(song.genre, song.artist, song.difficulty)
    if rng.random() < (SONG_BORROW_CHANCE if profile.recording is None else HARD_SONG_BORROW_CHANCE):
        profile = borrow_part(profile, rng)
    kit = _jitter_floats(profile.kit, rng, spread=0.06)
    timbre = _jitter_floats(profile.timbre, rng, spread=0.15)
    recording = None if profile.recording is None else _song_recording(profile.recording, rng)
    timbre = _recording(timbre, rng) if recording is None else _recorded_timbre(timbre, recording)
    voice = Voice(RENDER_RATE, timbre, rng)
    form = plan_form(song, profile, rng)
    # Render past the end so releases and the room tail are cut naturally, not silenced.
    n_frames = int(math.ceil((song.duration_s + 0.5) * RENDER_RATE))
    stems = {
        "drums": _drum_stem(form, profile, kit, voice, n_frames),
        "bass": render_notes(bass_notes(form, profile.bass, _kick_steps(profile), rng),
                             BASS_INSTRUMENTS.get(profile.bass, sub_bass), voice, n_frames),
        "chords": render_notes(chord_notes(form, profile.chords, rng), CHORD_INSTRUMENTS[profile.chords],
                               voice, n_frames),
        "lead": (render_notes(lead_notes(form, profile.lead, rng), LEAD_INSTRUMENTS[profile.lead], voice, n_frames)
                 if profile.lead else np.zeros(n_frames)),
    }
    levels_db = _style(song.genre).levels_db if profile.levels_db is None else profile.levels_db
    stems = _balance(stems, levels_db, rng, 3.5 if recording is None else HARD_BALANCE_DB)
    music_rms = _rms(np.sum(list(stems.values()), axis=0))
    stems["texture"] = _crackle(n_frames, RENDER_RATE, timbre.crackle, rng) * music_rms
    mix = _mix_and_master(stems, song.channels, song.sample_rate, song.frames, timbre, rng, recording)
    return mix.astype(np.float32)


def _recording(timbre: Timbre, rng: np.random.Generator) -> Timbre:
    """Per-song recording quality: noise floor, and now and then a worn lo-fi transfer."""
    hiss_db = timbre.hiss_db + rng.uniform(-10.0, 8.0)
    if rng.random() < LOFI_CHANCE:
        return dataclasses.replace(timbre, hiss_db=hiss_db, master_lowpass_hz=rng.uniform(3500.0, 8000.0),
                                   crackle=max(timbre.crackle, rng.uniform(0.2, 0.7)))
    if timbre.crackle > 0 and rng.random() < 0.3:  # a clean reissue of a crackly record
        return dataclasses.replace(timbre, hiss_db=hiss_db, crackle=0.0)
    return dataclasses.replace(timbre, hiss_db=hiss_db)


def _song_recording(recording: Recording, rng: np.random.Generator) -> Recording:
    """A hard song's take on its artist's recording chain: every figure a little off."""
    take = _jitter_floats(recording, rng, spread=0.2)
    return dataclasses.replace(take, hiss_db=recording.hiss_db + float(rng.uniform(-4.0, 4.0)),
                               reverb_wet=min(take.reverb_wet, 0.8), peak=min(take.peak, PEAK_RANGE[1]))


def _recorded_timbre(timbre: Timbre, recording: Recording) -> Timbre:
    """The timbre as the recording chain leaves it: its noise floor and crackle, a room halfway
    between the genre's and the recording's, and the lower of the two low-pass cutoffs."""
    return dataclasses.replace(timbre, hiss_db=recording.hiss_db, crackle=recording.crackle,
                               reverb_wet=0.5 * (timbre.reverb_wet + recording.reverb_wet),
                               reverb_s=0.5 * (timbre.reverb_s + recording.reverb_s),
                               master_lowpass_hz=min(timbre.master_lowpass_hz, recording.lowpass_hz))


def _kick_steps(profile: ArtistProfile) -> tuple[int, ...]:
    if profile.drums is None:
        return (0, 10)
    pattern = DRUM_PATTERNS[profile.drums].voices.get("kick", "x.......x.......")
    return tuple(step for step, symbol in enumerate(pattern) if symbol in "xo")


def _drum_stem(form: SongForm, profile: ArtistProfile, kit: DrumKit, voice: Voice, n_frames: int) -> FloatArray:
    stem = np.zeros(n_frames)
    if profile.drums is None:
        return stem
    sounds = _drum_sounds(kit, voice.sample_rate, voice.rng)
    levels = {"kick": 1.0, "snare": 0.8, "clap": 0.7, "hat": 0.35, "open_hat": 0.3, "crash": 0.35,
              "shaker": 0.3, "hand": 0.8}
    for drum, hits in drum_hits(form, DRUM_PATTERNS[profile.drums], voice.rng).items():
        for time_s, velocity in hits:
            place(stem, sounds[drum], time_s, voice.sample_rate, levels[drum] * velocity)
    return stem


def _rms(signal: FloatArray) -> float:
    return float(np.sqrt(np.mean(signal**2))) if signal.size else 0.0


def _balance(stems: dict[str, FloatArray], levels_db: dict[str, float],
             rng: np.random.Generator, wobble_db: float = 3.5) -> dict[str, FloatArray]:
    """Each stem to its genre level (RMS-referenced) plus a per-song wobble of a few dB."""
    balanced = {}
    for name, stem in stems.items():
        rms = _rms(stem)
        if rms == 0.0:
            balanced[name] = stem
            continue
        level_db = levels_db[name] + rng.normal(0.0, wobble_db)
        balanced[name] = stem / rms * 0.1 * 10 ** (level_db / 20)
    return balanced


def _crackle(n: int, sample_rate: int, level: float, rng: np.random.Generator) -> FloatArray:
    """Vinyl: random clicks of random size over a soft hiss; relative to a unit-RMS mix."""
    if level <= 0.0:
        return np.zeros(n)
    clicks = np.zeros(n)
    count = int(rng.uniform(4.0, 25.0) * n / sample_rate)
    positions = rng.integers(0, n, count)
    np.add.at(clicks, positions, rng.normal(0.0, 1.0, count) * rng.pareto(2.0, count))
    clicks = fft_filter(clicks, sample_rate, highpass_hz=800.0, lowpass_hz=6000.0)
    hiss = fft_filter(rng.normal(0.0, 1.0, n), sample_rate, highpass_hz=2000.0, order=1)
    texture = clicks / (_rms(clicks) + 1e-9) * 0.25 + 0.04 * hiss
    return level * texture


def _mix_and_master(stems: dict[str, FloatArray], channels: int, out_rate: int, out_frames: int,
                    timbre: Timbre, rng: np.random.Generator, recording: Recording | None = None) -> FloatArray:
    """Pan, room, master filters, upsampling and noise floor in one trip through the spectrum.

    ``stems`` are mono at ``RENDER_RATE``. The room is one impulse response; in stereo the
    right channel hears it a few milliseconds later, which is enough to widen it. Upsampling
    to ``out_rate`` is zero-padding of the spectrum; the noise floor is added at ``out_rate``
    so 44.1 kHz files have content in their top octave. Returns (out_frames,) for mono or
    (out_frames, 2) for stereo, faded in and out and scaled to a random peak.

    A hard song's ``recording`` sets the high-pass cutoff, the final peak, and a tanh
    clipping of the master (its ``drive``, after the noise floor, as a recorder clips).
    """
    n = next(iter(stems.values())).shape[0]
    impulse = room_impulse(RENDER_RATE, timbre.reverb_s, rng)
    size = _fast_fft_size(n + impulse.shape[0])  # room tail must not wrap round to the start
    freqs = _rfft_hz(size, RENDER_RATE)
    dry = np.stack([sum(_pan_gains(STEM_PANS[name], channels)[channel] * stem for name, stem in stems.items())
                    for channel in range(channels)], axis=1)
    spectrum = np.fft.rfft(dry, n=size, axis=0)
    send = sum(REVERB_SENDS[name] * stem for name, stem in stems.items())
    room = np.fft.rfft(send, n=size) * np.fft.rfft(impulse, n=size) * min(timbre.reverb_wet, 0.8)
    spectrum[:, 0] += room
    if channels == 2:
        spectrum[:, 1] += room * np.exp(-2j * np.pi * freqs * rng.uniform(0.007, 0.015))
    highpass_hz = float(rng.uniform(20, 60)) if recording is None else recording.highpass_hz
    spectrum *= _butterworth(freqs, lowpass_hz=timbre.master_lowpass_hz, highpass_hz=highpass_hz, order=1)[:, None]

    ratio = out_rate // RENDER_RATE
    out_size = size * ratio
    out_spectrum = np.zeros((out_size // 2 + 1, channels), dtype=np.complex128)
    out_spectrum[: spectrum.shape[0]] = spectrum * ratio
    noise_rms = _rms(dry) * 10 ** (timbre.hiss_db / 20)
    out_spectrum += _noise_spectrum(out_spectrum.shape, out_size, out_rate, rng) * noise_rms
    out = np.fft.irfft(out_spectrum, n=out_size, axis=0)[:out_frames]
    if recording is not None and recording.drive > 0:
        out = np.tanh(recording.drive * _normalise_peak(out))

    fade_in = np.minimum(np.arange(out_frames) / (0.05 * out_rate), 1.0)
    fade_out = np.minimum((out_frames - np.arange(out_frames)) / (1.5 * out_rate), 1.0)
    out *= (fade_in * fade_out)[:, None]
    out = _normalise_peak(out) * (rng.uniform(*PEAK_RANGE) if recording is None else recording.peak)
    return out[:, 0] if channels == 1 else out


def _noise_spectrum(shape: tuple[int, ...], size: int, sample_rate: int,
                    rng: np.random.Generator) -> npt.NDArray[np.complex128]:
    """Spectrum of unit-RMS noise, gently low-passed at a random cutoff (time length ``size``)."""
    gain = _butterworth(_rfft_hz(size, sample_rate), lowpass_hz=float(rng.uniform(3000, 12000)),
                        highpass_hz=None, order=1)
    real = rng.standard_normal(shape, dtype=np.float32)
    imaginary = rng.standard_normal(shape, dtype=np.float32)
    noise = np.asarray((real + 1j * imaginary) * gain[:, None], dtype=np.complex128)
    rms = math.sqrt(2.0 * float(np.sum(np.abs(noise) ** 2)) / shape[1]) / size  # Parseval
    return noise / rms


def _pan_gains(pan: float, channels: int) -> FloatArray:
    if channels == 1:
        return np.ones(1)
    angle = (pan + 1.0) * math.pi / 4  # constant-power pan law
    return np.array([math.cos(angle), math.sin(angle)]) * math.sqrt(2)
