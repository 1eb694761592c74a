"""Playlists from a listening history: genre mix, places, the variety knob, history files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genre_batch.playlist import (
    HistoryError,
    deal_places,
    history_mix,
    make_playlist,
    parse_history,
    pick,
    resolve_history,
    target_mix,
)

LABELS = ["ambient", "metal", "swing"]
PER_GENRE, DIM = 40, 16


def catalogue(seed: int = 0) -> pd.DataFrame:
    """A predictions-like table: 3 genres x 40 songs, each genre 4 tight sub-clusters of 10.

    Songs 30-39 of each genre are unlabelled (genre from the index); song 39 of each genre is
    ``unknown``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for g, genre in enumerate(LABELS):
        centre = rng.normal(size=DIM) * 3
        subs = centre + rng.normal(size=(4, DIM))
        for i in range(PER_GENRE):
            vector = subs[i // 10] + 0.05 * rng.normal(size=DIM)
            probs = np.full(len(LABELS), 0.1, dtype=np.float32)
            probs[g] = 0.8
            labelled = i < 30
            rows.append(
                {
                    "song_id": f"{genre}-{i:02d}",
                    "path": f"/music/{genre}/{i:02d}.mp3",
                    "label": genre if labelled else None,
                    "genre": "unknown" if i == 39 else genre,
                    "probs": probs,
                    "embedding": (vector / np.linalg.norm(vector)).astype(np.float32),
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def songs() -> pd.DataFrame:
    return catalogue()


def playlist_for(songs: pd.DataFrame, plays: dict, **options):
    """``make_playlist`` with the matrices taken from the table's list columns."""
    return make_playlist(songs, np.stack(songs["embedding"]), np.stack(songs["probs"]), LABELS, plays, **options)


def genres_of(playlist) -> list[str]:
    return [e.genre for e in playlist.entries]


def mean_pairwise_cosine(songs: pd.DataFrame, song_ids: list[str]) -> float:
    vectors = np.stack(songs.set_index("song_id").loc[song_ids, "embedding"].to_numpy())
    sims = vectors @ vectors.T
    return float(sims[~np.eye(len(vectors), dtype=bool)].mean())


# ------------------------------------------------------------------ the knob at its ends
def test_variety_0_keeps_the_history_genre_and_its_nearest_songs(songs):
    playlist = playlist_for(songs, {"metal-00": 1, "metal-01": 1}, n=8, variety=0.0)
    assert genres_of(playlist) == ["metal"] * 8
    assert playlist.history_mix == {"metal": 1.0} and playlist.places == {"metal": 8}
    ids = [e.song_id for e in playlist.entries]
    assert not {"metal-00", "metal-01"} & set(ids)
    # Nearest first: the rest of the history's own sub-cluster (metal-02..09) before anything else.
    assert set(ids) == {f"metal-{i:02d}" for i in range(2, 10)}
    relevance = [e.relevance for e in playlist.entries]
    assert relevance == sorted(relevance, reverse=True)


def test_variety_1_gives_every_genre_equal_places_and_spreads_the_picks(songs):
    history = {"metal-00": 1, "metal-01": 1}
    near = playlist_for(songs, history, n=9, variety=0.0)
    wide = playlist_for(songs, history, n=9, variety=1.0)
    assert wide.places == {"ambient": 3, "metal": 3, "swing": 3}
    # 10 places over 3 equal genres: the 10th goes to the history's genre.
    assert playlist_for(songs, history, n=10, variety=1.0).places == {"ambient": 3, "metal": 4, "swing": 3}
    assert sorted(genres_of(wide)) == ["ambient"] * 3 + ["metal"] * 3 + ["swing"] * 3
    # Within metal, variety 1 leaves the history's sub-cluster (variety 0 stays in it).
    sub_cluster = lambda entries: {int(e.song_id[-2:]) // 10 for e in entries if e.genre == "metal"}
    assert sub_cluster(near.entries[:3]) == {0} and len(sub_cluster(wide.entries)) >= 2


def test_more_variety_spreads_the_playlist_further(songs):
    history = {"metal-00": 2, "swing-12": 1}
    spread = [
        mean_pairwise_cosine(songs, [e.song_id for e in playlist_for(songs, history, n=12, variety=v).entries])
        for v in (0.0, 0.5, 1.0)
    ]
    assert spread[0] > spread[1] > spread[2]


def test_the_genre_mix_follows_the_plays(songs):
    # 4 plays of metal, 2 of swing: at variety 0 a playlist of 9 is 6 metal, 3 swing.
    history = {"metal-00": 3, "metal-11": 1, "swing-05": 2}
    playlist = playlist_for(songs, history, n=9, variety=0.0)
    assert playlist.history_mix == {"metal": pytest.approx(2 / 3, abs=1e-4), "swing": pytest.approx(1 / 3, abs=1e-4)}
    assert playlist.places == {"metal": 6, "swing": 3}
    assert playlist.history_plays == 6 and playlist.history_songs == 3
    # Half way: (1 - 0.5) * (2/3, 1/3, 0) + 0.5 * (1/3 each) = (0.5, 1/3, 1/6) of 12 places.
    half = playlist_for(songs, history, n=12, variety=0.5)
    assert half.places == {"metal": 6, "swing": 4, "ambient": 2}


def test_a_tied_place_goes_to_the_genre_nearest_the_history(songs):
    # Metal history, 4 places, variety 0.5: targets 2/3, 1/6, 1/6 -> metal 3 and one place
    # that ambient and swing tie for; it goes to the one whose best song is nearer to metal.
    vectors = np.stack(songs["embedding"])
    history = vectors[songs["song_id"].isin(["metal-00"]).to_numpy()]
    nearest = {g: float((vectors[songs["label"].eq(g).to_numpy()] @ history.T).max()) for g in ("ambient", "swing")}
    expected = max(nearest, key=nearest.get)
    assert abs(nearest["ambient"] - nearest["swing"]) > 0.05, "the fixture should not tie here"
    playlist = playlist_for(songs, {"metal-00": 1}, n=4, variety=0.5)
    assert playlist.places == {"metal": 3, expected: 1}


def test_unlabelled_history_songs_count_by_their_probabilities(songs):
    row = songs.set_index("song_id").loc["ambient-35"]
    mix = history_mix([row["label"]], row["probs"][None], np.array([1.0]), LABELS)
    assert mix == pytest.approx({"ambient": 0.8, "metal": 0.1, "swing": 0.1})


def test_candidates_exclude_the_history_and_unknown_genre_songs_and_say_where_the_genre_came_from(songs):
    history = {f"swing-{i:02d}": 1 for i in range(30)}
    playlist = playlist_for(songs, history, n=20, variety=0.0)
    ids = [e.song_id for e in playlist.entries]
    assert len(ids) == len(set(ids))
    # 9 swing songs are left (30-38; 39 is unknown); their 11 other places go elsewhere.
    assert {s for s in ids if s.startswith("swing")} == {f"swing-{i:02d}" for i in range(30, 39)}
    assert all(e.genre_source == "predicted" for e in playlist.entries if e.song_id.startswith("swing"))
    assert len(ids) == 20 and "ambient-39" not in ids and "metal-39" not in ids


def test_a_small_catalogue_gives_a_shorter_playlist(songs):
    small = songs[songs["song_id"].isin(["metal-00", "metal-01", "swing-00", "ambient-39"])]
    playlist = playlist_for(small, {"metal-00": 1}, n=10)
    assert [e.song_id for e in playlist.entries] == ["metal-01", "swing-00"]


def test_same_input_same_playlist(songs):
    history = {"metal-00": 2, "ambient-20": 1}
    first = playlist_for(songs, history, n=15, variety=0.4)
    again = playlist_for(songs.sample(frac=1.0, random_state=1), history, n=15, variety=0.4)
    assert first == again


def test_bad_arguments(songs):
    with pytest.raises(ValueError, match="120 songs but 119 embeddings"):
        make_playlist(songs, np.stack(songs["embedding"])[1:], np.stack(songs["probs"]), LABELS, {"metal-00": 1})
    with pytest.raises(HistoryError, match="none of the history"):
        playlist_for(songs, {"nope": 1}, skipped=["nope"])
    with pytest.raises(ValueError, match="variety"):
        playlist_for(songs, {"metal-00": 1}, variety=1.5)
    with pytest.raises(ValueError, match="variety"):
        playlist_for(songs, {"metal-00": 1}, variety=float("nan"))
    with pytest.raises(ValueError, match="n >= 1"):
        playlist_for(songs, {"metal-00": 1}, n=0)


# ------------------------------------------------------------------ the parts
def test_deal_places_by_largest_remainder_and_passing_on_what_a_genre_cannot_fill():
    assert deal_places({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 99, "b": 99, "c": 99}, 7) == {"a": 4, "b": 2, "c": 1}
    # a is full after 1: its other 4 of 10 go to b and c as 0.3 : 0.2 (9 places: 5.4, 3.6).
    assert deal_places({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 1, "b": 99, "c": 99}, 10) == {"a": 1, "b": 5, "c": 4}
    # No genre with a target has songs left: the places go to the others, equally.
    assert deal_places({"a": 1.0}, {"a": 1, "b": 5, "c": 5}, 5) == {"a": 1, "b": 2, "c": 2}
    assert deal_places({"a": 1.0}, {"a": 2, "b": 1}, 10) == {"a": 2, "b": 1}
    # Equal remainders: in the order of `prefer`, then by name.
    equal = {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    assert deal_places(equal, {"a": 9, "b": 9, "c": 9}, 10) == {"a": 4, "b": 3, "c": 3}
    assert deal_places(equal, {"a": 9, "b": 9, "c": 9}, 10, prefer=["c", "b"]) == {"a": 3, "b": 3, "c": 4}
    assert deal_places(equal, {"a": 9, "b": 9, "c": 9}, 11, prefer=["c", "b"]) == {"a": 3, "b": 4, "c": 4}


def test_target_mix_blends_towards_equal_shares():
    assert target_mix({"a": 1.0}, ["a", "b"], 0.0) == {"a": 1.0, "b": 0.0}
    assert target_mix({"a": 1.0}, ["a", "b"], 1.0) == {"a": 0.5, "b": 0.5}
    assert target_mix({"a": 1.0}, ["a", "b", "c", "d"], 0.4) == pytest.approx({"a": 0.7, "b": 0.1, "c": 0.1, "d": 0.1})
    # A history genre with no songs left drops out; the rest is renormalised.
    assert target_mix({"x": 0.5, "a": 0.5}, ["a", "b"], 0.0) == {"a": 1.0, "b": 0.0}


def test_pick_trades_relevance_for_novelty():
    # Rows 0 and 1 are the same song twice; row 2 is a little less relevant but different.
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    relevance = np.array([0.9, 0.9, 0.7], dtype=np.float32)
    codes = np.zeros(3, dtype=np.int64)
    assert pick(vectors, relevance, codes, np.array([2]), variety=0.0) == [0, 1]
    assert pick(vectors, relevance, codes, np.array([2]), variety=0.5) == [0, 2]
    # Places per genre are kept.
    assert pick(vectors, relevance, np.array([0, 0, 1]), np.array([1, 1]), variety=0.0) == [0, 2]


# ------------------------------------------------------------------ history files
def test_parse_history_forms():
    assert parse_history("a-1\n\n# a comment\nb-2\na-1\n") == [("a-1", 1.0), ("b-2", 1.0), ("a-1", 1.0)]
    assert parse_history("song_id,plays\na-1,3\nb-2, 1.5\n") == [("a-1", 3.0), ("b-2", 1.5)]
    assert parse_history("played_at,Path\n2026-12-01,/music/x.mp3\n") == [("/music/x.mp3", 1.0)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no songs"),
        ("# only a comment\n", "no songs"),
        ("song_id,plays\na,2\nb,zero\n", "row 2: plays must be a number > 0, got 'zero'"),
        ("song_id,plays\na,-1\n", "row 1: plays must be a number > 0"),
        ("path,plays\n,2\n", "row 1: empty path"),
    ],
)
def test_parse_history_errors_name_the_row(text, message):
    with pytest.raises(HistoryError, match=message):
        parse_history(text, source="h.csv")


def test_resolve_history_by_id_or_path_adds_up_plays_and_reports_the_rest(songs):
    entries = [("metal-03", 1.0), ("/music/swing/04.mp3", 2.0), ("file:///music/swing/04.mp3", 1.0),
               ("nope", 1.0), ("metal-03", 1.0), ("nope", 1.0)]
    plays, skipped = resolve_history(entries, songs)
    assert plays == {"metal-03": 2.0, "swing-04": 3.0}
    assert skipped == ["nope"]
    # Paths relative to the catalogue, as in a labels CSV.
    plays, skipped = resolve_history([("swing/04.mp3", 1.0), ("jazz/01.mp3", 1.0)], songs, catalogue="file:///music")
    assert plays == {"swing-04": 1.0} and skipped == ["jazz/01.mp3"]
    assert resolve_history([("swing/04.mp3", 1.0)], songs)[1] == ["swing/04.mp3"]  # no catalogue: no match
