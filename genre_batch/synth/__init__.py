"""Deterministic demo catalogue: real MP3 files in six made-up genres, synthesised with numpy.

Nothing is downloaded: every sound (drums, bass, chords, leads, vinyl crackle, room reverb)
is made here from oscillators, noise, FFT filters and Karplus-Strong strings.

Layers, top to bottom, one module each (a module imports only the layers above it):

* **styles** (``styles``) -- what makes a genre (tempo range, drum patterns, bass and chord
  parts, instruments, mix) and an artist (one fixed preset drawn inside the genre, often
  borrowing a trait from a neighbouring genre so that genres overlap the way real ones do);
* **plan** (``plan``) -- ``plan_catalogue`` decides every song (genre, artist, tempo,
  length, format) before any audio exists;
* **arrangement** (``arrangement``) -- pure functions from a song to a ``SongForm`` and
  lists of ``Note``;
* **synthesis** (``instruments``, then ``mixing``) -- DSP building blocks and instruments
  turn notes into samples (``render_notes``); ``render_song`` mixes and masters the parts;
* **writing** (``writing``) -- ``write_catalogue`` encodes MP3s, tags them (ID3) and writes
  ``labels.csv`` plus one deliberately undecodable upload. It writes the songs one after
  another unless it is given another way (``write_songs``); the ``synth`` command's process
  pool and progress bar live in ``genre_batch.commands`` (``write_demo_catalogue``).

Songs by one artist share a preset (drum kit, timbre, tempo centre, parts), so splitting by
artist gives an honest test. Everything is a pure function of ``SynthSong.seed`` and of the
genre and artist names (and of the difficulty).

**Difficulty** (``plan_catalogue(..., difficulty=...)``, ``write_catalogue``, ``genre-batch
synth --difficulty``). ``"normal"`` (the default) is the demo's catalogue, byte for byte what
it always was: on it every model, and the MFCC baseline, reaches ~0.7-0.96 song accuracy.
``"hard"`` (GitHub issue #14) keeps the six genres and changes one thing in each layer:

* styles: ten artists a genre (``genre_artists``, ``HARD_ARTISTS``), so a catalogue of the same
  size has half as many songs an artist; each artist's parts are drawn from the genre's
  options, and its kit and timbre jittered further (``HARD_PRESET_SPREAD``). The genres come
  in twin pairs (``GENRE_PAIRS``: ambient/folk, hop/funk, techno/metal) that share one tempo
  range (``HARD_TEMPO_BPM``); an artist's kit, timbre and stem levels lie somewhere between
  its genre's and its twin's (``HARD_TWIN_BLEND``), and most artists borrow one to three
  parts, bass included, mostly from the twin (``borrow_part``): neither tempo nor
  instruments alone tell a twin from the other. Every artist has a recording chain
  (``Recording``: noise floor, band limit, room, clipping, gain) drawn independently of the
  genre;
* plan: the songs are dealt among those artists; each ``SynthSong`` carries its difficulty;
* synthesis (``render_song``): songs borrow more often, stem levels wobble more, and the
  master goes through the artist's recording chain, jittered per song; rendering costs the
  same per second of audio;
* writing: ``labels.csv`` and ``curated_split`` as for normal (a fifth of a genre's artists
  to test and as many to valid: two of each of the ten), and ``difficulty=hard`` in the
  ID3 comment.

On 120 songs (seed 0, default lengths, curated split) the MFCC baseline (``genre-batch
baseline``) scores 0.500 on valid and 0.500 on test (normal: 0.958 and 0.708): hard, and
still well above chance (1/6).
"""

from __future__ import annotations

from genre_batch.synth.arrangement import (
    STEPS_PER_BAR,
    Note,
    SongForm,
    bass_notes,
    chord_notes,
    drum_hits,
    lead_notes,
    plan_form,
)
from genre_batch.synth.instruments import (
    FloatArray,
    Instrument,
    Voice,
    fft_filter,
    karplus_strong,
    midi_to_hz,
    place,
    render_notes,
    room_impulse,
)
from genre_batch.synth.mixing import RENDER_RATE, render_song
from genre_batch.synth.plan import SAMPLE_RATES, SynthSong, plan_catalogue
from genre_batch.synth.styles import (
    DIFFICULTIES,
    DRUM_PATTERNS,
    GENRE_NEIGHBOURS,
    GENRE_PAIRS,
    GENRE_TWINS,
    GENRES,
    HARD_ARTISTS,
    HARD_TEMPO_BPM,
    SCALES,
    STYLES,
    ArtistProfile,
    Difficulty,
    DrumKit,
    DrumPattern,
    GenreStyle,
    Recording,
    Timbre,
    artist_profile,
    borrow_part,
    genre_artists,
)
from genre_batch.synth.writing import (
    BROKEN_FILE_NAME,
    LABELS_FILE_NAME,
    CatalogueSummary,
    CatalogueWriteError,
    Job,
    SongWriter,
    curated_split,
    write_catalogue,
    write_song,
)

__all__ = [
    # styles
    "ArtistProfile",
    "DIFFICULTIES",
    "DRUM_PATTERNS",
    "Difficulty",
    "DrumKit",
    "DrumPattern",
    "GENRES",
    "GENRE_NEIGHBOURS",
    "GENRE_PAIRS",
    "GENRE_TWINS",
    "GenreStyle",
    "HARD_ARTISTS",
    "HARD_TEMPO_BPM",
    "Recording",
    "SCALES",
    "STYLES",
    "Timbre",
    "artist_profile",
    "borrow_part",
    "genre_artists",
    # plan
    "SAMPLE_RATES",
    "SynthSong",
    "plan_catalogue",
    # arrangement
    "Note",
    "STEPS_PER_BAR",
    "SongForm",
    "bass_notes",
    "chord_notes",
    "drum_hits",
    "lead_notes",
    "plan_form",
    # synthesis
    "FloatArray",
    "Instrument",
    "RENDER_RATE",
    "Voice",
    "fft_filter",
    "karplus_strong",
    "midi_to_hz",
    "place",
    "render_notes",
    "render_song",
    "room_impulse",
    # writing
    "BROKEN_FILE_NAME",
    "CatalogueSummary",
    "CatalogueWriteError",
    "Job",
    "LABELS_FILE_NAME",
    "SongWriter",
    "curated_split",
    "write_catalogue",
    "write_song",
]
