"""Writing the catalogue: MP3 files with ID3 tags, ``labels.csv`` and one broken upload.

The same bytes however the songs are written: one after another by default, or through any
map-like ``write_songs`` (the ``synth`` command's process pool, in ``genre_batch.commands``).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
from mutagen.id3 import COMM, ID3, TALB, TCON, TIT2, TPE1

from genre_batch.errors import GenreBatchError
from genre_batch.synth.mixing import render_song
from genre_batch.synth.plan import SynthSong, plan_catalogue
from genre_batch.synth.styles import GENRES, Difficulty

logger = logging.getLogger(__name__)

LABELS_FILE_NAME = "labels.csv"
BROKEN_FILE_NAME = "corrupted-upload.mp3"


class CatalogueWriteError(GenreBatchError):
    """A synthetic song could not be rendered, encoded or tagged."""


@dataclass(frozen=True)
class CatalogueSummary:
    root: str  # absolute path of the catalogue folder
    songs: int  # songs written (all listed in labels.csv)
    genres: tuple[str, ...]  # genres that have at least one song
    broken_files: tuple[str, ...]  # undecodable files, relative to root, not in labels.csv
    labels_csv: str  # absolute path of labels.csv


# One song to write: (catalogue root, song); plain data, so that a process pool can pickle it.
Job = tuple[str, SynthSong]
# How ``write_catalogue`` gets its songs written: called with the function that writes one
# job (it returns the song's relative path) and every job, longest encode first; it returns
# the paths as the songs are done, in any order. The builtin ``map`` writes them one after
# another; ``genre_batch.commands.write_demo_catalogue`` passes a process pool.
SongWriter = Callable[[Callable[[Job], str], Sequence[Job]], Iterable[str]]


def write_catalogue(
    out_dir: str | os.PathLike[str],
    n_songs: int = 120,
    seed: int = 0,
    *,
    min_duration_s: float = 20.0,
    max_duration_s: float = 60.0,
    with_broken_file: bool = True,
    source_format: tuple[int, int] | None = None,
    difficulty: Difficulty = "normal",
    write_songs: SongWriter = map,
) -> CatalogueSummary:
    """Render, encode and tag a demo catalogue under ``out_dir``; rerunning overwrites it.

    Files written: ``<genre>/<artist> - <title>.mp3`` per planned song (ID3 title, artist
    and genre tags), ``labels.csv`` (``path,genre,artist,split``, paths relative to ``out_dir``,
    the split from ``curated_split``)
    and, if ``with_broken_file``, ``<first genre>/corrupted-upload.mp3`` that no decoder can
    read. Files not in the plan are left alone.

    ``difficulty="hard"`` writes the harder catalogue of GitHub issue #14 (``plan_catalogue``,
    ``genre_batch.synth.styles``): ten artists a genre with fewer songs each and presets from
    a wider spread, genre pairs sharing a tempo range and parts, and a recording chain (noise
    floor, band limit, room, clipping, gain) per artist. The default writes the same bytes as
    before difficulties existed.

    ``write_songs`` runs the songs' jobs (see ``SongWriter``): by default one after another
    in this process. Every song is a pure function of its plan, so the files are the same
    bytes however, and in whatever order, they are written.
    """
    started = time.perf_counter()
    root = Path(out_dir).resolve()
    songs = plan_catalogue(n_songs, seed, min_duration_s, max_duration_s, source_format, difficulty)
    for genre in {song.genre for song in songs} | ({GENRES[0]} if with_broken_file else set()):
        (root / genre).mkdir(parents=True, exist_ok=True)
    # Longest encodes first so a pool does not finish on one long straggler.
    jobs = sorted(((str(root), song) for song in songs), key=lambda job: -_encode_cost(job[1]))
    logger.info("writing %d songs to %s", len(songs), root)
    written = set(write_songs(_write_song_job, jobs))
    if missing := sorted({song.relative_path for song in songs} - written):
        raise CatalogueWriteError(f"write_songs returned before writing {len(missing)} of {len(songs)} songs, "
                                  f"{missing[0]} first")
    labels_csv = _write_labels(root, songs)
    broken = (_write_broken_file(root / GENRES[0] / BROKEN_FILE_NAME, seed),) if with_broken_file else ()
    logger.info("wrote %d songs to %s in %.1f s", len(songs), root, time.perf_counter() - started)
    return CatalogueSummary(
        root=str(root),
        songs=len(songs),
        genres=tuple(genre for genre in GENRES if any(song.genre == genre for song in songs)),
        broken_files=tuple(path.relative_to(root).as_posix() for path in broken),
        labels_csv=str(labels_csv),
    )


def _encode_cost(song: SynthSong) -> float:
    return song.duration_s * song.sample_rate * song.channels


def _write_song_job(job: Job) -> str:
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
    provenance = f"seed={song.seed}" + ("" if song.difficulty == "normal" else f" difficulty={song.difficulty}")
    tags.add(COMM(encoding=3, lang="eng", desc="genre_batch.synth", text=provenance))
    tags.save(partial)
    os.replace(partial, path)


def curated_split(songs: Sequence[SynthSong]) -> dict[str, str]:
    """Artist -> split, the way research datasets ship one (GTZAN's artist-filtered split):
    artist-disjoint, and every genre on every side. Per genre, in plan order: the first fifth
    of its artists (rounded, at least one) to test, as many to valid, the rest to train; a
    genre of two artists gets test and train, of one, train. Up to seven artists a genre
    (the normal catalogue has five) that is one test artist and one valid; a hard catalogue's
    ten give two of each, so its test side has as many songs as the normal one's.

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
        held_out = max(1, int(len(names) / 5 + 0.5))
        sides = {1: ["train"], 2: ["test", "train"]}.get(
            len(names), ["test"] * held_out + ["valid"] * held_out + ["train"] * (len(names) - 2 * held_out))
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
