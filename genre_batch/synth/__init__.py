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
genre and artist names.
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
    DRUM_PATTERNS,
    GENRE_NEIGHBOURS,
    GENRES,
    SCALES,
    STYLES,
    ArtistProfile,
    DrumKit,
    DrumPattern,
    GenreStyle,
    Timbre,
    artist_profile,
    borrow_part,
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
    "DRUM_PATTERNS",
    "DrumKit",
    "DrumPattern",
    "GENRES",
    "GENRE_NEIGHBOURS",
    "GenreStyle",
    "SCALES",
    "STYLES",
    "Timbre",
    "artist_profile",
    "borrow_part",
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
