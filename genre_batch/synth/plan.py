"""Plan: every song decided before any audio exists (``plan_catalogue``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genre_batch.synth.styles import (
    ARTIST_TEMPO_SPREAD,
    GENRES,
    ArtistProfile,
    Difficulty,
    _difficulty,
    artist_profile,
    genre_artists,
)

SAMPLE_RATES = (22_050, 44_100)
# Shares of the catalogue written at 44.1 kHz / in stereo, so that readers must resample
# and down-mix; assigned by shuffling, independently of the genre (no format leak).
SHARE_HIGH_RATE = 0.25
SHARE_STEREO = 0.3


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
    difficulty: Difficulty = "normal"  # "hard": see genre_batch.synth.styles (HARD_ARTISTS, ...)

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
    difficulty: Difficulty = "normal",
) -> list[SynthSong]:
    """Decide every song of a catalogue; same arguments, same plan.

    Genres are dealt round-robin (balanced to within one song), artists round-robin inside
    each genre, so every artist of a genre gets songs before any gets a second one. Files are
    a mix of 22.05/44.1 kHz and mono/stereo, or all ``source_format`` (sample rate, channels)
    when given (benchmarks: real catalogues are 44.1 kHz stereo).

    ``difficulty="hard"`` deals the songs among twice as many artists a genre
    (``genre_artists``), so each has half as many songs, and marks every song hard, which
    ``render_song`` reads; a normal plan is what it was before difficulties existed.
    """
    difficulty = _difficulty(difficulty)
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
    artists_of = {genre: genre_artists(genre, difficulty) for genre in GENRES}
    artist_offsets = {genre: int(rng.integers(len(artists_of[genre]))) for genre in GENRES}
    used_paths: set[str] = set()
    songs = []
    for index in range(n_songs):
        genre = GENRES[index % len(GENRES)]
        artists = artists_of[genre]
        artist = artists[(artist_offsets[genre] + index // len(GENRES)) % len(artists)]
        profile = artist_profile(genre, artist, difficulty)
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
                difficulty=difficulty,
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
