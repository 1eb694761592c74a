"""Synthesis, first half: DSP building blocks and the instruments that turn a ``Note`` into samples.

``render_notes`` mixes a part's notes into one stem; ``genre_batch.synth.mixing`` mixes the
stems into a song.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import numpy.typing as npt

from genre_batch.synth.arrangement import Note
from genre_batch.synth.styles import DrumKit, Timbre

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------------------
# DSP building blocks (vectorised numpy)
# --------------------------------------------------------------------------------------


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _fast_fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: pocketfft is slow on sizes with large prime factors."""
    best = 1 << max(0, (n - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three
            while size < n:
                size *= 2
            best = min(best, size)
            three *= 3
        five *= 5
    return best


def _rfft_hz(size: int, sample_rate: int) -> FloatArray:
    """Frequencies of an ``rfft`` of ``size`` samples, as float64 (numpy types them as any float)."""
    return np.asarray(np.fft.rfftfreq(size, 1.0 / sample_rate), dtype=np.float64)


def _butterworth(freqs: FloatArray, lowpass_hz: float | None, highpass_hz: float | None, order: int,
                 resonance: float = 0.0) -> FloatArray:
    """Magnitude response of Butterworth-shaped low/high-pass filters at ``freqs``."""
    gain = np.ones_like(freqs)
    if lowpass_hz is not None and lowpass_hz < freqs[-1]:
        cutoff = max(lowpass_hz, 20.0)
        gain /= np.sqrt(1.0 + np.square(freqs / cutoff) ** order)
        if resonance > 0:
            gain *= 1.0 + resonance * np.exp(-0.5 * ((freqs - cutoff) / (0.15 * cutoff)) ** 2)
    if highpass_hz is not None and highpass_hz > 0:
        gain /= np.sqrt(1.0 + np.square(highpass_hz / np.maximum(freqs, 1e-9)) ** order)
    return gain


def fft_filter(signal: FloatArray, sample_rate: int, lowpass_hz: float | None = None,
               highpass_hz: float | None = None, order: int = 2, resonance: float = 0.0) -> FloatArray:
    """Zero-phase Butterworth-shaped filter in the frequency domain (time on axis 0).

    ``resonance`` adds a bump at the low-pass cutoff (acid bass). Padding keeps the
    filter's ringing from wrapping round to the start.
    """
    size = _fast_fft_size(signal.shape[0] + 2048)
    gain = _butterworth(_rfft_hz(size, sample_rate), lowpass_hz, highpass_hz, order, resonance)
    spectrum = np.fft.rfft(signal, n=size, axis=0)
    if signal.ndim == 2:
        gain = gain[:, None]
    return np.fft.irfft(spectrum * gain, n=size, axis=0)[: signal.shape[0]]


def _seconds(n: int, sample_rate: int) -> FloatArray:
    return np.arange(n) / sample_rate


def _oscillator(shape: str, hz: float, n: int, sample_rate: int, phase: float = 0.0) -> FloatArray:
    """Naive oscillators: aliasing is tamed by the low-pass each instrument applies.

    Written with in-place operations and ``floor`` rather than ``%``: oscillators are most
    of the synthesis time, and this is about three times faster.
    """
    cycles = np.arange(n, dtype=np.float64)
    if shape == "sine":
        cycles *= 2 * np.pi * hz / sample_rate
        cycles += 2 * np.pi * phase
        return np.sin(cycles, out=cycles)
    cycles *= hz / sample_rate
    cycles += phase
    cycles -= np.floor(cycles)  # position within the cycle, 0..1
    if shape == "saw":
        cycles *= 2.0
        cycles -= 1.0
        return cycles
    if shape == "square":
        return np.where(cycles < 0.5, 1.0, -1.0)
    if shape == "pulse":
        return np.where(cycles < 0.25, 1.0, -0.33)
    if shape == "triangle":
        cycles -= 0.5
        np.abs(cycles, out=cycles)
        cycles *= 4.0
        cycles -= 1.0
        return cycles
    raise ValueError(f"unknown oscillator shape {shape!r}")


def _envelope(n: int, sample_rate: int, attack_s: float, decay_s: float, sustain: float,
              gate_s: float, release_s: float) -> FloatArray:
    """Linear attack, exponential decay to ``sustain``, exponential release after the gate."""
    attack_n = min(n, max(1, int(attack_s * sample_rate)))
    gate_n = min(n, max(attack_n, int(gate_s * sample_rate)))
    level = np.empty(n)
    level[:attack_n] = np.arange(attack_n) / attack_n
    level[attack_n:] = sustain + (1.0 - sustain) * np.exp(-np.arange(n - attack_n) / (decay_s * sample_rate))
    level[gate_n:] *= np.exp(-np.arange(n - gate_n) / (max(release_s, 1e-4) * sample_rate))
    return level


def _soft_clip(signal: FloatArray, drive: float) -> FloatArray:
    return np.tanh(drive * signal) / math.tanh(max(drive, 1e-3))


def karplus_strong(hz: float, n: int, sample_rate: int, rng: np.random.Generator,
                   damping: float = 0.996, brightness: float = 0.5) -> FloatArray:
    """Plucked string: a noise burst recirculated through a delay line with a gentle low-pass.

    Computed one period at a time: every sample of period k depends only on periods k-1 and
    k-2, so each period is one vectorised step (a note is ~100-800 steps, not n samples).
    ``brightness`` near 0 keeps highs (bright, long); 0.5 is the classic two-tap average.
    """
    period = max(2, int(round(sample_rate / hz)))
    n_periods = n // period + 2
    out = np.zeros(n_periods * period)
    burst = rng.uniform(-1.0, 1.0, period)
    burst = burst - burst.mean()
    # A darker pluck starts from a smoother burst.
    smooth = np.convolve(burst, np.ones(3) / 3.0, mode="same")
    out[:period] = (1.0 - brightness) * burst + brightness * smooth
    weight_now, weight_before = 1.0 - 0.5 * brightness, 0.5 * brightness
    for k in range(1, n_periods):
        previous = out[(k - 1) * period : k * period]
        before = np.empty(period)
        before[0] = out[(k - 1) * period - 1] if k > 1 else 0.0
        before[1:] = previous[:-1]
        out[k * period : (k + 1) * period] = damping * (weight_now * previous + weight_before * before)
    return out[:n]


def place(buffer: FloatArray, sound: FloatArray, start_s: float, sample_rate: int, gain: float) -> None:
    """Mix ``sound`` into ``buffer`` from ``start_s`` on, cropping at the end."""
    start = int(round(start_s * sample_rate))
    if start >= buffer.shape[0] or gain == 0.0:
        return
    end = min(buffer.shape[0], start + sound.shape[0])
    buffer[start:end] += gain * sound[: end - start]


def room_impulse(sample_rate: int, decay_s: float, rng: np.random.Generator) -> FloatArray:
    """A simple room: darkened noise decaying by 60 dB over ``decay_s``, unit energy."""
    t = _seconds(int(decay_s * sample_rate), sample_rate)
    impulse = rng.normal(0.0, 1.0, t.shape[0]) * np.exp(-6.9 * t / decay_s)
    impulse = fft_filter(impulse, sample_rate, lowpass_hz=5000.0, order=1)
    return impulse / np.sqrt(np.sum(impulse**2))


# --------------------------------------------------------------------------------------
# Instruments: a Note in, samples out
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    """What an instrument needs besides the note."""

    sample_rate: int
    timbre: Timbre
    rng: np.random.Generator


def _drum_sounds(kit: DrumKit, sample_rate: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    nyquist = sample_rate / 2

    def noise(seconds: float) -> FloatArray:
        return rng.uniform(-1.0, 1.0, int(seconds * sample_rate))

    t_kick = _seconds(int(0.7 * sample_rate), sample_rate)
    kick_hz = kit.kick_end_hz + (kit.kick_start_hz - kit.kick_end_hz) * np.exp(-t_kick / 0.035)
    kick = np.sin(2 * np.pi * np.cumsum(kick_hz) / sample_rate) * np.exp(-t_kick / kit.kick_decay_s)
    click = fft_filter(noise(0.7), sample_rate, highpass_hz=2000.0) * np.exp(-t_kick / 0.003)
    kick = _soft_clip(kick + kit.kick_click * click, kit.kick_drive)

    t_snare = _seconds(int(0.5 * sample_rate), sample_rate)
    snare_noise = fft_filter(noise(0.5), sample_rate, lowpass_hz=min(kit.snare_noise_hz, 0.9 * nyquist),
                             highpass_hz=1200.0)
    snare = (0.5 * np.sin(2 * np.pi * kit.snare_tone_hz * t_snare) * np.exp(-t_snare / 0.05)
             + snare_noise * np.exp(-t_snare / kit.snare_decay_s) / (np.abs(snare_noise).max() + 1e-9))

    clap_env = sum(np.exp(-np.maximum(t_snare - d, 0) / 0.006) * (t_snare >= d) for d in (0.0, 0.011, 0.022))
    clap_env = clap_env + 0.6 * np.exp(-np.maximum(t_snare - 0.03, 0) / 0.12) * (t_snare >= 0.03)
    clap = fft_filter(noise(0.5), sample_rate, lowpass_hz=2600.0, highpass_hz=900.0) * clap_env

    hat_cutoff = min(kit.hat_cutoff_hz, 0.75 * nyquist)
    t_hat = _seconds(int(0.6 * sample_rate), sample_rate)
    hat_noise = fft_filter(noise(0.6), sample_rate, highpass_hz=hat_cutoff, order=3)
    t_crash = _seconds(int(2.0 * sample_rate), sample_rate)
    crash = fft_filter(noise(2.0), sample_rate, highpass_hz=0.6 * hat_cutoff) * np.exp(-t_crash / 0.9)

    shaker_env = np.minimum(t_hat / 0.012, 1.0) * np.exp(-t_hat / 0.05)
    shaker = fft_filter(noise(0.6), sample_rate, lowpass_hz=min(9000.0, 0.9 * nyquist), highpass_hz=3500.0)
    hand_hz = 95.0 + 40.0 * np.exp(-t_snare / 0.02)
    hand = (np.sin(2 * np.pi * np.cumsum(hand_hz) / sample_rate)
            + 0.3 * fft_filter(noise(0.5), sample_rate, lowpass_hz=900.0)) * np.exp(-t_snare / 0.16)

    sounds = {
        "kick": kick,
        "snare": snare,
        "clap": clap,
        "hat": hat_noise * np.exp(-t_hat / kit.hat_decay_s),
        "open_hat": hat_noise * np.exp(-t_hat / (5.0 * kit.hat_decay_s)),
        "crash": crash,
        "shaker": shaker * shaker_env,
        "hand": hand,
    }
    return {name: _normalise_peak(fft_filter(sound, sample_rate, lowpass_hz=kit.kit_lowpass_hz))
            for name, sound in sounds.items()}


def _normalise_peak(sound: FloatArray) -> FloatArray:
    return sound / (np.abs(sound).max() + 1e-9)


def _detuned_saws(hz: float, n: int, voice: Voice, count: int = 3) -> FloatArray:
    spread = np.linspace(-1.0, 1.0, count) * voice.timbre.detune_cents
    phases = voice.rng.random(count)
    summed = np.zeros(n)
    for cents, phase in zip(spread, phases):
        summed += _oscillator("saw", hz * 2 ** (cents / 1200), n, voice.sample_rate, phase)
    return summed / count


def _samples(seconds: float, sample_rate: int) -> int:
    return max(16, int(seconds * sample_rate))


def sub_bass(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 1.0, sr)
    tone = _oscillator("sine", hz, n, sr) + 0.15 * _oscillator("sine", 2 * hz, n, sr)
    return tone * _envelope(n, sr, 0.6, 1.0, 1.0, note.duration_s, 0.6)


def acid_bass(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.15, sr)
    cutoff = (150.0 + 2200.0 * note.tone**2) * voice.timbre.brightness
    raw = _oscillator("saw", hz, n, sr) * _envelope(n, sr, 0.002, 0.18, 0.2, note.duration_s, 0.03)
    return _soft_clip(fft_filter(raw, sr, lowpass_hz=cutoff, order=3, resonance=2.5), 1.5)


def saw_bass(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.1, sr)
    raw = _detuned_saws(hz, n, voice, count=2) + 0.5 * _oscillator("square", hz / 2, n, sr)
    env = _envelope(n, sr, 0.003, 0.25, 0.5, note.duration_s, 0.04)
    return fft_filter(raw * env, sr, lowpass_hz=500.0 * voice.timbre.brightness * (0.6 + note.tone))


def round_bass(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.1, sr)
    raw = _oscillator("triangle", hz, n, sr) + 0.6 * _oscillator("sine", hz, n, sr)
    env = _envelope(n, sr, 0.006, 0.5, 0.6, note.duration_s, 0.06)
    return fft_filter(raw * env, sr, lowpass_hz=380.0 * voice.timbre.brightness)


def slap_bass(note: Note, voice: Voice) -> FloatArray:
    """Bright attack fading into a dark body (a time-varying filter as a crossfade), plus a pop."""
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.08, sr)
    t = _seconds(n, sr)
    raw = 0.6 * _oscillator("saw", hz, n, sr) + 0.4 * _oscillator("square", hz, n, sr)
    bright = fft_filter(raw, sr, lowpass_hz=(1500.0 + 3000.0 * note.tone) * voice.timbre.brightness, order=2)
    dark = fft_filter(raw, sr, lowpass_hz=450.0, order=2)
    fade = np.exp(-t / 0.035)
    pop = fft_filter(voice.rng.uniform(-1, 1, n), sr, highpass_hz=1500.0) * np.exp(-t / 0.004)
    body = bright * fade + dark * (1.0 - fade) + 0.4 * note.tone * pop
    return body * _envelope(n, sr, 0.001, 0.2, 0.35, note.duration_s, 0.03)


def upright_bass(note: Note, voice: Voice) -> FloatArray:
    sr = voice.sample_rate
    n = _samples(note.duration_s + 0.3, sr)
    string = karplus_strong(midi_to_hz(note.midi), n, sr, voice.rng, damping=0.995, brightness=0.9)
    string *= _envelope(n, sr, 0.004, 10.0, 1.0, note.duration_s, 0.08)
    return fft_filter(string, sr, lowpass_hz=900.0 * voice.timbre.brightness)


def distorted_bass(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.05, sr)
    raw = _detuned_saws(hz, n, voice, count=2) * _envelope(n, sr, 0.002, 0.1, 0.7, note.duration_s, 0.02)
    return fft_filter(_soft_clip(raw, 0.6 * voice.timbre.drive), sr, lowpass_hz=1400.0 * voice.timbre.brightness)


def pad(note: Note, voice: Voice, max_cutoff_hz: float = 2300.0) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    release_s = 1.5
    n = _samples(note.duration_s + release_s, sr)
    cutoff = (0.2 + 0.8 * note.tone) * max_cutoff_hz * voice.timbre.brightness
    env = _envelope(n, sr, voice.timbre.pad_attack_s, 1.0, 1.0, note.duration_s, release_s / 3)
    return fft_filter(_detuned_saws(hz, n, voice), sr, lowpass_hz=cutoff, order=2) * env


def dark_pad(note: Note, voice: Voice) -> FloatArray:
    return pad(note, voice, max_cutoff_hz=800.0)


def synth_stab(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.2, sr)
    env = _envelope(n, sr, 0.002, 0.12, 0.3, note.duration_s, 0.06)
    cutoff = (900.0 + 2500.0 * note.tone) * voice.timbre.brightness
    return fft_filter(_detuned_saws(hz, n, voice, count=2) * env, sr, lowpass_hz=cutoff, order=2)


def brass(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.1, sr)
    env = _envelope(n, sr, 0.025, 0.2, 0.7, note.duration_s, 0.05)
    return fft_filter(_detuned_saws(hz, n, voice, count=2) * env, sr, lowpass_hz=2200.0 * voice.timbre.brightness)


def electric_piano(note: Note, voice: Voice) -> FloatArray:
    """Sine partials with a short metallic tine and a slow tremolo."""
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.6, sr)
    t = _seconds(n, sr)
    body = _oscillator("sine", hz, n, sr) + 0.25 * _oscillator("sine", 2 * hz, n, sr) * np.exp(-t / 0.3)
    if 7.1 * hz < sr / 2:
        body += 0.12 * note.tone * _oscillator("sine", 7.1 * hz, n, sr) * np.exp(-t / 0.04)
    tremolo = 1.0 + 0.15 * np.sin(2 * np.pi * 4.5 * t)
    env = _envelope(n, sr, 0.003, 1.2, 0.3, note.duration_s, 0.25)
    return fft_filter(body * env * tremolo, sr, lowpass_hz=3000.0 * voice.timbre.brightness)


def clav(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.05, sr)
    env = _envelope(n, sr, 0.001, 0.07, 0.2, note.duration_s, 0.02)
    return fft_filter(_oscillator("pulse", hz, n, sr) * env, sr,
                      lowpass_hz=4500.0 * voice.timbre.brightness, highpass_hz=350.0)


def plucked_guitar(note: Note, voice: Voice) -> FloatArray:
    sr = voice.sample_rate
    n = _samples(note.duration_s + 0.8, sr)
    brightness = float(np.clip(0.7 - 0.4 * voice.timbre.brightness + 0.2 * (0.5 - note.tone), 0.05, 0.95))
    string = karplus_strong(midi_to_hz(note.midi), n, sr, voice.rng, damping=0.997, brightness=brightness)
    return string * _envelope(n, sr, 0.001, 10.0, 1.0, note.duration_s + 0.5, 0.15)


def power_chord(note: Note, voice: Voice) -> FloatArray:
    """Root, fifth and octave through a hard clipper and a speaker-cabinet low-pass.

    ``tone`` below 0.5 is a palm-muted chug: short and darker.
    """
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.05, sr)
    raw = sum(_detuned_saws(hz * ratio, n, voice, count=2) for ratio in (1.0, 1.4983, 2.0))
    muted = note.tone < 0.5
    env = _envelope(n, sr, 0.002, 0.06 if muted else 0.6, 0.3 if muted else 0.8, note.duration_s, 0.03)
    distorted = _soft_clip(raw * env, 1.5 * voice.timbre.drive)
    cutoff = (1100.0 if muted else 3200.0) * voice.timbre.brightness
    return fft_filter(distorted, sr, lowpass_hz=cutoff, highpass_hz=90.0, order=2)


def bell(note: Note, voice: Voice) -> FloatArray:
    """Two-operator FM with an inharmonic ratio; the index decays so the strike is brightest."""
    sr, hz = voice.sample_rate, midi_to_hz(note.midi + 12)
    n = _samples(note.duration_s + 3.0, sr)
    t = _seconds(n, sr)
    index = 2.5 * np.exp(-t / 0.8)
    modulator = np.sin(2 * np.pi * 3.5 * hz * t)
    return np.sin(2 * np.pi * hz * t + index * modulator) * np.exp(-t / 1.6) * np.minimum(t / 0.003, 1.0)


def fiddle(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.2, sr)
    t = _seconds(n, sr)
    vibrato_cents = 18.0 * np.minimum(t / 0.25, 1.0) * np.sin(2 * np.pi * 5.5 * t)
    cycles = np.cumsum(hz * 2 ** (vibrato_cents / 1200)) / sr
    raw = 2.0 * (cycles % 1.0) - 1.0
    env = _envelope(n, sr, 0.06, 0.3, 0.8, note.duration_s, 0.1)
    return fft_filter(raw * env, sr, lowpass_hz=3200.0 * voice.timbre.brightness, highpass_hz=350.0)


def flute(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.15, sr)
    t = _seconds(n, sr)
    breath = fft_filter(voice.rng.normal(0, 1, n), sr, lowpass_hz=min(2.5 * hz, sr / 2), highpass_hz=hz)
    tone = (np.sin(2 * np.pi * hz * t + 0.004 * np.sin(2 * np.pi * 5 * t) * hz)
            + 0.12 * np.sin(4 * np.pi * hz * t) + 0.08 * breath / (np.abs(breath).max() + 1e-9))
    return tone * _envelope(n, sr, 0.05, 0.4, 0.8, note.duration_s, 0.08)


def bleep(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi + 12)
    n = _samples(note.duration_s + 0.05, sr)
    return _oscillator("square", hz, n, sr) * _envelope(n, sr, 0.001, 0.05, 0.0, note.duration_s, 0.02) * 0.5


def synth_lead(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi)
    n = _samples(note.duration_s + 0.1, sr)
    raw = _oscillator("square", hz, n, sr) + 0.5 * _oscillator("saw", hz * 1.003, n, sr)
    env = _envelope(n, sr, 0.005, 0.15, 0.6, note.duration_s, 0.05)
    return fft_filter(raw * env, sr, lowpass_hz=2800.0 * voice.timbre.brightness)


def shred_lead(note: Note, voice: Voice) -> FloatArray:
    sr, hz = voice.sample_rate, midi_to_hz(note.midi + 12)
    n = _samples(note.duration_s + 0.05, sr)
    raw = _detuned_saws(hz, n, voice, count=2) * _envelope(n, sr, 0.002, 0.2, 0.7, note.duration_s, 0.03)
    return fft_filter(_soft_clip(raw, voice.timbre.drive), sr, lowpass_hz=3500.0 * voice.timbre.brightness,
                      highpass_hz=200.0)


Instrument = Callable[[Note, Voice], FloatArray]

BASS_INSTRUMENTS: dict[str, Instrument] = {
    "drone": sub_bass,
    "acid_offbeat": acid_bass,
    "acid_rolling": acid_bass,
    "saw_offbeat": saw_bass,
    "on_kicks": round_bass,
    "root_fifth": upright_bass,
    "chug": distorted_bass,
    "slap": slap_bass,
    "octave_disco": slap_bass,
}
CHORD_INSTRUMENTS: dict[str, Instrument] = {
    "pad_sustain": pad,
    "pad_dark": dark_pad,
    "epiano_sustain": electric_piano,
    "epiano_comp": electric_piano,
    "stab_offbeat": synth_stab,
    "stab_syncopated": synth_stab,
    "brass_stab": brass,
    "clav_chank": clav,
    "guitar_arpeggio": plucked_guitar,
    "guitar_strum": plucked_guitar,
    "power_chug": power_chord,
    "power_gallop": power_chord,
}
LEAD_INSTRUMENTS: dict[str, Instrument] = {
    "bell": bell,
    "fiddle": fiddle,
    "flute": flute,
    "bleep": bleep,
    "synth_lead": synth_lead,
    "shred": shred_lead,
}
# Instruments whose every note is a fresh random pluck; the cache keeps a few variants.
STOCHASTIC_INSTRUMENTS = frozenset({plucked_guitar, upright_bass})
PLUCK_VARIANTS = 3


def render_notes(notes: list[Note], instrument: Instrument, voice: Voice, n_frames: int) -> FloatArray:
    """Mix every note into one mono stem; identical notes are synthesised once."""
    stem = np.zeros(n_frames)
    cache: dict[tuple[float, int, int, int], FloatArray] = {}
    for note in notes:
        variant = int(voice.rng.integers(PLUCK_VARIANTS)) if instrument in STOCHASTIC_INSTRUMENTS else 0
        # Durations to 10 ms and tone to 1/8 are small roundings that let loops reuse notes.
        key = (note.midi, int(round(note.duration_s * 100)), int(round(note.tone * 8)), variant)
        if key not in cache:
            cache[key] = instrument(dataclasses.replace(note, duration_s=key[1] / 100, tone=key[2] / 8), voice)
        place(stem, cache[key], note.start_s, voice.sample_rate, note.velocity)
    return stem
