"""A playlist from a listening history: its genre mix, songs near what was played, and one
knob, ``variety``, from "more of the same" (0) to "a tour of the catalogue" (1). No Ray.

The rule, step by step (the README says the same):

1. **History mix.** Every play counts once (a song listed twice, or with ``plays`` 2, counts
   twice). A labelled song counts for its label; an unlabelled one for its mean tile
   probabilities, so a song the model is unsure of spreads its weight over its likely genres.
2. **Target mix** = ``(1 - variety) * history mix + variety * equal shares`` over the genres the
   catalogue has songs of. The ``n`` places are dealt by largest remainder (equal remainders:
   the history's genres first, then those whose best song is nearest to the history); a genre
   with fewer songs than places passes the rest on to the others, in proportion to their targets.
3. **Picks**, one at a time, best score first, among the genres with places left (maximal
   marginal relevance): ``score = relevance - variety * redundancy``, where relevance is the
   cosine similarity to the nearest history song and redundancy the similarity to the nearest
   song already picked (0 before the first pick, never negative).

Candidates are every song of the index except the history's own and those whose genre the
index calls ``unknown`` (a playlist that promises a genre mix cannot place them). Relevance is
exact: one ``[songs, 128] x [128, history]`` product over the song embeddings; the greedy picks then run over the most relevant songs of each genre
(``shortlist_factor`` x its places, at least ``min_shortlist``).
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from genre_batch.errors import GenreBatchError
from genre_batch.pooling import UNKNOWN
from genre_batch.storage import join, normalise_uri

HISTORY_COLUMNS = ("song_id", "path")  # a history CSV names its songs by one of these
PLAYS_COLUMN = "plays"


class HistoryError(GenreBatchError, ValueError):
    """A listening history that cannot be read or names no song of the index."""


@dataclass(frozen=True)
class PlaylistEntry:
    song_id: str
    genre: str
    genre_source: str  # "label" or "predicted"
    relevance: float  # cosine similarity to the nearest history song
    path: str


@dataclass(frozen=True)
class Playlist:
    entries: list[PlaylistEntry]
    variety: float
    history_plays: float
    history_songs: int
    history_mix: dict[str, float]
    target_mix: dict[str, float]
    places: dict[str, int]  # songs per genre in the playlist
    skipped: list[str] = field(default_factory=list)  # history entries not in the index

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ reading a history
def parse_history(text: str, source: str = "history") -> list[tuple[str, float]]:
    """``(song id or path, plays)`` pairs from a history file, in file order.

    Two forms: a CSV whose header has ``song_id`` or ``path`` (and optionally ``plays``), or
    plain lines, one song id or path per play (blank lines and ``#`` comments skipped). A
    listening log with one row per play is either form as it is: repeats add up later.
    """
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise HistoryError(f"{source}: no songs in it")
    header = [name.strip().lower() for name in lines[0].split(",")]
    if not any(name in HISTORY_COLUMNS for name in header):
        return [(line, 1.0) for line in lines]
    frame = pd.read_csv(io.StringIO("\n".join(lines)), dtype=str, skipinitialspace=True)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    key = next(c for c in HISTORY_COLUMNS if c in frame.columns)
    plays = pd.Series(1.0, index=frame.index)
    if PLAYS_COLUMN in frame.columns:
        plays = pd.to_numeric(frame[PLAYS_COLUMN], errors="coerce")
        bad = frame.index[~(np.isfinite(plays) & (plays > 0))]
        if len(bad):
            raise HistoryError(
                f"{source}, row {int(bad[0]) + 1}: plays must be a number > 0, got {frame.at[bad[0], PLAYS_COLUMN]!r}"
            )
    keys = frame[key].fillna("").str.strip()
    if (keys == "").any():
        raise HistoryError(f"{source}, row {int(keys.index[keys == ''][0]) + 1}: empty {key}")
    return list(zip(keys.tolist(), plays.astype(float).tolist()))


def resolve_history(
    entries: Iterable[tuple[str, float]], songs: pd.DataFrame, catalogue: str | None = None
) -> tuple[dict[str, float], list[str]]:
    """Plays per song id of ``songs``, and the entries that match no song, in first-seen order.

    A key is a song id, a path or URI as in the songs table (``file://`` and ``~`` allowed),
    or a path relative to ``catalogue`` (as in a labels CSV).
    """
    ids = set(songs["song_id"])
    by_path = dict(zip(songs["path"], songs["song_id"]))
    plays: defaultdict[str, float] = defaultdict(float)
    skipped: dict[str, None] = {}  # ordered set
    for key, count in entries:
        song_id = key if key in ids else next((by_path[p] for p in _path_forms(key, catalogue) if p in by_path), None)
        if song_id is None:
            skipped[key] = None
            continue
        plays[song_id] += float(count)
    return dict(plays), list(skipped)


def _path_forms(key: str, catalogue: str | None) -> Iterator[str]:
    yield key
    yield normalise_uri(key)
    if catalogue and "://" not in key and not os.path.isabs(os.path.expanduser(key)):
        yield normalise_uri(join(catalogue, key))


# ------------------------------------------------------------------ genre mixes and places
def song_genres(songs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per song: its genre for the playlist (label, else the index's genre) and where it came from."""
    labelled = songs["label"].fillna("").ne("").to_numpy(bool)
    genre = np.where(labelled, songs["label"].to_numpy(object), songs["genre"].to_numpy(object))
    return genre, np.where(labelled, "label", "predicted")


def history_mix(
    history_labels: Sequence[str | None], history_probs: np.ndarray, plays: np.ndarray, labels: Sequence[str]
) -> dict[str, float]:
    """Share of plays per genre: labels count whole, unlabelled songs by their probabilities
    (``history_probs[i]`` over ``labels``)."""
    weights: defaultdict[str, float] = defaultdict(float)
    for label, probs, count in zip(history_labels, history_probs, plays):
        if isinstance(label, str) and label:
            weights[label] += float(count)
        else:
            for genre, p in zip(labels, np.asarray(probs, dtype=np.float64)):
                weights[genre] += float(count) * float(p)
    total = sum(weights.values())
    return {genre: w / total for genre, w in sorted(weights.items()) if w > 0} if total > 0 else {}


def target_mix(history: Mapping[str, float], genres: Sequence[str], variety: float) -> dict[str, float]:
    """``(1 - variety) * history + variety * equal shares`` over ``genres`` (those with songs)."""
    equal = 1.0 / len(genres) if genres else 0.0
    mix = {g: (1.0 - variety) * history.get(g, 0.0) + variety * equal for g in genres}
    total = sum(mix.values())
    return {g: w / total for g, w in mix.items()} if total > 0 else {g: equal for g in genres}


def deal_places(
    target: Mapping[str, float], available: Mapping[str, int], n: int, prefer: Sequence[str] = ()
) -> dict[str, int]:
    """``n`` places over genres by largest remainder on ``target``, at most ``available[g]`` each.

    Places a genre cannot fill go to the others in proportion to their targets; when no genre
    with a positive target has songs left, to the genres that have, equally. Equal remainders
    go to the bigger target, then to the genre earlier in ``prefer``, then by name.
    """
    rank = {g: i for i, g in enumerate(prefer)}
    places = {g: 0 for g in available}
    left = min(n, sum(available.values()))
    while left > 0:
        open_genres = [g for g in available if places[g] < available[g]]
        weights = {g: target.get(g, 0.0) for g in open_genres if target.get(g, 0.0) > 0}
        if not weights:
            weights = {g: 1.0 for g in open_genres}
        total = sum(weights.values())
        quotas = {g: left * w / total for g, w in weights.items()}
        share = {g: math.floor(q) for g, q in quotas.items()}
        # Fractions rounded: 4 x 2/3 and 4 x 1/6 leave "equal" remainders that differ in the last bit.
        ranked = sorted(quotas, key=lambda g: (-round(quotas[g] - share[g], 9), -weights[g], rank.get(g, len(rank)), g))
        for g in ranked[: left - sum(share.values())]:
            share[g] += 1
        for g, extra in share.items():
            places[g] += min(extra, available[g] - places[g])
        left = min(n, sum(available.values())) - sum(places.values())
    return places


# ------------------------------------------------------------------ picking
def relevance(candidates: np.ndarray, history: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Cosine similarity of each unit candidate row to its nearest unit history row."""
    out = np.empty(len(candidates), dtype=np.float32)
    for start in range(0, len(candidates), chunk):
        np.max(candidates[start : start + chunk] @ history.T, axis=1, out=out[start : start + chunk])
    return out


def pick(
    vectors: np.ndarray, relevance_: np.ndarray, genre_codes: np.ndarray, places: np.ndarray, variety: float
) -> list[int]:
    """Greedy maximal marginal relevance under per-genre places; rows in pick order.

    ``vectors`` are unit rows; ``genre_codes[i]`` indexes ``places``; ties go to the lower row.
    """
    left = places.astype(np.int64).copy()
    redundancy = np.zeros(len(vectors), dtype=np.float32)
    taken = np.zeros(len(vectors), dtype=bool)
    order: list[int] = []
    for _ in range(int(left.sum())):
        allowed = ~taken & (left[genre_codes] > 0)
        if not allowed.any():
            break
        score = np.where(allowed, relevance_ - variety * redundancy, -np.inf)
        best = int(np.argmax(score))
        order.append(best)
        taken[best] = True
        left[genre_codes[best]] -= 1
        np.maximum(redundancy, vectors @ vectors[best], out=redundancy)
    return order


def make_playlist(
    songs: pd.DataFrame,
    embeddings: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    plays: Mapping[str, float],
    n: int = 20,
    variety: float = 0.3,
    skipped: Sequence[str] = (),
    shortlist_factor: int = 10,
    min_shortlist: int = 100,
) -> Playlist:
    """``n`` songs of ``songs`` for a history of ``plays`` per song id.

    ``songs`` has the predictions table's ``song_id, path, label, genre``; row ``i`` of
    ``embeddings [songs, dim]`` and ``probs [songs, len(labels)]`` belongs to its row ``i``.

    Raises ``HistoryError`` when ``plays`` names no song of ``songs``; ``ValueError`` for an
    ``n`` under 1 or a ``variety`` outside [0, 1].
    """
    if n < 1:
        raise ValueError(f"a playlist needs n >= 1 songs, got {n}")
    if not 0.0 <= variety <= 1.0:  # also refuses NaN
        raise ValueError(f"variety must be within [0, 1], got {variety}")
    songs = songs.reset_index(drop=True)
    if not len(songs) == len(embeddings) == len(probs):
        raise ValueError(f"{len(songs)} songs but {len(embeddings)} embeddings and {len(probs)} probability rows")
    in_history = songs["song_id"].isin(list(plays)).to_numpy()
    if not in_history.any():
        raise HistoryError("none of the history's songs is in the index" + (f" (not found: {list(skipped)[:5]})" if skipped else ""))
    history_plays = songs.loc[in_history, "song_id"].map(plays).to_numpy(float)
    mix = history_mix(songs.loc[in_history, "label"].tolist(), probs[in_history], history_plays, labels)

    genre, source = song_genres(songs)
    eligible = ~in_history & (genre != UNKNOWN)
    code, names = pd.factorize(genre, sort=True)  # integer genre codes: 1M-row masks stay cheap
    available = np.bincount(code[eligible], minlength=len(names))
    code_of = {str(names[c]): int(c) for c in np.flatnonzero(available)}
    genres = list(code_of)
    vectors = _unit(embeddings)
    rows = np.flatnonzero(eligible)
    rel = np.full(len(songs), -np.inf, dtype=np.float32)
    rel[rows] = relevance(vectors[rows], vectors[in_history])

    # Equal shares of places go first to the history's genres, then to the genres nearest to it.
    best = pd.Series(rel[rows]).groupby(code[rows]).max()
    nearest_first = sorted(genres, key=lambda g: (-mix.get(g, 0.0), -best[code_of[g]], g))
    target = target_mix(mix, genres, variety)
    places = deal_places(target, {g: int(available[c]) for g, c in code_of.items()}, n, prefer=nearest_first)
    places_by_code = np.zeros(len(names), dtype=np.int64)
    for g, count in places.items():
        places_by_code[code_of[g]] = count

    shortlist = _shortlist(rows, code, rel, places_by_code, shortlist_factor, min_shortlist)
    picked = shortlist[pick(vectors[shortlist], rel[shortlist], code[shortlist], places_by_code, variety)]

    entries = [
        PlaylistEntry(
            song_id=str(songs.at[i, "song_id"]),
            genre=str(genre[i]),
            genre_source=str(source[i]),
            relevance=round(float(rel[i]), 4),
            path=str(songs.at[i, "path"]),
        )
        for i in picked
    ]
    return Playlist(
        entries=entries,
        variety=float(variety),
        history_plays=float(history_plays.sum()),
        history_songs=int(in_history.sum()),
        history_mix={g: round(w, 4) for g, w in mix.items()},
        target_mix={g: round(w, 4) for g, w in target.items() if w > 0},
        places={g: c for g, c in places.items() if c > 0},
        skipped=list(skipped),
    )


def _unit(vectors: np.ndarray) -> np.ndarray:
    # Not genre_batch.index._unit_rows: its float64 copy and finiteness checks take 4.7 s on
    # 1M x 128 (0.18 s here), for vectors the index already checked when it was built.
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", array, array))[:, None]
    return array / np.where(norms > 0, norms, 1.0)


def _shortlist(
    rows: np.ndarray, code: np.ndarray, rel: np.ndarray, places: np.ndarray, factor: int, minimum: int
) -> np.ndarray:
    """Per genre code with places, its most relevant songs of ``rows`` (ties by row), in row order."""
    keep = []
    for genre_code in np.flatnonzero(places):
        members = rows[code[rows] == genre_code]
        size = min(len(members), max(factor * int(places[genre_code]), minimum))
        keep.append(members[np.lexsort((members, -rel[members]))[:size]])
    return np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)
