"""Arrangement: pure functions from a song to bars, harmony and notes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from genre_batch.synth.plan import SynthSong
from genre_batch.synth.styles import SCALES, SLAP_LINES, STEP_VELOCITY, ArtistProfile, DrumPattern, _style

STEPS_PER_BAR = 16  # sixteenth notes in a 4/4 bar


@dataclass(frozen=True)
class Note:
    start_s: float
    duration_s: float
    midi: float
    velocity: float = 1.0
    tone: float = 0.5  # per-note brightness (filter position, palm mute), 0..1


@dataclass(frozen=True)
class SongForm:
    """Timing, harmony per bar, and which parts play in which bar."""

    step_s: float  # one sixteenth note
    swing: float  # delay of odd sixteenths, in sixteenths
    n_bars: int
    bass_roots: tuple[int, ...]  # one MIDI pitch per bar
    chords: tuple[tuple[int, ...], ...]  # chord tones per bar, middle register
    melody_pitches: tuple[int, ...]  # scale tones available to the lead, ascending
    drums_on: tuple[bool, ...]
    bass_on: tuple[bool, ...]
    lead_on: tuple[bool, ...]

    @property
    def bar_s(self) -> float:
        return self.step_s * STEPS_PER_BAR

    def step_time(self, bar: int, step: float) -> float:
        swung = self.swing if int(step) % 2 == 1 else 0.0
        return (bar * STEPS_PER_BAR + step + swung) * self.step_s


def plan_form(song: SynthSong, profile: ArtistProfile, rng: np.random.Generator) -> SongForm:
    """Pick key, progression and sections for one song."""
    style = _style(song.genre)
    step_s = 60.0 / song.tempo_bpm / 4.0
    n_bars = int(math.ceil(song.duration_s / (step_s * STEPS_PER_BAR))) + 1
    scale = SCALES[profile.scale if rng.random() < 0.7 else style.scales[rng.integers(len(style.scales))]]
    tonic = int(rng.integers(style.tonic_midi[0], style.tonic_midi[1] + 1))
    progression = style.progressions[rng.integers(len(style.progressions))]
    bars_per_chord = int(style.bars_per_chord[rng.integers(len(style.bars_per_chord))])
    degrees = [progression[(bar // bars_per_chord) % len(progression)] for bar in range(n_bars)]
    chords = tuple(_chord(scale, tonic + 12, degree, style.chord_size) for degree in degrees)
    bass_roots = tuple(tonic + _scale_offset(scale, degree) for degree in degrees)
    melody_pitches = tuple(tonic + 24 + _scale_offset(scale, d) for d in range(0, 12))
    drums_on, bass_on = _sections(n_bars, has_drums=profile.drums is not None, rng=rng)
    lead_on = tuple(bool(rng.random() < 0.6) for _ in range(n_bars // 4 + 1))
    return SongForm(
        step_s=step_s,
        swing=profile.swing * float(rng.uniform(0.8, 1.2)),
        n_bars=n_bars,
        bass_roots=bass_roots,
        chords=chords,
        melody_pitches=melody_pitches,
        drums_on=drums_on,
        bass_on=bass_on,
        lead_on=tuple(lead_on[bar // 4] for bar in range(n_bars)),
    )


def _scale_offset(scale: tuple[int, ...], degree: int) -> int:
    return 12 * (degree // len(scale)) + scale[degree % len(scale)]


def _chord(scale: tuple[int, ...], root_midi: int, degree: int, size: int) -> tuple[int, ...]:
    """Stack thirds inside the scale: degree, degree+2, degree+4 (, degree+6)."""
    return tuple(root_midi + _scale_offset(scale, degree + 2 * k) for k in range(size))


def _sections(n_bars: int, has_drums: bool, rng: np.random.Generator) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """Drum and bass on/off per bar: an intro without drums, maybe a breakdown."""
    drums = np.full(n_bars, has_drums)
    bass = np.ones(n_bars, dtype=bool)
    if has_drums:
        intro = int(rng.choice([0, 1, 2, 4, 8]))
        drums[:intro] = False
        bass[: intro // 2] = False
        if n_bars >= 12 and rng.random() < 0.6:
            start = int(rng.integers(n_bars // 3, 2 * n_bars // 3))
            drums[start : start + int(rng.integers(2, 9))] = False
    return tuple(bool(d) for d in drums), tuple(bool(b) for b in bass)


def drum_hits(form: SongForm, pattern: DrumPattern, rng: np.random.Generator) -> dict[str, list[tuple[float, float]]]:
    """(time, velocity) per drum voice, with fills, crashes and human timing."""
    hits: dict[str, list[tuple[float, float]]] = {}
    jitter_s = 0.004 + 0.006 * rng.random()
    for bar in range(form.n_bars):
        if not form.drums_on[bar]:
            continue
        is_fill_bar = pattern.fill_every_bars > 0 and bar % pattern.fill_every_bars == pattern.fill_every_bars - 1
        for voice, steps in pattern.voices.items():
            for step, symbol in enumerate(steps):
                if symbol == "." or (is_fill_bar and step >= 12 and voice != "kick"):
                    continue
                _add_hit(hits, voice, form, bar, step, STEP_VELOCITY[symbol], rng, jitter_s)
        if is_fill_bar:
            for step in range(12, 16):
                _add_hit(hits, "snare", form, bar, step, 0.5 + 0.12 * (step - 12), rng, jitter_s)
        starts_section = bar == 0 or not form.drums_on[bar - 1]
        if pattern.crash_every_bars and (bar % pattern.crash_every_bars == 0 or starts_section):
            _add_hit(hits, "crash", form, bar, 0, 0.9, rng, jitter_s)
    return hits


def _add_hit(hits: dict[str, list[tuple[float, float]]], voice: str, form: SongForm, bar: int, step: int,
             velocity: float, rng: np.random.Generator, jitter_s: float) -> None:
    time_s = max(0.0, form.step_time(bar, step) + rng.normal(0.0, jitter_s))
    hits.setdefault(voice, []).append((time_s, velocity * float(rng.uniform(0.85, 1.0))))


def bass_notes(form: SongForm, part: str, kick_steps: tuple[int, ...], rng: np.random.Generator) -> list[Note]:
    """The bass line for one of the named bass parts."""
    if part == "none":
        return []
    if part == "drone":
        return _drone_notes(form, rng)
    step_patterns = {
        "acid_offbeat": (2, 6, 10, 14),
        "saw_offbeat": (2, 6, 10, 14),
        "acid_rolling": (1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15),
        "root_fifth": (0, 8),
        "chug": tuple(range(16)),
        "octave_disco": (0, 2, 4, 6, 8, 10, 12, 14),
        "on_kicks": kick_steps,
    }
    if part == "slap":
        return _slap_notes(form, rng)
    steps = step_patterns[part]
    notes = []
    sweep_phase = rng.uniform(0, 2 * math.pi)
    for bar in range(form.n_bars):
        if not form.bass_on[bar]:
            continue
        root = form.bass_roots[bar]
        # A slow filter sweep over 16 bars (techno), otherwise a steady tone.
        tone = 0.5 + 0.45 * math.sin(2 * math.pi * bar / 16 + sweep_phase)
        for position, step in enumerate(steps):
            next_step = steps[position + 1] if position + 1 < len(steps) else 16
            midi = _bass_pitch(part, root, position, rng)
            length_steps = {"root_fifth": 7.0, "on_kicks": next_step - step, "chug": 0.9}.get(part, 1.6)
            notes.append(Note(form.step_time(bar, step), length_steps * form.step_s, midi,
                              velocity=1.0 if step % 4 == 0 else 0.8, tone=tone))
    return notes


def _bass_pitch(part: str, root: int, position: int, rng: np.random.Generator) -> float:
    if part == "root_fifth" and position % 2 == 1:
        return root - 5  # the fifth below
    if part == "octave_disco" and position % 2 == 1:
        return root + 12
    if part == "acid_rolling" and rng.random() < 0.15:
        return root + (12 if rng.random() < 0.6 else 7)
    return root


def _drone_notes(form: SongForm, rng: np.random.Generator) -> list[Note]:
    notes, bar = [], 0
    while bar < form.n_bars:
        span = 1
        while bar + span < form.n_bars and form.bass_roots[bar + span] == form.bass_roots[bar]:
            span += 1
        notes.append(Note(form.step_time(bar, 0), span * form.bar_s, form.bass_roots[bar] - 12, 0.9,
                          tone=float(rng.uniform(0.3, 0.7))))
        bar += span
    return notes


def _slap_notes(form: SongForm, rng: np.random.Generator) -> list[Note]:
    line = SLAP_LINES[rng.integers(len(SLAP_LINES))]
    offsets = {"R": 0, "O": 12, "F": 7, "S": 10, "g": 0}
    notes = []
    for bar in range(form.n_bars):
        if not form.bass_on[bar]:
            continue
        for step, symbol in enumerate(line):
            if symbol == ".":
                continue
            dead = symbol == "g"
            notes.append(Note(form.step_time(bar, step), (0.5 if dead else 1.4) * form.step_s,
                              form.bass_roots[bar] + offsets[symbol], velocity=0.35 if dead else 1.0,
                              tone=0.95 if symbol == "O" else 0.6))
    return notes


def chord_notes(form: SongForm, part: str, rng: np.random.Generator) -> list[Note]:
    """Chord notes for one of the named chord parts (one Note per chord tone)."""
    writers: dict[str, Callable[[SongForm, np.random.Generator], list[Note]]] = {
        "pad_sustain": _sustained_chords,
        "pad_dark": _sustained_chords,
        "epiano_sustain": _sustained_chords,
        "epiano_comp": lambda f, r: _rhythmic_chords(f, r, steps=(0, 6, 10), length_steps=3.0),
        "stab_offbeat": lambda f, r: _rhythmic_chords(f, r, steps=(2, 10), length_steps=1.0),
        "stab_syncopated": lambda f, r: _rhythmic_chords(f, r, steps=(3, 6, 11), length_steps=0.8),
        "brass_stab": lambda f, r: _rhythmic_chords(f, r, steps=(0, 3, 10), length_steps=1.5),
        "clav_chank": lambda f, r: _rhythmic_chords(f, r, steps=(1, 3, 6, 9, 11, 14), length_steps=0.6),
        "guitar_arpeggio": _arpeggio,
        "guitar_strum": _strums,
        "power_chug": lambda f, r: _power_chords(f, r, accents=(0, 6, 8, 14)),
        "power_gallop": lambda f, r: _power_chords(f, r, accents=(0, 4, 8, 12), gallop=True),
    }
    return writers[part](form, rng)


def _chord_spans(form: SongForm) -> list[tuple[int, int]]:
    """(first bar, number of bars) of each run of one chord."""
    spans, bar = [], 0
    while bar < form.n_bars:
        span = 1
        while bar + span < form.n_bars and form.chords[bar + span] == form.chords[bar]:
            span += 1
        spans.append((bar, span))
        bar += span
    return spans


MAX_SUSTAIN_S = 8.0  # long chords are struck again, as players do (and repeats reuse the cache)


def _sustained_chords(form: SongForm, rng: np.random.Generator) -> list[Note]:
    tones = rng.uniform(0.2, 0.9, 2)
    bars_per_strike = max(1, int(MAX_SUSTAIN_S // form.bar_s))
    notes = []
    for first_bar, span in _chord_spans(form):
        for bar in range(first_bar, first_bar + span, bars_per_strike):
            length_bars = min(bars_per_strike, first_bar + span - bar)
            tone = float(tones[rng.integers(2)])
            for midi in form.chords[bar]:
                notes.append(Note(form.step_time(bar, 0), length_bars * form.bar_s, midi,
                                  float(rng.uniform(0.7, 1.0)), tone))
    return notes


def _rhythmic_chords(form: SongForm, rng: np.random.Generator, steps: tuple[int, ...],
                     length_steps: float) -> list[Note]:
    tones = rng.uniform(0.3, 0.8, 2)
    notes = []
    for bar in range(form.n_bars):
        for step in steps:
            if rng.random() < 0.1:  # a skipped hit keeps loops from being exact copies
                continue
            velocity, tone = float(rng.uniform(0.6, 1.0)), float(tones[rng.integers(2)])
            for midi in form.chords[bar]:
                notes.append(Note(form.step_time(bar, step), length_steps * form.step_s, midi, velocity, tone))
    return notes


def _arpeggio(form: SongForm, rng: np.random.Generator) -> list[Note]:
    orders = ((0, 1, 2, 1), (0, 2, 1, 2), (0, 1, 2, 3), (2, 1, 0, 1))
    order = orders[rng.integers(len(orders))]
    notes = []
    for bar in range(form.n_bars):
        chord = form.chords[bar]
        for eighth in range(8):
            tone_index = order[eighth % len(order)] % len(chord)
            octave_up = 12 if eighth >= 4 and rng.random() < 0.3 else 0
            notes.append(Note(form.step_time(bar, 2 * eighth), 4 * form.step_s, chord[tone_index] + octave_up,
                              float(rng.uniform(0.6, 1.0)), 0.6))
    return notes


def _strums(form: SongForm, rng: np.random.Generator) -> list[Note]:
    """Down and up strums: chord tones a few milliseconds apart, low to high or back."""
    strum_steps = ((0, 4, 8, 12), (0, 4, 6, 10, 12, 14), (0, 6, 8, 12))[rng.integers(3)]
    spread_s = float(rng.uniform(0.008, 0.02))
    notes = []
    for bar in range(form.n_bars):
        chord = form.chords[bar] + (form.chords[bar][0] + 12,)
        for step in strum_steps:
            upstroke = step % 4 == 2
            ordered = chord[::-1] if upstroke else chord
            velocity = float(rng.uniform(0.5, 0.7) if upstroke else rng.uniform(0.75, 1.0))
            for string, midi in enumerate(ordered):
                notes.append(Note(form.step_time(bar, step) + string * spread_s, 4 * form.step_s, midi,
                                  velocity, 0.6))
    return notes


def _power_chords(form: SongForm, rng: np.random.Generator, accents: tuple[int, ...],
                  gallop: bool = False) -> list[Note]:
    """Palm-muted sixteenth chugs (tone 0.2) with open accented chords (tone 0.9)."""
    steps = [s for s in range(16) if not gallop or s % 4 != 1]
    notes = []
    for bar in range(form.n_bars):
        root = form.bass_roots[bar] + 12
        for step in steps:
            accent = step in accents
            notes.append(Note(form.step_time(bar, step), (2.0 if accent else 0.9) * form.step_s, root,
                              1.0 if accent else float(rng.uniform(0.6, 0.8)), 0.9 if accent else 0.2))
    return notes


LEAD_RHYTHM = {  # (sixteenths per note choices, chance of a rest, length as share of the gap)
    "bell": ((8, 12, 16), 0.3, 2.5),
    "fiddle": ((2, 4, 4, 8), 0.15, 0.95),
    "flute": ((4, 6, 8), 0.3, 0.9),
    "bleep": ((1, 2, 3), 0.5, 0.5),
    "synth_lead": ((2, 3, 4), 0.35, 0.8),
    "shred": ((1, 1, 2), 0.1, 0.9),
}


def lead_notes(form: SongForm, part: str | None, rng: np.random.Generator) -> list[Note]:
    """A random walk over the scale, in the rhythm typical of the lead instrument."""
    if part is None:
        return []
    gaps, rest_chance, length_share = LEAD_RHYTHM[part]
    total_steps = form.n_bars * STEPS_PER_BAR
    index = len(form.melody_pitches) // 2
    notes, step = [], 0
    while step < total_steps:
        gap = int(gaps[rng.integers(len(gaps))])
        bar = step // STEPS_PER_BAR
        index = int(np.clip(index + rng.choice([-2, -1, -1, 1, 1, 2]), 0, len(form.melody_pitches) - 1))
        if form.lead_on[bar] and rng.random() >= rest_chance:
            notes.append(Note(form.step_time(bar, step % STEPS_PER_BAR), gap * length_share * form.step_s,
                              form.melody_pitches[index], float(rng.uniform(0.6, 1.0)), 0.5))
        step += gap
    return notes
