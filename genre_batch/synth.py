"""Deterministic demo catalogue: real MP3 files in six made-up genres, synthesised with numpy.

Nothing is downloaded: every sound (drums, bass, chords, leads, vinyl crackle, room reverb)
is made here from oscillators, noise, FFT filters and Karplus-Strong strings.

Layers, top to bottom:

* **styles** -- what makes a genre (tempo range, drum patterns, bass and chord parts,
  instruments, mix) and an artist (one fixed preset drawn inside the genre, often borrowing
  a trait from a neighbouring genre so that genres overlap the way real ones do);
* **plan** -- ``plan_catalogue`` decides every song (genre, artist, tempo, length, format)
  before any audio exists;
* **arrangement** -- pure functions from a song to a ``SongForm`` and lists of ``Note``;
* **synthesis** -- instruments turn notes into samples; ``render_song`` mixes the parts;
* **writing** -- ``write_catalogue`` encodes MP3s in a process pool, tags them (ID3) and
  writes ``labels.csv`` plus one deliberately undecodable upload.

Songs by one artist share a preset (drum kit, timbre, tempo centre, parts), so splitting by
artist gives an honest test. Everything is a pure function of ``SynthSong.seed`` and of the
genre and artist names.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import multiprocessing
import os
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import numpy.typing as npt
import soundfile as sf
from mutagen.id3 import COMM, ID3, TALB, TCON, TIT2, TPE1
from tqdm import tqdm

from genre_batch.errors import GenreBatchError

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")

SAMPLE_RATES = (22_050, 44_100)
# Everything is synthesised at this rate; 44.1 kHz songs are upsampled (in the frequency
# domain) at mastering and get their noise floor at the full rate. Halves the cost of
# 44.1 kHz songs; a classifier working at 22.05 kHz never sees the difference.
RENDER_RATE = 22_050
# Shares of the catalogue written at 44.1 kHz / in stereo, so that readers must resample
# and down-mix; assigned by shuffling, independently of the genre (no format leak).
SHARE_HIGH_RATE = 0.25
SHARE_STEREO = 0.3
STEPS_PER_BAR = 16  # sixteenth notes in a 4/4 bar
LABELS_FILE_NAME = "labels.csv"
BROKEN_FILE_NAME = "corrupted-upload.mp3"
PEAK_RANGE = (0.6, 0.9)  # final peak level, drawn per song; below 0.95 leaves MP3 headroom


class CatalogueWriteError(GenreBatchError):
    """A synthetic song could not be rendered, encoded or tagged."""


# --------------------------------------------------------------------------------------
# Styles: what a genre is, and what an artist inside it keeps from song to song
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrumKit:
    """One-shot drum sounds; every float is jittered per artist and per song."""

    kick_start_hz: float = 150.0
    kick_end_hz: float = 50.0
    kick_decay_s: float = 0.3
    kick_click: float = 0.3
    kick_drive: float = 1.0  # tanh pre-gain; 1 is nearly clean
    snare_tone_hz: float = 190.0
    snare_decay_s: float = 0.15
    snare_noise_hz: float = 4000.0  # upper edge of the snare's noise band
    hat_decay_s: float = 0.045
    hat_cutoff_hz: float = 7000.0
    kit_lowpass_hz: float = 16000.0  # dull, sampled-from-vinyl drums have a low value


@dataclass(frozen=True)
class Timbre:
    """Sound of the melodic parts and of the master bus."""

    brightness: float = 1.0  # multiplies every melodic filter cutoff
    detune_cents: float = 8.0
    drive: float = 1.0  # distortion pre-gain for distorted instruments
    pad_attack_s: float = 0.8
    reverb_wet: float = 0.15
    reverb_s: float = 1.5
    crackle: float = 0.0  # vinyl crackle level; 0 = none
    hiss_db: float = -45.0  # broadband noise floor relative to the mix RMS
    master_lowpass_hz: float = 16000.0


@dataclass(frozen=True)
class GenreStyle:
    """Everything that separates one made-up genre from the others.

    Option tuples (``drums``, ``bass``, ...) are dealt to the genre's artists in turn, so
    each option is used by at least one artist when there are enough artists.
    """

    artists: tuple[str, ...]
    tempo_bpm: tuple[float, float]
    scales: tuple[str, ...]
    progressions: tuple[tuple[int, ...], ...]  # scale degrees, 0 = tonic
    bars_per_chord: tuple[int, ...]
    chord_size: int  # 3 = triads, 4 = sevenths
    tonic_midi: tuple[int, int]  # bass-register tonic range (inclusive)
    drums: tuple[str | None, ...]
    bass: tuple[str, ...]
    chords: tuple[str, ...]
    lead: tuple[str | None, ...]
    swing: tuple[float, float]  # delay of odd sixteenths, in sixteenths
    kit: DrumKit
    timbre: Timbre
    # Stem levels in dB before the per-song jitter.
    levels_db: dict[str, float]
    # Parts this genre may take from a neighbour (see GENRE_NEIGHBOURS).
    borrows: tuple[str, ...] = ("drums", "chords", "lead")


@dataclass(frozen=True)
class ArtistProfile:
    """What one artist keeps across songs: parts, tempo centre, kit and timbre presets."""

    genre: str
    name: str
    tempo_range: tuple[float, float]  # the genre's range, or a pattern's own (see PATTERN_TEMPO_BPM)
    tempo_bpm: float  # centre of this artist's songs
    scale: str
    drums: str | None
    bass: str
    chords: str
    lead: str | None
    swing: float
    kit: DrumKit
    timbre: Timbre


STYLES: dict[str, GenreStyle] = {
    # Slow chords on detuned-saw pads, a sine drone, sparse FM bells, long reverb; one
    # artist adds a soft downtempo pulse that sounds close to dusty-hop.
    "drift-ambient": GenreStyle(
        artists=("Lumen Tide", "Hollow Aurora", "Stillwater Choir", "Nimbus Fields", "Pale Harbour"),
        tempo_bpm=(60.0, 84.0),
        scales=("major", "dorian", "minor"),
        progressions=((0, 5, 3, 4), (0, 3, 0, 4), (5, 3, 0, 4), (0, 2, 5, 3)),
        bars_per_chord=(2, 4),
        chord_size=4,
        tonic_midi=(36, 43),
        drums=(None, None, "ambient_pulse", None, None),
        bass=("drone",),
        chords=("pad_sustain", "pad_sustain", "epiano_sustain"),
        lead=("bell", None, "bell", "bell", None),
        swing=(0.0, 0.0),
        kit=DrumKit(kick_start_hz=90, kick_end_hz=45, kick_decay_s=0.35, kick_click=0.0, kit_lowpass_hz=3000),
        timbre=Timbre(brightness=0.8, detune_cents=10, pad_attack_s=1.8, reverb_wet=0.45, reverb_s=3.5),
        levels_db={"drums": -10, "bass": -6, "chords": 0, "lead": -5},
    ),
    # Four-on-the-floor, offbeat hats, resonant saw bass with slow filter sweeps, stabs.
    "neon-techno": GenreStyle(
        artists=("Kilowatt Saints", "Grid Runner", "Chrome Pulse", "Unit Eightyeight", "Static Bloom"),
        tempo_bpm=(122.0, 136.0),
        scales=("minor", "phrygian", "dorian"),
        progressions=((0,), (0, 0, 5, 5), (0, 0, 0, 6), (0, 3)),
        bars_per_chord=(2, 4),
        chord_size=3,
        tonic_midi=(33, 40),
        drums=("four_floor", "four_floor_minimal", "four_floor", "four_floor_rolling", "four_floor"),
        bass=("acid_offbeat", "acid_rolling", "saw_offbeat"),
        chords=("stab_offbeat", "pad_dark", "stab_syncopated", "stab_offbeat"),
        lead=(None, "bleep", None, None, "bleep"),
        swing=(0.0, 0.05),
        kit=DrumKit(kick_start_hz=160, kick_end_hz=48, kick_decay_s=0.35, kick_click=0.35, kick_drive=1.6,
                    hat_decay_s=0.04),
        timbre=Timbre(brightness=1.0, detune_cents=12, reverb_wet=0.12, reverb_s=1.2),
        levels_db={"drums": 0, "bass": -3, "chords": -7, "lead": -9},
    ),
    # Swung boom-bap at 82-96 bpm, lowpassed drums, electric piano sevenths, vinyl crackle;
    # one artist loops plucked guitar, like marsh-folk.
    "dusty-hop": GenreStyle(
        artists=("Dusty Fingers", "Sleepy Sampler", "Crate Monk", "Lo Tide", "Brother Boombap"),
        tempo_bpm=(82.0, 96.0),
        scales=("dorian", "minor", "major"),
        progressions=((1, 4, 0, 0), (0, 5, 1, 4), (0, 3), (5, 4, 0, 0)),
        bars_per_chord=(1, 2),
        chord_size=4,
        tonic_midi=(33, 41),
        drums=("boom_bap", "boom_bap_lazy", "boom_bap", "boom_bap_lazy", "boom_bap"),
        bass=("on_kicks",),
        chords=("epiano_comp", "epiano_sustain", "guitar_arpeggio", "epiano_comp", "epiano_sustain"),
        lead=(None, "flute", None, None, "flute"),
        swing=(0.12, 0.3),
        kit=DrumKit(kick_start_hz=120, kick_end_hz=50, kick_decay_s=0.28, kick_click=0.1, snare_decay_s=0.18,
                    snare_noise_hz=6000, hat_decay_s=0.05, kit_lowpass_hz=6000),
        timbre=Timbre(brightness=0.7, detune_cents=5, reverb_wet=0.12, reverb_s=1.0, crackle=0.6,
                      hiss_db=-36, master_lowpass_hz=7500),
        levels_db={"drums": 0, "bass": -3, "chords": -4, "lead": -8},
    ),
    # Karplus-Strong guitar (arpeggios or strums), plucked upright bass, fiddle melodies;
    # some artists add a soft hand drum or a brushed backbeat close to dusty-hop's tempo.
    "marsh-folk": GenreStyle(
        artists=("The Reed Cutters", "Willow and Peat", "Ferrymans Daughter", "Heron Lane", "Old Bog Choir"),
        tempo_bpm=(88.0, 124.0),
        scales=("major", "mixolydian", "minor"),
        progressions=((0, 3, 4, 0), (0, 4, 5, 3), (0, 0, 3, 4), (5, 3, 0, 4)),
        bars_per_chord=(1, 2),
        chord_size=3,
        tonic_midi=(36, 43),
        drums=(None, "folk_hand", None, "folk_backbeat", None),
        bass=("root_fifth", "root_fifth", "none"),
        chords=("guitar_arpeggio", "guitar_strum", "guitar_strum", "guitar_arpeggio"),
        lead=("fiddle", None, "fiddle", "flute", None),
        swing=(0.0, 0.12),
        kit=DrumKit(kick_start_hz=110, kick_end_hz=60, kick_decay_s=0.2, kick_click=0.05, snare_decay_s=0.12,
                    snare_noise_hz=5000, hat_decay_s=0.06, kit_lowpass_hz=9000),
        timbre=Timbre(brightness=1.0, detune_cents=4, reverb_wet=0.22, reverb_s=1.8, hiss_db=-40),
        levels_db={"drums": -6, "bass": -5, "chords": 0, "lead": -4},
    ),
    # Fast, distorted: double kick, crashes, palm-muted power-chord chugs, distorted bass;
    # one "industrial" artist plays four-on-the-floor near techno tempo.
    "lava-metal": GenreStyle(
        artists=("Magmawolf", "Obsidian Throne", "Caldera", "Pyroclast", "Ashen Maw"),
        tempo_bpm=(140.0, 196.0),
        scales=("phrygian", "minor"),
        progressions=((0, 0, 1, 0), (0, 5, 6, 0), (0, 3, 1, 0), (0, 6, 5, 1)),
        bars_per_chord=(1, 2),
        chord_size=3,
        tonic_midi=(28, 35),
        drums=("double_kick", "blast", "halftime_metal", "industrial", "double_kick"),
        bass=("chug",),
        chords=("power_chug", "power_gallop", "power_chug", "power_gallop"),
        lead=(None, None, "shred", None, "shred"),
        swing=(0.0, 0.0),
        kit=DrumKit(kick_start_hz=180, kick_end_hz=60, kick_decay_s=0.12, kick_click=0.8, snare_tone_hz=220,
                    snare_decay_s=0.14, snare_noise_hz=9000, hat_decay_s=0.05),
        timbre=Timbre(brightness=1.0, detune_cents=10, drive=6.0, reverb_wet=0.1, reverb_s=1.2, hiss_db=-38),
        levels_db={"drums": 0, "bass": -6, "chords": -1, "lead": -7},
        borrows=("drums", "lead"),  # without its distorted guitars it would not be metal
    ),
    # Syncopated kick, ghost-note snare, 16th hats, slap bass with octave pops, clav chanks;
    # one "disco" artist uses four-on-the-floor like techno.
    "bubble-funk": GenreStyle(
        artists=("The Fizz Brothers", "Soda Syndicate", "Lady Effervescence", "Popcorn Deluxe", "Bubblegum Orchestra"),
        tempo_bpm=(96.0, 118.0),
        scales=("dorian", "mixolydian", "minor"),
        progressions=((0, 3), (0,), (0, 0, 3, 4), (1, 4)),
        bars_per_chord=(1, 2),
        chord_size=4,
        tonic_midi=(33, 40),
        drums=("funk", "funk_tight", "disco", "funk", "funk_tight"),
        bass=("slap", "slap", "octave_disco"),
        chords=("clav_chank", "brass_stab", "clav_chank", "epiano_comp"),
        lead=(None, "synth_lead", None, None, "synth_lead"),
        swing=(0.0, 0.1),
        kit=DrumKit(kick_start_hz=130, kick_end_hz=55, kick_decay_s=0.22, kick_click=0.3, snare_tone_hz=200,
                    snare_decay_s=0.13, snare_noise_hz=7000, hat_decay_s=0.035),
        timbre=Timbre(brightness=1.1, detune_cents=6, reverb_wet=0.1, reverb_s=1.0, hiss_db=-42),
        levels_db={"drums": 0, "bass": -2, "chords": -5, "lead": -7},
    ),
}

GENRES: tuple[str, ...] = tuple(STYLES)

SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
}


@dataclass(frozen=True)
class DrumPattern:
    """Sixteen steps per voice: ``x`` accent, ``o`` normal, ``g`` ghost, ``.`` rest."""

    voices: dict[str, str]
    crash_every_bars: int = 0
    fill_every_bars: int = 8


DRUM_PATTERNS: dict[str, DrumPattern] = {
    "four_floor": DrumPattern({"kick": "x...x...x...x...", "clap": "....x.......x...",
                               "hat": "g.g.g.g.g.g.g.g.", "open_hat": "..o...o...o...o."}, crash_every_bars=16),
    "four_floor_minimal": DrumPattern({"kick": "x...x...x...x...", "hat": "..o...o...o...o.",
                                       "shaker": "gggggggggggggggg"}, fill_every_bars=0),
    "four_floor_rolling": DrumPattern({"kick": "x...x...x...x...", "clap": "....o.......o...",
                                       "hat": "gogogogogogogogo", "open_hat": "..g...g...g...g."}),
    "boom_bap": DrumPattern({"kick": "x......o..x.....", "snare": "....x.......x...",
                             "hat": "o.g.o.g.o.g.o.g."}),
    "boom_bap_lazy": DrumPattern({"kick": "x..o......x..g..", "snare": "....x.......x..g",
                                  "hat": "o.o.o.o.o.o.o.o."}),
    "double_kick": DrumPattern({"kick": "oooooooooooooooo", "snare": "....x.......x...",
                                "hat": "o.o.o.o.o.o.o.o."}, crash_every_bars=4, fill_every_bars=4),
    "blast": DrumPattern({"kick": "o.o.o.o.o.o.o.o.", "snare": ".o.o.o.o.o.o.o.o",
                          "hat": "o.o.o.o.o.o.o.o."}, crash_every_bars=2, fill_every_bars=8),
    "halftime_metal": DrumPattern({"kick": "x.oo..o.x.oo..o.", "snare": "........x.......",
                                   "open_hat": "o...o...o...o..."}, crash_every_bars=4, fill_every_bars=4),
    "industrial": DrumPattern({"kick": "x...x...x...x...", "snare": "....x.......x...",
                               "hat": "gogogogogogogogo"}, crash_every_bars=8),
    "funk": DrumPattern({"kick": "x..o..o...x..o..", "snare": "....x..g.g..x..g",
                         "hat": "xgogxgogxgogxgog", "open_hat": "..............o."}),
    "funk_tight": DrumPattern({"kick": "x.o...o.o.x.....", "snare": "....x.g.....x.g.",
                               "hat": "ogogogogogogogog"}),
    "disco": DrumPattern({"kick": "x...x...x...x...", "snare": "....x.......x...",
                          "hat": "gogogogogogogogo", "open_hat": "..o...o...o...o."}, crash_every_bars=8),
    "ambient_pulse": DrumPattern({"kick": "o.......g.......", "hat": "........g......."}, fill_every_bars=0),
    "folk_hand": DrumPattern({"hand": "x.....o.x.....o.", "shaker": "g.o.g.o.g.o.g.o."}, fill_every_bars=0),
    "folk_backbeat": DrumPattern({"kick": "o.......o.......", "snare": "....g.......g...",
                                  "shaker": "g.o.g.o.g.o.g.o."}, fill_every_bars=0),
}
STEP_VELOCITY = {"x": 1.0, "o": 0.7, "g": 0.35}

# Slap-bass lines: R root, O octave pop, F fifth, S flat seventh, g dead (ghost) note.
SLAP_LINES = ("R..O.R.gR..O.gSO", "R.gRO..gR.gFO.g.", "R..gR.O.g.R.O.FS")

ARTIST_TEMPO_SPREAD = 0.12  # artist-to-song tempo wobble, as a share of the tempo range
# Genres that lend each other parts: an artist (ARTIST_BORROW_CHANCE) or a single song
# (SONG_BORROW_CHANCE) takes its drums, chords or lead from a neighbour. Together with
# the crossover options in STYLES this is what keeps classification from being trivial.
GENRE_NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "drift-ambient": ("marsh-folk", "dusty-hop"),
    "neon-techno": ("bubble-funk", "lava-metal", "drift-ambient"),
    "dusty-hop": ("bubble-funk", "marsh-folk", "drift-ambient"),
    "marsh-folk": ("drift-ambient", "dusty-hop"),
    "lava-metal": ("neon-techno", "marsh-folk"),
    "bubble-funk": ("dusty-hop", "neon-techno"),
}
ARTIST_BORROW_CHANCE = 0.4
SONG_BORROW_CHANCE = 0.2
# Any song may sound like a worn vinyl rip or a cheap recording, whatever its genre.
LOFI_CHANCE = 0.15
# Crossover patterns keep their own tempo, inside the genre's range but next to a neighbour:
# industrial metal sits just above techno, disco funk just below it.
PATTERN_TEMPO_BPM = {"industrial": (140.0, 150.0), "disco": (110.0, 118.0)}


def artist_profile(genre: str, artist: str) -> ArtistProfile:
    """The fixed preset of one artist: a pure function of the two names."""
    style = _style(genre)
    if artist not in style.artists:
        raise ValueError(f"{artist!r} is not an artist of {genre!r}")
    index = style.artists.index(artist)
    rng = _named_rng(f"{genre}/{artist}")
    drums = style.drums[index % len(style.drums)]
    low, high = PATTERN_TEMPO_BPM.get(drums or "", style.tempo_bpm)
    # Each artist gets its own slice of the range, so a genre's artists spread over all of it.
    slot = _named_rng(genre).permutation(len(style.artists))[index] if drums not in PATTERN_TEMPO_BPM else 0
    slots = len(style.artists) if drums not in PATTERN_TEMPO_BPM else 1
    centre = low + (slot + rng.uniform(0.2, 0.8)) / slots * (high - low)
    profile = ArtistProfile(
        genre=genre,
        name=artist,
        tempo_range=(low, high),
        tempo_bpm=float(centre),
        scale=style.scales[index % len(style.scales)],
        drums=drums,
        bass=style.bass[index % len(style.bass)],
        chords=style.chords[index % len(style.chords)],
        lead=style.lead[index % len(style.lead)],
        swing=float(rng.uniform(*style.swing)),
        kit=_jitter_floats(style.kit, rng, spread=0.3),
        timbre=_jitter_floats(style.timbre, rng, spread=0.35),
    )
    return borrow_part(profile, rng) if rng.random() < ARTIST_BORROW_CHANCE else profile


def borrow_part(profile: ArtistProfile, rng: np.random.Generator) -> ArtistProfile:
    """Swap one part (drums, chords or lead) for a neighbouring genre's, as real bands do."""
    neighbours = GENRE_NEIGHBOURS[profile.genre]
    neighbour = STYLES[neighbours[rng.integers(len(neighbours))]]
    borrowable = STYLES[profile.genre].borrows
    part = borrowable[rng.integers(len(borrowable))]
    options: tuple[str | None, ...] = getattr(neighbour, part)
    change: dict[str, Any] = {part: options[rng.integers(len(options))]}
    return dataclasses.replace(profile, **change)


def _style(genre: str) -> GenreStyle:
    try:
        return STYLES[genre]
    except KeyError:
        raise ValueError(f"unknown genre {genre!r}; expected one of {GENRES}") from None


def _named_rng(name: str) -> np.random.Generator:
    # crc32, not hash(): hash() of a str changes between processes.
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def _jitter_floats(preset: T, rng: np.random.Generator, spread: float) -> T:
    """Scale every float field by a log-uniform factor in [1/(1+spread), 1+spread]."""
    changes = {}
    for field in dataclasses.fields(preset):  # type: ignore[arg-type]
        value = getattr(preset, field.name)
        if isinstance(value, float) or isinstance(value, int) and not isinstance(value, bool):
            changes[field.name] = float(value) * math.exp(rng.uniform(-1.0, 1.0) * math.log1p(spread))
    return dataclasses.replace(preset, **changes)  # type: ignore[type-var]


# --------------------------------------------------------------------------------------
# Plan: every song decided before any audio exists
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSong:
    genre: str
    artist: str
    title: str
    seed: int
    duration_s: float
    tempo_bpm: float
    sample_rate: int  # 22050 or 44100
    channels: int  # 1 or 2
    relative_path: str  # "<genre>/<artist> - <title>.mp3"

    @property
    def frames(self) -> int:
        return int(round(self.duration_s * self.sample_rate))


TITLE_WORDS = (
    ("Velvet", "Hollow", "Silver", "Broken", "Quiet", "Electric", "Golden", "Crooked", "Paper",
     "Midnight", "Rusty", "Burning", "Distant", "Sunken", "Glass", "Wild", "Little", "Endless"),
    ("Lanterns", "Harbour", "Engine", "Orchard", "Signal", "Meadow", "Circuit", "River", "Furnace",
     "Window", "Comet", "Ladder", "Garden", "Mirror", "Station", "Tide", "Kettle", "Horizon"),
)


def plan_catalogue(
    n_songs: int,
    seed: int = 0,
    min_duration_s: float = 20.0,
    max_duration_s: float = 60.0,
    source_format: tuple[int, int] | None = None,
) -> list[SynthSong]:
    """Decide every song of a catalogue; same arguments, same plan.

    Genres are dealt round-robin (balanced to within one song), artists round-robin inside
    each genre, so every artist of a genre gets songs before any gets a second one. Files are
    a mix of 22.05/44.1 kHz and mono/stereo, or all ``source_format`` (sample rate, channels)
    when given (benchmarks: real catalogues are 44.1 kHz stereo).
    """
    if n_songs < 1:
        raise ValueError(f"n_songs must be at least 1, got {n_songs}")
    if not 0 < min_duration_s <= max_duration_s:
        raise ValueError(f"need 0 < min_duration_s <= max_duration_s, got {min_duration_s}, {max_duration_s}")
    rng = np.random.default_rng(seed)
    sample_rates = _shuffled_shares(rng, n_songs, SHARE_HIGH_RATE, SAMPLE_RATES[1], SAMPLE_RATES[0])
    channel_counts = _shuffled_shares(rng, n_songs, SHARE_STEREO, 2, 1)
    if source_format is not None:
        sample_rates, channel_counts = [source_format[0]] * n_songs, [source_format[1]] * n_songs
    # Each genre's artists start at a seed-dependent offset so small catalogues differ by seed.
    artist_offsets = {genre: int(rng.integers(len(STYLES[genre].artists))) for genre in GENRES}
    used_paths: set[str] = set()
    songs = []
    for index in range(n_songs):
        genre = GENRES[index % len(GENRES)]
        artists = STYLES[genre].artists
        artist = artists[(artist_offsets[genre] + index // len(GENRES)) % len(artists)]
        profile = artist_profile(genre, artist)
        title = _unique_title(rng, genre, artist, used_paths)
        songs.append(
            SynthSong(
                genre=genre,
                artist=artist,
                title=title,
                seed=int(rng.integers(2**31)),
                duration_s=round(float(rng.uniform(min_duration_s, max_duration_s)), 2),
                tempo_bpm=_song_tempo(rng, profile),
                sample_rate=sample_rates[index],
                channels=channel_counts[index],
                relative_path=f"{genre}/{artist} - {title}.mp3",
            )
        )
    return songs


def _shuffled_shares(rng: np.random.Generator, n: int, share: float, value: int, other: int) -> list[int]:
    """``value`` for about ``share`` of n items (at least one of each when n >= 2), shuffled."""
    n_value = int(round(share * n))
    if n >= 2:
        n_value = min(max(n_value, 1), n - 1)
    values = [value] * n_value + [other] * (n - n_value)
    return [int(v) for v in rng.permutation(values)]


def _song_tempo(rng: np.random.Generator, profile: ArtistProfile) -> float:
    low, high = profile.tempo_range
    tempo = profile.tempo_bpm + rng.normal(0.0, ARTIST_TEMPO_SPREAD * (high - low))
    return round(float(np.clip(tempo, low, high)), 1)


def _unique_title(rng: np.random.Generator, genre: str, artist: str, used_paths: set[str]) -> str:
    adjectives, nouns = TITLE_WORDS
    base = f"{adjectives[rng.integers(len(adjectives))]} {nouns[rng.integers(len(nouns))]}"
    title, number = base, 2
    while f"{genre}/{artist} - {title}.mp3" in used_paths:
        title, number = f"{base} {number}", number + 1
    used_paths.add(f"{genre}/{artist} - {title}.mp3")
    return title


# --------------------------------------------------------------------------------------
# Arrangement: pure functions from a song to bars, harmony and notes
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Mixing and mastering
# --------------------------------------------------------------------------------------

STEM_PANS = {"drums": 0.0, "bass": 0.0, "chords": -0.3, "lead": 0.3, "texture": 0.0}
# Share of each stem sent to the room.
REVERB_SENDS = {"drums": 0.3, "bass": 0.0, "chords": 1.0, "lead": 1.0, "texture": 0.0}


def render_song(song: SynthSong) -> np.ndarray:
    """Synthesise one song: float32, (frames,) for mono or (frames, 2) for stereo.

    A pure function of ``song`` (its seed, genre, artist, tempo, length and format).
    """
    if song.sample_rate % RENDER_RATE != 0:
        raise ValueError(f"sample_rate must be a multiple of {RENDER_RATE}, got {song.sample_rate}")
    rng = np.random.default_rng(song.seed)
    profile = artist_profile(song.genre, song.artist)
    if rng.random() < SONG_BORROW_CHANCE:
        profile = borrow_part(profile, rng)
    kit = _jitter_floats(profile.kit, rng, spread=0.06)
    timbre = _recording(_jitter_floats(profile.timbre, rng, spread=0.15), rng)
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
    stems = _balance(stems, _style(song.genre).levels_db, rng)
    music_rms = _rms(np.sum(list(stems.values()), axis=0))
    stems["texture"] = _crackle(n_frames, RENDER_RATE, timbre.crackle, rng) * music_rms
    mix = _mix_and_master(stems, song.channels, song.sample_rate, song.frames, timbre, rng)
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
             rng: np.random.Generator) -> dict[str, FloatArray]:
    """Each stem to its genre level (RMS-referenced) plus a per-song wobble of a few dB."""
    balanced = {}
    for name, stem in stems.items():
        rms = _rms(stem)
        if rms == 0.0:
            balanced[name] = stem
            continue
        level_db = levels_db[name] + rng.normal(0.0, 3.5)
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
                    timbre: Timbre, rng: np.random.Generator) -> FloatArray:
    """Pan, room, master filters, upsampling and noise floor in one trip through the spectrum.

    ``stems`` are mono at ``RENDER_RATE``. The room is one impulse response; in stereo the
    right channel hears it a few milliseconds later, which is enough to widen it. Upsampling
    to ``out_rate`` is zero-padding of the spectrum; the noise floor is added at ``out_rate``
    so 44.1 kHz files have content in their top octave. Returns (out_frames,) for mono or
    (out_frames, 2) for stereo, faded in and out and scaled to a random peak.
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
    spectrum *= _butterworth(freqs, lowpass_hz=timbre.master_lowpass_hz, highpass_hz=float(rng.uniform(20, 60)),
                             order=1)[:, None]

    ratio = out_rate // RENDER_RATE
    out_size = size * ratio
    out_spectrum = np.zeros((out_size // 2 + 1, channels), dtype=np.complex128)
    out_spectrum[: spectrum.shape[0]] = spectrum * ratio
    noise_rms = _rms(dry) * 10 ** (timbre.hiss_db / 20)
    out_spectrum += _noise_spectrum(out_spectrum.shape, out_size, out_rate, rng) * noise_rms
    out = np.fft.irfft(out_spectrum, n=out_size, axis=0)[:out_frames]

    fade_in = np.minimum(np.arange(out_frames) / (0.05 * out_rate), 1.0)
    fade_out = np.minimum((out_frames - np.arange(out_frames)) / (1.5 * out_rate), 1.0)
    out *= (fade_in * fade_out)[:, None]
    out = _normalise_peak(out) * rng.uniform(*PEAK_RANGE)
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


# --------------------------------------------------------------------------------------
# Writing the catalogue
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueSummary:
    root: str  # absolute path of the catalogue folder
    songs: int  # songs written (all listed in labels.csv)
    genres: tuple[str, ...]  # genres that have at least one song
    broken_files: tuple[str, ...]  # undecodable files, relative to root, not in labels.csv
    labels_csv: str  # absolute path of labels.csv


def write_catalogue(
    out_dir: str | os.PathLike[str],
    n_songs: int = 120,
    seed: int = 0,
    *,
    min_duration_s: float = 20.0,
    max_duration_s: float = 60.0,
    processes: int | None = None,
    with_broken_file: bool = True,
    source_format: tuple[int, int] | None = None,
) -> CatalogueSummary:
    """Render, encode and tag a demo catalogue under ``out_dir``; rerunning overwrites it.

    Files written: ``<genre>/<artist> - <title>.mp3`` per planned song (ID3 title, artist
    and genre tags), ``labels.csv`` (``path,genre,artist,split``, paths relative to ``out_dir``,
    the split from ``curated_split``)
    and, if ``with_broken_file``, ``<first genre>/corrupted-upload.mp3`` that no decoder can
    read. Files not in the plan are left alone.
    """
    started = time.perf_counter()
    root = Path(out_dir).resolve()
    songs = plan_catalogue(n_songs, seed, min_duration_s, max_duration_s, source_format)
    for genre in {song.genre for song in songs} | ({GENRES[0]} if with_broken_file else set()):
        (root / genre).mkdir(parents=True, exist_ok=True)
    # Longest encodes first so the pool does not finish on one long straggler.
    jobs = sorted(((str(root), song) for song in songs), key=lambda job: -_encode_cost(job[1]))
    workers = min(processes or os.cpu_count() or 1, len(jobs))
    logger.info("writing %d songs to %s with %d processes", len(songs), root, workers)
    # A bar on a terminal; none in logs and CI (disable=None: off when stderr is no tty).
    with tqdm(total=len(jobs), desc="synth", unit="song", disable=None) as bar:
        if workers <= 1:
            for job in jobs:
                _write_song_job(job)
                bar.update()
        else:
            with _process_context().Pool(workers) as pool:
                for _ in pool.imap_unordered(_write_song_job, jobs, chunksize=1):
                    bar.update()
    labels_csv = _write_labels(root, songs)
    broken = (_write_broken_file(root / GENRES[0] / BROKEN_FILE_NAME, seed),) if with_broken_file else ()
    logger.info("wrote %d songs to %s in %.1f s with %d processes", len(songs), root,
                time.perf_counter() - started, workers)
    return CatalogueSummary(
        root=str(root),
        songs=len(songs),
        genres=tuple(genre for genre in GENRES if any(song.genre == genre for song in songs)),
        broken_files=tuple(path.relative_to(root).as_posix() for path in broken),
        labels_csv=str(labels_csv),
    )


def _process_context() -> multiprocessing.context.BaseContext:
    """fork when it is safe (Linux, no other Python threads), spawn otherwise.

    fork starts at once and works from scripts without an ``if __name__ == "__main__"``
    guard; but a caller holding threads (Ray, torch, a notebook kernel) would fork copies of
    locks held by those threads, so then spawn (which needs the guard in scripts).
    """
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _encode_cost(song: SynthSong) -> float:
    return song.duration_s * song.sample_rate * song.channels


def _write_song_job(job: tuple[str, SynthSong]) -> str:
    root, song = job
    try:
        write_song(song, Path(root) / song.relative_path)
    except Exception as error:
        # Re-raised by name with the file in the message: pool tracebacks lose the context.
        raise CatalogueWriteError(f"could not write {song.relative_path}: {error!r}") from error
    return song.relative_path


def write_song(song: SynthSong, path: Path) -> None:
    """Render, encode to MP3 and tag one song; the file appears complete or not at all."""
    audio = render_song(song)
    partial = path.with_name(f".{path.name}.partial")
    sf.write(partial, audio, song.sample_rate, format="MP3")
    tags = ID3()
    tags.add(TIT2(encoding=3, text=song.title))
    tags.add(TPE1(encoding=3, text=song.artist))
    tags.add(TCON(encoding=3, text=song.genre))
    tags.add(TALB(encoding=3, text=f"{song.artist} demo"))
    tags.add(COMM(encoding=3, lang="eng", desc="genre_batch.synth", text=f"seed={song.seed}"))
    tags.save(partial)
    os.replace(partial, path)


def curated_split(songs: Sequence[SynthSong]) -> dict[str, str]:
    """Artist -> split, the way research datasets ship one (GTZAN's artist-filtered split):
    artist-disjoint, and every genre on every side. Per genre, in plan order: the first artist
    to test, the second to valid, the rest to train; a genre of two artists gets test and
    train, of one, train.

    The hash split (``genre_batch.splits``) is blind to genre: with five artists a genre it
    left 4 of the demo's 12 genre x {valid, test} cells empty at seed 0 (2 to 8 over seeds
    0-5), so the demo could not report those genres' accuracy.
    """
    artists: dict[str, list[str]] = {}
    for song in songs:
        names = artists.setdefault(song.genre, [])
        if song.artist not in names:
            names.append(song.artist)
    split: dict[str, str] = {}
    for names in artists.values():
        sides = {1: ["train"], 2: ["test", "train"]}.get(len(names), ["test", "valid"] + ["train"] * (len(names) - 2))
        for name, side in zip(names, sides):
            split.setdefault(name, side)  # an artist in two genres keeps one side
    return split


def _write_labels(root: Path, songs: list[SynthSong]) -> Path:
    path = root / LABELS_FILE_NAME
    partial = path.with_name(f".{path.name}.partial")
    split = curated_split(songs)
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "genre", "artist", "split"])
        for song in songs:
            writer.writerow([song.relative_path, song.genre, song.artist, split[song.artist]])
    os.replace(partial, path)
    return path


def _write_broken_file(path: Path, seed: int) -> Path:
    """An ID3v2 header followed by bytes that can never hold an MPEG frame sync.

    Random bytes would do, except that 0xFF followed by 0xE0+ looks like a frame header and
    forgiving decoders resynchronise on it; leaving out 0xFF makes the file undecodable.
    """
    rng = np.random.default_rng([seed, 0xBAD])
    id3_header = b"ID3\x03\x00\x00" + bytes([0, 0, 0, 0])  # v2.3, no flags, empty tag
    garbage = rng.integers(0, 0xFF, 8192, dtype=np.uint8).tobytes()
    path.write_bytes(id3_header + garbage)
    return path
