"""Answers at catalogue scale: what `similar --song` and `playlist` pay to read a big index.

    .venv/bin/python benchmarks/answers.py --songs 1000000 [--json out.json]

1. A predictions table of ``--songs`` songs in the real schema (``schemas.PREDICTIONS``: random
   unit embeddings, ``--genres`` genres, a third of the songs unlabelled), written once with the
   library's ``write_table`` (zstd), untimed.
2. (a) BASELINE, the way ``PublishedIndex.predictions`` read it before commit 16c3bbf: every
   column into pandas (one numpy object per row for embedding, probs and the top-3 lists),
   sorted by item id.
3. (b) ``PublishedIndex.predictions`` now: the scalar columns only (what `similar --song` reads
   beside the memory-mapped Annoy file).
4. (c) ``PublishedIndex.vectors``: embedding and probs as float32 matrices (what `playlist`
   reads on top of (b)).
5. (d) ``make_playlist`` on (b) + (c): 50 history songs, n = 50, at variety 0, 0.3 and 1.

Each step runs ``--repeat`` times (default 3), the fastest counting; it prints seconds, the
memory its result holds and the ratios (a)/(b) and (a)/(b + c). The Annoy side of `similar` is
not timed: a memory-mapped query is microseconds, and `evaluate` measures its recall.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from benchmarks.machine import machine  # noqa: E402
from genre_batch import schemas  # noqa: E402
from genre_batch.answers import SCALAR_COLUMNS, predictions_matrix  # noqa: E402
from genre_batch.playlist import make_playlist  # noqa: E402
from genre_batch.tables import read_frame, write_table  # noqa: E402


def predictions_table(n_songs: int, n_genres: int, dim: int = 128, seed: int = 0) -> tuple[pa.Table, list[str]]:
    rng = np.random.default_rng(seed)
    labels = [f"genre-{g}" for g in range(n_genres)]
    genre = rng.integers(0, n_genres, n_songs)
    centres = rng.normal(size=(n_genres, dim)) * 2
    embedding = (centres[genre] + rng.normal(size=(n_songs, dim))).astype(np.float32)
    embedding /= np.linalg.norm(embedding, axis=1, keepdims=True)
    probs = rng.dirichlet(np.ones(n_genres), n_songs).astype(np.float32)
    names = np.array(labels, dtype=object)
    label = names[genre].copy()
    label[rng.random(n_songs) < 1 / 3] = None
    top = np.argsort(-probs, axis=1)[:, :3]
    columns = {
        "item_id": pa.array(np.arange(n_songs, dtype=np.int32)),
        "song_id": pa.array([f"{i:016x}" for i in range(n_songs)]),
        "path": pa.array([f"s3://bucket/catalogue/{names[g]}/artist {i % 5000} - song {i}.mp3" for i, g in enumerate(genre)]),
        "label": pa.array(label.tolist(), pa.string()),
        "split": pa.array(rng.choice(["train", "valid", "test"], n_songs, p=[0.7, 0.15, 0.15])),
        "artist": pa.array([f"artist {i % 5000}" for i in range(n_songs)]),
        "n_tiles": pa.array(np.full(n_songs, 5, np.int32)),
        "tiles_correct": pa.array(np.full(n_songs, 3, np.int32)),
        "predicted": pa.array(names[probs.argmax(axis=1)].tolist()),
        "genre": pa.array(names[probs.argmax(axis=1)].tolist()),
        "confidence": pa.array(probs.max(axis=1)),
        "top_genres": pa.array(names[top].tolist(), pa.list_(pa.string())),
        "top_probs": pa.array(np.take_along_axis(probs, top, axis=1).tolist(), pa.list_(pa.float32())),
        "probs": pa.ListArray.from_arrays(pa.array(np.arange(0, n_songs * n_genres + 1, n_genres, dtype=np.int32)),
                                          pa.array(probs.ravel())),
        "votes": pa.ListArray.from_arrays(pa.array(np.arange(0, n_songs * n_genres + 1, n_genres, dtype=np.int32)),
                                          pa.array(np.round(probs.ravel() * 5).astype(np.float32))),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embedding.ravel()), dim),
    }
    return pa.table(columns, schema=schemas.predictions_schema(dim)), labels


def size_mib(result: Any) -> str:
    """Memory the step's result holds, as pandas counts it (deep; a row's array that is a view
    into Arrow's buffer counts its header only, so (a) holds more than it shows). A peak-RSS
    figure would only show the first step."""
    if hasattr(result, "memory_usage"):
        return f"{result.memory_usage(deep=True).sum() / 2**20:7.0f} MiB"
    if isinstance(result, tuple) and all(isinstance(part, np.ndarray) for part in result):
        return f"{sum(part.nbytes for part in result) / 2**20:7.0f} MiB"
    return ""


def timed(name: str, repeat: int, step: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        result = None  # the previous round's result is freed first
        start = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - start)
    print(f"  {name:<52} {best:8.3f} s   {size_mib(result)}", flush=True)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--songs", type=int, default=1_000_000, help="songs in the predictions table")
    parser.add_argument("--genres", type=int, default=10, help="genres")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per step, the fastest counts")
    parser.add_argument("--dir", help="where to write the table (default: a temporary directory)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)

    print(" ".join(f"{k}={v}" for k, v in machine().items()), flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        uri = os.path.join(tmp, "predictions.parquet")
        start = time.perf_counter()
        table, labels = predictions_table(args.songs, args.genres)
        write_table(table, uri)
        del table
        print(f"wrote {args.songs} songs in {time.perf_counter() - start:.1f} s, "
              f"{os.path.getsize(uri) / 2**20:.0f} MiB", flush=True)

        def full_frame() -> Any:
            return read_frame(uri).sort_values("item_id").reset_index(drop=True)

        def scalar_frame() -> Any:
            return read_frame(uri, SCALAR_COLUMNS).sort_values("item_id").reset_index(drop=True)

        def vectors() -> tuple[np.ndarray, np.ndarray]:
            return predictions_matrix(uri, "embedding"), predictions_matrix(uri, "probs")

        figures: dict[str, float] = {}
        figures["a_full_frame_s"], full = timed("(a) baseline: every column into pandas", args.repeat, full_frame)
        del full
        figures["b_scalar_frame_s"], songs = timed("(b) predictions: scalar columns (similar --song)", args.repeat, scalar_frame)
        figures["c_vectors_s"], (embeddings, probs) = timed("(c) vectors: embedding + probs matrices", args.repeat, vectors)
        history = {song_id: 1.0 for song_id in songs["song_id"].sample(50, random_state=0)}
        for variety in (0.0, 0.3, 1.0):
            figures[f"d_playlist_variety_{variety}_s"], playlist = timed(
                f"(d) make_playlist, 50 plays, n=50, variety {variety}", args.repeat,
                lambda: make_playlist(songs, embeddings, probs, labels, history, n=50, variety=variety),
            )
            assert len(playlist.entries) == 50
        a, b, c = figures["a_full_frame_s"], figures["b_scalar_frame_s"], figures["c_vectors_s"]
        print(f"\n(a)/(b)       {a / b:6.1f}x  `similar --song` reads its table this much faster")
        print(f"(a)/(b + c)   {a / (b + c):6.1f}x  `playlist` (and `evaluate`) read theirs this much faster")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "songs": args.songs, **figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
