"""Train/valid/test by hashing the artist (else the song): deterministic, proportional, leak-free."""

from __future__ import annotations

import collections
import random

import pytest

from genre_batch.catalogue import song_id_for
from genre_batch.config import SplitConfig
from genre_batch.splits import SPLITS, assign_split, normalise_artist, split_key, unit_interval

N_KEYS = 5000


def song_keys(n: int = N_KEYS) -> list[str]:
    return [split_key(song_id_for(f"genre{i % 7}/song-{i:05d}.mp3"), None) for i in range(n)]


def test_assignment_is_deterministic() -> None:
    config = SplitConfig()
    keys = song_keys(500)
    first = [assign_split(key, config) for key in keys]
    again = [assign_split(key, SplitConfig()) for key in reversed(keys)][::-1]
    assert first == again
    assert set(first) <= set(SPLITS)


def test_unit_interval_range_and_determinism() -> None:
    values = [unit_interval(key, seed=3) for key in song_keys(1000)]
    assert all(0.0 <= value < 1.0 for value in values)
    assert values == [unit_interval(key, seed=3) for key in song_keys(1000)]
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("config", [SplitConfig(), SplitConfig(train=0.5, valid=0.2, test=0.3, seed=7)])
def test_ratios_are_respected_over_many_keys(config: SplitConfig) -> None:
    counts = collections.Counter(assign_split(key, config) for key in song_keys())
    for split in SPLITS:
        assert counts[split] / N_KEYS == pytest.approx(getattr(config, split), abs=0.03)


def test_zero_ratio_split_gets_nothing() -> None:
    config = SplitConfig(train=0.8, valid=0.0, test=0.2)
    assert "valid" not in {assign_split(key, config) for key in song_keys(2000)}
    assert {assign_split(key, SplitConfig(train=1.0, valid=0.0, test=0.0)) for key in song_keys(500)} == {"train"}


def test_another_seed_reshuffles_assignments() -> None:
    keys = song_keys(2000)
    seed0 = [assign_split(key, SplitConfig(seed=0)) for key in keys]
    seed1 = [assign_split(key, SplitConfig(seed=1)) for key in keys]
    changed = sum(a != b for a, b in zip(seed0, seed1)) / len(keys)
    # Independent draws with 70/15/15 disagree 1 - (0.7² + 0.15² + 0.15²) ≈ 46.5% of the time.
    assert 0.38 < changed < 0.55


@pytest.mark.parametrize(
    "variant", ["The Band", "the band", "The Band ", "  THE   band", "The\tBand\n"]
)
def test_artist_names_normalise_to_one_key(variant: str) -> None:
    assert normalise_artist(variant) == "the band"
    assert split_key("song-a", variant) == split_key("song-b", "The Band") == "artist:the band"


@pytest.mark.parametrize("artist", [None, "", "   "])
def test_songs_without_artist_are_keyed_by_song_id(artist: str | None) -> None:
    assert split_key("abc123", artist) == "song:abc123"
    assert split_key("abc123", artist) != split_key("def456", artist)


def test_every_song_of_an_artist_gets_the_same_split() -> None:
    config = SplitConfig()
    artists = ["Miles Davis", "Nina Simone", "Metallica"]
    for artist in artists:
        splits = {
            assign_split(split_key(song_id_for(f"x/{artist}-{i}.mp3"), artist), config) for i in range(200)
        }
        assert len(splits) == 1


def test_no_artist_is_on_two_sides_of_a_fake_catalogue() -> None:
    rng = random.Random(0)
    artists = [f"Artist {i:02d}" for i in range(40)]
    spellings = [str, str.lower, str.upper, lambda name: f"  {name} ", lambda name: name.replace(" ", "  ")]
    catalogue = []
    for i in range(300):
        artist = artists[i % len(artists)]
        path = f"{rng.choice(['blues', 'jazz', 'rock'])}/{i:03d}.mp3"
        catalogue.append((song_id_for(path), rng.choice(spellings)(artist), artist))

    config = SplitConfig()
    sides: dict[str, set[str]] = collections.defaultdict(set)
    for song_id, spelled, artist in catalogue:
        sides[artist].add(assign_split(split_key(song_id, spelled), config))

    assert len(sides) == 40
    assert all(len(splits) == 1 for splits in sides.values()), {a: s for a, s in sides.items() if len(s) > 1}
    # A catalogue of 40 artists puts some of them on each side (a fixed, seeded outcome).
    assert {next(iter(splits)) for splits in sides.values()} == set(SPLITS)


@pytest.mark.parametrize(
    "ratios",
    [
        {"train": 0.7, "valid": 0.2, "test": 0.2},
        {"train": 0.5, "valid": 0.1, "test": 0.1},
        {"train": 1.2, "valid": -0.1, "test": -0.1},
    ],
)
def test_split_config_rejects_bad_ratios(ratios: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(**ratios)
