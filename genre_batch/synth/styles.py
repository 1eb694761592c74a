"""Styles: what a genre is, and what an artist inside it keeps from song to song.

The lowest layer of ``genre_batch.synth``: presets and tables only (no audio), and the
artist profile, a pure function of the genre and artist names (and of the catalogue's
difficulty: a ``"hard"`` catalogue has more artists a genre, presets drawn from a wider
spread, genre pairs that share a tempo range and lend each other parts, and a recording
chain per artist; see ``HARD_ARTISTS`` and what follows it).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

T = TypeVar("T")

# How hard a catalogue is to classify; "normal" is the demo's, unchanged since it was one module.
Difficulty = Literal["normal", "hard"]
DIFFICULTIES: tuple[Difficulty, ...] = ("normal", "hard")


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
class Recording:
    """How an artist's songs were recorded (hard catalogues): the chain after the mix.

    Drawn per artist independently of the genre (``HARD_RECORDING``), jittered per song.
    """

    hiss_db: float  # broadband noise floor relative to the mix RMS (replaces the timbre's)
    lowpass_hz: float  # band limit of a cheap microphone or a worn transfer
    highpass_hz: float  # small speakers and microphones lose the bass
    drive: float  # tanh pre-gain of the master (mild clipping); 0 = clean
    reverb_wet: float  # the room the song was recorded in (half of it, half the genre's)
    reverb_s: float
    crackle: float  # vinyl crackle level, whatever the genre; 0 = none
    peak: float  # final peak level (random gain)


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
    difficulty: Difficulty = "normal"
    recording: Recording | None = None  # hard catalogues only
    levels_db: dict[str, float] | None = None  # stem levels; None: the genre's (hard: part-way to the twin's)


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

# ---- hard catalogues (difficulty="hard"; GitHub issue #14) ----------------------------------
# More artists a genre (ten, not five: with the same number of songs, fewer songs an artist).
HARD_ARTISTS: dict[str, tuple[str, ...]] = {
    "drift-ambient": ("Glass Meridian", "Slow Lantern", "Vesper Fog", "Quiet Orbit", "Tundra Bloom"),
    "neon-techno": ("Voltage Choir", "Dataforge", "Mono Signal", "Night Relay", "Pixel Furnace"),
    "dusty-hop": ("Tape Saint", "Rainy Crates", "Vinyl Ghost", "Loop Deacon", "Mellow Static"),
    "marsh-folk": ("Bramble and Moss", "The Tidewalkers", "Cold Creek Sisters", "Peat Fire Band", "Lantern Reed"),
    "lava-metal": ("Basalt Oath", "Sulfur Crown", "Molten Vigil", "Cinderhorn", "Tephra"),
    "bubble-funk": ("The Carbonators", "Seltzer Kings", "Fizzy Lou", "Rootbeer Revue", "Sparkle Motion"),
}
# Twin genres: each pair shares one tempo range (so tempo does not tell them apart) and lends
# each other parts far more often than other neighbours do (so instruments do not either).
GENRE_PAIRS: tuple[tuple[str, str], ...] = (
    ("drift-ambient", "marsh-folk"),
    ("dusty-hop", "bubble-funk"),
    ("neon-techno", "lava-metal"),
)
GENRE_TWINS: dict[str, str] = {a: b for pair in GENRE_PAIRS for a, b in (pair, pair[::-1])}
HARD_PAIR_TEMPO_BPM: dict[tuple[str, str], tuple[float, float]] = {
    ("drift-ambient", "marsh-folk"): (70.0, 110.0),
    ("dusty-hop", "bubble-funk"): (84.0, 114.0),
    ("neon-techno", "lava-metal"): (124.0, 160.0),
}
HARD_TEMPO_BPM: dict[str, tuple[float, float]] = {
    genre: tempo for pair, tempo in HARD_PAIR_TEMPO_BPM.items() for genre in pair
}
HARD_PRESET_SPREAD = 0.55  # kit and timbre jitter of a hard artist (normal: 0.3 and 0.35)
# A hard artist's kit, timbre and stem levels lie between its genre's and its twin's: a
# weight drawn per artist from [0, HARD_TWIN_BLEND] (0 = the genre's own presets).
HARD_TWIN_BLEND = 1.0
HARD_ARTIST_BORROW_TRIES = 3
HARD_ARTIST_BORROW_CHANCE = 0.55  # each try; so 91 % of artists borrow at least once
HARD_SONG_BORROW_CHANCE = 0.45
HARD_TWIN_LENDS = 0.75  # share of hard borrowing that goes to the twin genre
# What a hard artist or song may borrow: what its genre may (``GenreStyle.borrows``), and the bass.
HARD_BORROWS: dict[str, tuple[str, ...]] = {
    genre: tuple(part for part in ("drums", "bass", "chords", "lead") if part == "bass" or part in style.borrows)
    for genre, style in STYLES.items()
}
HARD_BALANCE_DB = 5.0  # per-song stem level wobble (normal: 3.5 dB)
# The recording chain of a hard artist, drawn independently of the genre.
HARD_RECORDING: dict[str, tuple[float, float]] = {
    "hiss_db": (-36.0, -16.0),
    "lowpass_hz": (2500.0, 12000.0),
    "highpass_hz": (25.0, 350.0),
    "drive": (1.5, 4.0),
    "reverb_wet": (0.05, 0.6),
    "reverb_s": (0.6, 3.5),
    "crackle": (0.2, 0.8),
    "peak": (0.3, 0.9),
}
HARD_CLIP_CHANCE = 0.4
HARD_CRACKLE_CHANCE = 0.3


def genre_artists(genre: str, difficulty: Difficulty = "normal") -> tuple[str, ...]:
    """A genre's artists: ``STYLES[genre].artists``, followed by ``HARD_ARTISTS[genre]`` when hard."""
    style = _style(genre)
    return style.artists + HARD_ARTISTS[genre] if _difficulty(difficulty) == "hard" else style.artists


def artist_profile(genre: str, artist: str, difficulty: Difficulty = "normal") -> ArtistProfile:
    """The fixed preset of one artist: a pure function of the two names and the difficulty."""
    if _difficulty(difficulty) == "hard":
        return _hard_artist_profile(genre, artist)
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
    """Swap one part (drums, chords or lead) for a neighbouring genre's, as real bands do.

    In a hard catalogue the lender is the genre's twin (``GENRE_TWINS``) more often than not,
    and the bass may be lent too (``HARD_BORROWS``).
    """
    hard = profile.difficulty == "hard"
    if hard and rng.random() < HARD_TWIN_LENDS:
        neighbour = STYLES[GENRE_TWINS[profile.genre]]
    else:
        neighbours = GENRE_NEIGHBOURS[profile.genre]
        neighbour = STYLES[neighbours[rng.integers(len(neighbours))]]
    borrowable = HARD_BORROWS[profile.genre] if hard else STYLES[profile.genre].borrows
    part = borrowable[rng.integers(len(borrowable))]
    options: tuple[str | None, ...] = getattr(neighbour, part)
    change: dict[str, Any] = {part: options[rng.integers(len(options))]}
    return dataclasses.replace(profile, **change)


def _hard_artist_profile(genre: str, artist: str) -> ArtistProfile:
    """A hard catalogue's artist: parts drawn (not dealt) from the genre's options, a tempo
    centre in the pair's shared range, kit, timbre and stem levels moved part-way towards the
    twin genre's (``HARD_TWIN_BLEND``) and jittered further, a recording chain, and up to three
    parts borrowed (``HARD_ARTIST_BORROW_TRIES``), most often from the twin."""
    style, artists = _style(genre), genre_artists(genre, "hard")
    if artist not in artists:
        raise ValueError(f"{artist!r} is not an artist of {genre!r} (hard)")
    rng = _named_rng(f"hard/{genre}/{artist}")
    twin, blend = STYLES[GENRE_TWINS[genre]], float(rng.uniform(0.0, HARD_TWIN_BLEND))

    def pick(options: tuple[T, ...]) -> T:
        return options[int(rng.integers(len(options)))]

    low, high = HARD_TEMPO_BPM[genre]
    slot = _named_rng(f"hard/{genre}").permutation(len(artists))[artists.index(artist)]
    profile = ArtistProfile(
        genre=genre,
        name=artist,
        tempo_range=(low, high),
        tempo_bpm=float(low + (slot + rng.uniform(0.1, 0.9)) / len(artists) * (high - low)),
        scale=pick(style.scales),
        drums=pick(style.drums),
        bass=pick(style.bass),
        chords=pick(style.chords),
        lead=pick(style.lead),
        swing=float(rng.uniform(*style.swing)),
        kit=_jitter_floats(_blend(style.kit, twin.kit, blend), rng, spread=HARD_PRESET_SPREAD),
        timbre=_jitter_floats(_blend(style.timbre, twin.timbre, blend), rng, spread=HARD_PRESET_SPREAD),
        difficulty="hard",
        recording=_artist_recording(rng),
        levels_db={stem: (1 - blend) * level + blend * twin.levels_db[stem] for stem, level in style.levels_db.items()},
    )
    for _ in range(int(rng.binomial(HARD_ARTIST_BORROW_TRIES, HARD_ARTIST_BORROW_CHANCE))):
        profile = borrow_part(profile, rng)
    return profile


def _artist_recording(rng: np.random.Generator) -> Recording:
    """One artist's recording chain, drawn from ``HARD_RECORDING`` (log-uniform for Hz and s)."""
    spec = HARD_RECORDING

    def log_uniform(bounds: tuple[float, float]) -> float:
        return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))

    return Recording(
        hiss_db=float(rng.uniform(*spec["hiss_db"])),
        lowpass_hz=log_uniform(spec["lowpass_hz"]),
        highpass_hz=log_uniform(spec["highpass_hz"]),
        drive=float(rng.uniform(*spec["drive"])) if rng.random() < HARD_CLIP_CHANCE else 0.0,
        reverb_wet=float(rng.uniform(*spec["reverb_wet"])),
        reverb_s=log_uniform(spec["reverb_s"]),
        crackle=float(rng.uniform(*spec["crackle"])) if rng.random() < HARD_CRACKLE_CHANCE else 0.0,
        peak=float(rng.uniform(*spec["peak"])),
    )


def _blend(preset: T, other: T, weight: float) -> T:
    """Every float field moved ``weight`` of the way from ``preset`` to ``other`` (0: preset)."""
    changes = {field.name: (1 - weight) * getattr(preset, field.name) + weight * getattr(other, field.name)
               for field in dataclasses.fields(preset)}  # type: ignore[arg-type]
    return dataclasses.replace(preset, **changes)  # type: ignore[type-var]


def _difficulty(difficulty: str) -> Difficulty:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; expected one of {DIFFICULTIES}")
    return "hard" if difficulty == "hard" else "normal"


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
