"""Similar-song search: an Annoy (angular) index over unit song vectors, with a dense id map.

Annoy allocates memory for ``max(item id) + 1`` items and cannot add items after ``build``,
so items are numbered densely ``0..N-1`` in the order of ``song_ids`` and the index is rebuilt
from the embeddings table when songs change. The id map (``song_ids``) is stored by the caller
beside the ``.ann`` file (Parquet) and handed back to ``SongIndex.load``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Collection, Literal, Sequence

import numpy as np
from annoy import AnnoyIndex

from genre_batch.errors import GenreBatchError

logger = logging.getLogger(__name__)

METRIC: Literal["angular"] = "angular"


class UnknownSongError(GenreBatchError, KeyError):
    """A song id that is not in the index."""

    def __str__(self) -> str:  # KeyError would print the message wrapped in quotes
        return str(self.args[0]) if self.args else ""


class IndexMismatchError(GenreBatchError, ValueError):
    """An ``.ann`` file does not fit the id map or dimension it was loaded with."""


def angular_to_cosine(distance: float | np.ndarray) -> float | np.ndarray:
    """Annoy's angular distance ``d = sqrt(2 (1 - cos))`` back to cosine similarity ``1 - d^2 / 2``."""
    d = np.asarray(distance, dtype=np.float64)
    cosine = 1.0 - d * d / 2.0
    return float(cosine) if cosine.ndim == 0 else cosine


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    """``[N, D]`` -> float32 rows scaled to unit L2 norm; zero rows stay zero."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, D], got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{what} have dimension 0")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array).all(axis=1)).sum())
        raise ValueError(f"{what} contain NaN or inf in {bad} row(s)")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return (array / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def centre_vectors(vectors: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """Song vectors ``[N, D]`` (or one ``[D]``) minus the catalogue's mean vector, back to unit
    length: the direction every song shares is taken out before cosine search, so scores spread
    over [-1, 1] instead of crowding near 1. ``mean`` None: unit rows as they are."""
    array = np.asarray(vectors, dtype=np.float64)
    one = array.ndim == 1
    rows = array[None, :] if one else array
    if mean is not None:
        rows = rows - np.asarray(mean, dtype=np.float64)[None, :]
    unit = _unit_rows(rows, "song vectors")
    return unit[0] if one else unit


def catalogue_mean(vectors: np.ndarray) -> np.ndarray:
    """The mean of the catalogue's unit song vectors, float32 ``[D]``."""
    return _unit_rows(vectors, "song vectors").mean(axis=0).astype(np.float32)


class SongIndex:
    """Approximate cosine nearest neighbours over songs.

    Build with ``SongIndex.build`` or open a saved file with ``SongIndex.load``; item ``i``
    of the Annoy index is ``song_ids[i]``.
    """

    def __init__(self, annoy_index: AnnoyIndex, song_ids: Sequence[str], dim: int) -> None:
        self._annoy = annoy_index
        self._song_ids: tuple[str, ...] = tuple(str(s) for s in song_ids)
        self._row = {song_id: i for i, song_id in enumerate(self._song_ids)}
        self._dim = int(dim)
        if len(self._row) != len(self._song_ids):
            raise ValueError(_duplicates_message(self._song_ids))

    @classmethod
    def build(
        cls,
        song_ids: Sequence[str],
        vectors: np.ndarray,
        n_trees: int = 50,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> "SongIndex":
        """Index ``vectors [N, D]`` (normalised to unit length here) under ``song_ids [N]``.

        ``n_jobs=1`` (the default) gives the same trees for the same seed and data; Annoy's
        multi-threaded build is not reproducible even with a seed.
        """
        unit = _unit_rows(vectors, "song vectors")
        ids = [str(s) for s in song_ids]
        if unit.shape[0] == 0 or not ids:
            raise ValueError("cannot build an index from zero songs")
        if unit.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} song ids but {unit.shape[0]} vectors")
        if len(set(ids)) != len(ids):
            raise ValueError(_duplicates_message(ids))
        if n_trees < 1:
            raise ValueError(f"n_trees must be >= 1, got {n_trees}")
        n_zero = int((~unit.any(axis=1)).sum())
        if n_zero:
            # Annoy treats a zero vector as cosine 0 to everything: it is indexed but never close.
            logger.warning("%d of %d song vectors are all zeros; they will never be near neighbours", n_zero, len(ids))

        dim = unit.shape[1]
        annoy_index = AnnoyIndex(dim, METRIC)
        annoy_index.set_seed(int(seed))
        for item, vector in enumerate(unit):
            annoy_index.add_item(item, vector.tolist())
        annoy_index.build(int(n_trees), n_jobs=int(n_jobs))
        logger.info("built Annoy index: %d songs, dim %d, %d trees", len(ids), dim, n_trees)
        return cls(annoy_index, ids, dim)

    def save(self, ann_path: str | os.PathLike[str]) -> None:
        """Write the ``.ann`` file (only; the caller stores ``song_ids``).

        The file is written under a temporary name and renamed into place, so a reader that
        has the previous file memory-mapped keeps a valid mapping. Prefer a new path per build
        anyway and switch a pointer. After saving, this object serves from the mapped file.
        """
        target = Path(ann_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            if not self._annoy.save(tmp_name):
                raise OSError(f"Annoy could not write {tmp_name}")
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        logger.info("saved Annoy index (%d songs) to %s", len(self), target)

    @classmethod
    def load(cls, ann_path: str | os.PathLike[str], song_ids: Sequence[str], dim: int) -> "SongIndex":
        """Memory-map a saved ``.ann`` file and attach its id map.

        Raises:
            FileNotFoundError: no file at ``ann_path``.
            IndexMismatchError: the file does not fit ``dim`` or holds a different number of
                items than ``song_ids``.
        """
        path = Path(ann_path)
        if not path.is_file():
            raise FileNotFoundError(f"no Annoy index file at {path}")
        annoy_index = AnnoyIndex(int(dim), METRIC)
        try:
            annoy_index.load(str(path))
        except OSError as exc:
            raise IndexMismatchError(f"cannot load {path} as an angular index of dimension {dim}: {exc}") from exc
        n_items = annoy_index.get_n_items()
        if n_items != len(song_ids):
            annoy_index.unload()
            raise IndexMismatchError(
                f"{path} holds {n_items} items but the id map has {len(song_ids)} song ids; "
                "the index and its id map come from different builds"
            )
        return cls(annoy_index, song_ids, dim)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def song_ids(self) -> tuple[str, ...]:
        """The id map: ``song_ids[i]`` is Annoy item ``i``."""
        return self._song_ids

    def __len__(self) -> int:
        return len(self._song_ids)

    def __contains__(self, song_id: object) -> bool:
        return song_id in self._row

    def _item(self, song_id: str) -> int:
        try:
            return self._row[song_id]
        except KeyError:
            raise UnknownSongError(f"song id {song_id!r} is not in the index ({len(self)} songs)") from None

    def vector(self, song_id: str) -> np.ndarray:
        """The indexed unit vector ``[D]`` float32 of one song."""
        return np.asarray(self._annoy.get_item_vector(self._item(song_id)), dtype=np.float32)

    def query_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        exclude: Collection[str] = (),
        search_k: int = -1,
    ) -> list[tuple[str, float]]:
        """Up to ``k`` ``(song_id, cosine similarity)`` pairs nearest to ``vector [D]``, best first.

        Songs in ``exclude`` are left out; Annoy is asked for ``k`` more results per excluded
        song that is in the index so that ``k`` remain. ``search_k=-1`` is Annoy's default
        (``n_trees * n``); larger values trade speed for recall.
        """
        query = np.asarray(vector, dtype=np.float64).reshape(-1)
        if query.shape[0] != self._dim:
            raise ValueError(f"query vector has dimension {query.shape[0]}, index has {self._dim}")
        if k < 1:
            return []
        unit = _unit_rows(query[None, :], "query vector")[0]
        excluded = {s for s in exclude if s in self._row}
        n_ask = min(k + len(excluded), len(self))
        items, distances = self._annoy.get_nns_by_vector(
            unit.tolist(), n_ask, search_k=int(search_k), include_distances=True
        )
        results = [
            (self._song_ids[item], float(angular_to_cosine(distance)))
            for item, distance in zip(items, distances)
            if self._song_ids[item] not in excluded
        ]
        return results[:k]

    def query_song(self, song_id: str, k: int = 10, search_k: int = -1) -> list[tuple[str, float]]:
        """The ``k`` songs most similar to an indexed song, never the song itself."""
        return self.query_vector(self.vector(song_id), k=k, exclude=(song_id,), search_k=search_k)


def _duplicates_message(ids: Sequence[str]) -> str:
    seen: set[str] = set()
    dupes: list[str] = []
    for song_id in ids:
        if song_id in seen and song_id not in dupes:
            dupes.append(song_id)
        seen.add(song_id)
    return f"duplicate song ids ({len(dupes)}), e.g. {dupes[:5]}"


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force cosine top-``k`` row indices into ``vectors [N, D]`` for ``queries [Q, D]``.

    Returns ``[Q, min(k, N)]`` int64, most similar first. Memory is ``Q * N`` floats: chunk
    the queries for large catalogues.
    """
    base = _unit_rows(vectors, "vectors")
    query = _unit_rows(queries, "queries")
    if base.shape[1] != query.shape[1]:
        raise ValueError(f"vectors have dimension {base.shape[1]} but queries have {query.shape[1]}")
    k = min(int(k), base.shape[0])
    if k < 1:
        return np.empty((query.shape[0], 0), dtype=np.int64)
    similarity = query @ base.T  # [Q, N]
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    top_sim = np.take_along_axis(similarity, top, axis=1)
    order = np.argsort(-top_sim, axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def recall_at_k(
    index: SongIndex,
    vectors: np.ndarray,
    k: int = 10,
    n_queries: int = 200,
    seed: int = 0,
    search_k: int = -1,
) -> float:
    """Mean share of the exact cosine top-``k`` that Annoy returns, over sampled indexed songs.

    ``vectors [N, D]`` must be the vectors the index was built from, in ``song_ids`` order.
    Each query is an indexed song; the song itself is excluded on both sides so that finding
    oneself does not inflate the number.
    """
    base = _unit_rows(vectors, "vectors")
    n = base.shape[0]
    if n != len(index):
        raise ValueError(f"index has {len(index)} songs but {n} vectors were given")
    k = min(int(k), n - 1)
    if k < 1:
        return float("nan")
    rng = np.random.default_rng(seed)
    rows = rng.choice(n, size=min(int(n_queries), n), replace=False)
    exact = exact_neighbours(base, base[rows], k + 1)
    hits = 0
    for row, truth in zip(rows, exact):
        expected = {index.song_ids[int(i)] for i in truth if i != row}
        if len(expected) > k:  # the song itself was not among its own top k+1 (duplicates)
            expected = {index.song_ids[int(i)] for i in truth[:k]}
        found = {song_id for song_id, _ in index.query_song(index.song_ids[row], k=k, search_k=search_k)}
        hits += len(expected & found)
    return hits / (len(rows) * k)


def cosine_spread(vectors: np.ndarray, pairs: int = 2000, seed: int = 0) -> dict[str, float]:
    """The 5th, 50th and 95th percentiles of the cosine between random pairs of distinct songs:
    how much of [-1, 1] the similarity scores shown to users use (NaN for fewer than 2 songs)."""
    unit = _unit_rows(vectors, "song vectors")
    if len(unit) < 2:
        return {"p05": float("nan"), "p50": float("nan"), "p95": float("nan")}
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(unit), pairs)
    second = (first + rng.integers(1, len(unit), pairs)) % len(unit)  # never the song itself
    cosines = np.einsum("ij,ij->i", unit[first], unit[second])
    p05, p50, p95 = np.percentile(cosines, [5, 50, 95])
    return {"p05": float(p05), "p50": float(p50), "p95": float(p95)}
