"""Annoy song index: dense id map, exclusion of the query song, cosine values, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genre_batch.errors import GenreBatchError
from genre_batch.index import (
    IndexMismatchError,
    SongIndex,
    UnknownSongError,
    angular_to_cosine,
    exact_neighbours,
    recall_at_k,
)

N_CLUSTERS, PER_CLUSTER, DIM = 5, 40, 32


def clustered_vectors(seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """5 clusters x 40 songs around random centres, unit rows ``[200, 32]`` plus cluster ids ``[200]``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CLUSTERS, DIM))
    cluster = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    vectors = centres[cluster] + 0.35 * rng.normal(size=(cluster.size, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    song_ids = [f"song-{i:03d}" for i in range(cluster.size)]
    return song_ids, vectors.astype(np.float32), cluster


@pytest.fixture(scope="module")
def data() -> tuple[list[str], np.ndarray, np.ndarray]:
    return clustered_vectors()


@pytest.fixture(scope="module")
def index(data: tuple[list[str], np.ndarray, np.ndarray]) -> SongIndex:
    song_ids, vectors, _ = data
    return SongIndex.build(song_ids, vectors, n_trees=20, seed=0)


def test_build_basics(index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    song_ids, vectors, _ = data
    assert len(index) == 200 and index.dim == DIM
    assert "song-007" in index and "nope" not in index
    assert list(index.song_ids) == song_ids
    np.testing.assert_allclose(index.vector("song-007"), vectors[7], atol=1e-6)


def test_query_song_excludes_itself_and_stays_in_cluster(
    index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray]
) -> None:
    song_ids, _, cluster = data
    cluster_of = dict(zip(song_ids, cluster))
    same_cluster = []
    for song_id in song_ids[::7]:
        results = index.query_song(song_id, k=10)
        assert len(results) == 10
        assert song_id not in [s for s, _ in results]
        sims = [sim for _, sim in results]
        assert sims == sorted(sims, reverse=True)
        same_cluster.append(np.mean([cluster_of[s] == cluster_of[song_id] for s, _ in results]))
    assert np.mean(same_cluster) >= 0.95


def test_cosine_values_match_numpy(index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    song_ids, vectors, _ = data
    row = {s: i for i, s in enumerate(song_ids)}
    for song_id in ("song-000", "song-123", "song-199"):
        for neighbour, sim in index.query_song(song_id, k=15):
            assert sim == pytest.approx(float(vectors[row[song_id]] @ vectors[row[neighbour]]), abs=1e-4)


def test_query_vector_normalises_and_excludes(index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    _, vectors, _ = data
    plain = index.query_vector(vectors[3], k=5)
    assert plain[0][0] == "song-003" and plain[0][1] == pytest.approx(1.0, abs=1e-4)
    scaled = index.query_vector(10.0 * vectors[3], k=5)  # length must not matter
    assert [s for s, _ in scaled] == [s for s, _ in plain]
    excluded = index.query_vector(vectors[3], k=5, exclude={"song-003", plain[1][0], "not-indexed"})
    assert len(excluded) == 5
    assert {"song-003", plain[1][0]}.isdisjoint(s for s, _ in excluded)
    with pytest.raises(ValueError, match="dimension"):
        index.query_vector(np.ones(DIM + 1), k=3)


def test_unknown_song_id(index: SongIndex) -> None:
    with pytest.raises(UnknownSongError, match="no-such-song") as info:
        index.query_song("no-such-song")
    assert isinstance(info.value, KeyError) and isinstance(info.value, GenreBatchError)
    assert str(info.value).startswith("song id 'no-such-song' is not in the index")


def test_save_load_round_trip(index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray], tmp_path: Path) -> None:
    song_ids, _, _ = data
    path = tmp_path / "nested" / "songs.ann"
    index.save(path)
    assert path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == ["songs.ann"]  # no temp file left behind
    loaded = SongIndex.load(path, song_ids, DIM)
    assert len(loaded) == len(index) and loaded.dim == DIM
    for song_id in song_ids[::13]:
        assert loaded.query_song(song_id, k=8) == index.query_song(song_id, k=8)


def test_load_checks_id_map(index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray], tmp_path: Path) -> None:
    song_ids, _, _ = data
    path = tmp_path / "songs.ann"
    index.save(path)
    with pytest.raises(IndexMismatchError, match="200 items but the id map has 199"):
        SongIndex.load(path, song_ids[:-1], DIM)
    with pytest.raises(IndexMismatchError, match="dimension 31"):
        SongIndex.load(path, song_ids, DIM - 1)
    with pytest.raises(FileNotFoundError):
        SongIndex.load(tmp_path / "missing.ann", song_ids, DIM)


def test_same_seed_same_answers(data: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    song_ids, vectors, _ = data
    a = SongIndex.build(song_ids, vectors, n_trees=5, seed=3)
    b = SongIndex.build(song_ids, vectors, n_trees=5, seed=3)
    assert a.query_song("song-042", k=10, search_k=20) == b.query_song("song-042", k=10, search_k=20)


@pytest.mark.parametrize(
    "ids, vectors, message",
    [
        ([], np.zeros((0, 4)), "zero songs"),
        (["a", "b"], np.ones((3, 4)), "2 song ids but 3 vectors"),
        (["a", "a", "b"], np.eye(3), "duplicate song ids"),
        (["a", "b"], np.array([[1.0, np.nan], [1.0, 0.0]]), "NaN or inf"),
        (["a"], np.ones(4), "2-D"),
    ],
)
def test_build_rejects_bad_input(ids: list[str], vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SongIndex.build(ids, vectors, n_trees=2)


def test_angular_to_cosine() -> None:
    assert angular_to_cosine(0.0) == pytest.approx(1.0)
    assert angular_to_cosine(np.sqrt(2.0)) == pytest.approx(0.0)
    assert angular_to_cosine(2.0) == pytest.approx(-1.0)
    np.testing.assert_allclose(angular_to_cosine(np.array([0.0, 2.0])), [1.0, -1.0])


def test_exact_neighbours_brute_force() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    result = exact_neighbours(vectors, np.array([[2.0, 0.1]]), k=3)
    assert result.tolist() == [[0, 2, 1]]
    assert exact_neighbours(vectors, vectors, k=10).shape == (4, 4)


def test_recall_on_clustered_data(index: SongIndex, data: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    _, vectors, _ = data
    recall = recall_at_k(index, vectors, k=10, n_queries=100, seed=0)
    assert 0.9 <= recall <= 1.0
    # A one-tree index with a tiny search budget must do worse: the number can fail.
    song_ids = list(index.song_ids)
    weak = SongIndex.build(song_ids, vectors, n_trees=1, seed=0)
    assert recall_at_k(weak, vectors, k=10, n_queries=100, seed=0, search_k=10) < recall


def narrow_cone(n: int = 300, dim: int = 16, seed: int = 0) -> np.ndarray:
    """Unit vectors that all lie near one direction, as the demo's song vectors do, with a
    smaller structure (two groups) inside the cone."""
    rng = np.random.default_rng(seed)
    common = np.zeros(dim)
    common[0] = 10.0
    groups = np.where(np.arange(n)[:, None] % 2 == 0, 1.0, -1.0) * np.eye(dim)[1]
    vectors = common + groups + 0.3 * rng.normal(size=(n, dim))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_centring_spreads_the_scores_of_a_narrow_cone():
    from genre_batch.index import catalogue_mean, centre_vectors, cosine_spread

    vectors = narrow_cone()
    before = cosine_spread(vectors)
    after = cosine_spread(centre_vectors(vectors, catalogue_mean(vectors)))
    assert before["p05"] > 0.95  # every pair looks alike
    assert after["p05"] < -0.5 and after["p95"] > 0.5  # the two groups now point apart
    # The groups are what similar-song search should find: the nearest neighbours stay in them.
    centred = centre_vectors(vectors, catalogue_mean(vectors))
    nearest = exact_neighbours(centred, centred[:20], 6)[:, 1:]
    assert ((nearest % 2) == (np.arange(20)[:, None] % 2)).mean() > 0.95


def test_centring_a_query_uses_the_same_mean_as_the_index():
    from genre_batch.index import catalogue_mean, centre_vectors

    vectors = narrow_cone(n=50)
    mean = catalogue_mean(vectors)
    index = SongIndex.build([f"s{i}" for i in range(50)], centre_vectors(vectors, mean), n_trees=5)
    hits = index.query_vector(centre_vectors(vectors[7], mean), k=1)
    assert hits[0][0] == "s7" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(centre_vectors(vectors, None), vectors, atol=1e-6)  # no mean: as they are


def test_cosine_spread_never_pairs_a_song_with_itself():
    from genre_batch.index import cosine_spread

    two = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert cosine_spread(two, pairs=100) == {"p05": -1.0, "p50": -1.0, "p95": -1.0}
    assert np.isnan(cosine_spread(two[:1])["p50"])
