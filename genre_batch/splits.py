"""Train/valid/test assignment as a pure function of the artist (else the song).

Splitting *tiles* leaks songs into the test set; splitting songs still leaks an artist's
sound. Hashing the artist means every song of an artist lands on the same side, on every
machine and every run, with no state to keep.
"""

from __future__ import annotations

import hashlib
import re

from genre_batch.config import SplitConfig

SPLITS: tuple[str, ...] = ("train", "valid", "test")


def normalise_artist(artist: str) -> str:
    return re.sub(r"\s+", " ", artist).strip().casefold()


def split_key(song_id: str, artist: str | None) -> str:
    """The unit of splitting: the artist when known, else the song."""
    if artist and normalise_artist(artist):
        return "artist:" + normalise_artist(artist)
    return "song:" + song_id


def unit_interval(key: str, seed: int) -> float:
    """Deterministic, uniform in [0, 1) for a key and seed."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(key: str, config: SplitConfig) -> str:
    u = unit_interval(key, config.seed)
    if u < config.train:
        return "train"
    if u < config.train + config.valid:
        return "valid"
    return "test"
