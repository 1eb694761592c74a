"""One report of several model families on the same songs (no Ray): a row per training run,
a summary per family (mean and standard deviation over seeds), the MFCC baseline of the same
run beside them, the run to publish (the best *validation* song accuracy), and the files:
``report.json``, ``report.csv``, ``report.png``.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from genre_batch.baseline import BaselineReport
from genre_batch.decision import song_answers
from genre_batch.index import exact_neighbours
from genre_batch.manifests import RunMetrics
from genre_batch.metrics import format_metric, precision_at_k
from genre_batch.nulls import json_safe


def genre_precision_at_k(embeddings: np.ndarray, labels: Sequence[str], queries: Sequence[int] | np.ndarray,
                         k: int = 10) -> float:
    """Mean share of each query song's ``k`` nearest songs among all ``embeddings`` (exact
    cosine, itself left out) that have its genre: what `similar` shows a user, measured
    without Annoy's approximation. ``queries``: row numbers of the songs asked about."""
    rows = np.asarray(queries, dtype=np.int64)
    if len(labels) < 2 or not len(rows):
        return float("nan")
    nearest = exact_neighbours(embeddings, np.asarray(embeddings)[rows], min(k, len(labels) - 1) + 1)
    names = np.asarray(labels, dtype=object)
    neighbour_genres = [[names[j] for j in row if j != query][:k] for query, row in zip(rows, nearest)]
    return precision_at_k(list(names[rows]), neighbour_genres)


@dataclass(frozen=True)
class RunRow:
    """One training run of the comparison."""

    family: str
    seed: int
    run: str
    valid_song_accuracy: float
    test_song_accuracy: float
    valid_tile_accuracy: float
    test_tile_accuracy: float
    test_genre_precision_at_10: float
    parameters: int
    seconds: float
    tiles_per_s: float
    per_genre_test: dict[str, float]
    # Song accuracy when songs are decided by the tiles' vote instead of the mean (decision.py).
    valid_vote_song_accuracy: float = float("nan")
    test_vote_song_accuracy: float = float("nan")

    @classmethod
    def of(cls, family: str, seed: int, metrics: RunMetrics, precision: float, parameters: int,
           seconds: float, vote_accuracy: Mapping[str, float] | None = None) -> "RunRow":
        speeds = [row["tiles_per_s"] for row in metrics.history[1:] or metrics.history]  # epoch 1 warms up
        vote = vote_accuracy or {}
        return cls(family, seed, metrics.run, metrics.valid.song_accuracy, metrics.test.song_accuracy,
                   metrics.valid.tile_accuracy, metrics.test.tile_accuracy, precision, parameters, seconds,
                   float(statistics.median(speeds)) if speeds else float("nan"), dict(metrics.test.per_genre),
                   vote.get("valid", float("nan")), vote.get("test", float("nan")))


def vote_song_accuracy(known: pd.DataFrame, labels: Sequence[str]) -> dict[str, float]:
    """Split -> share of its labelled songs whose genre the vote rule gets right; ``known`` is
    pooled outputs (``inference.POOLED_COLUMNS``) with each song's ``label`` and ``split``."""
    out = {}
    for split in ("valid", "test"):
        rows = known[known["split"] == split]
        if not len(rows):
            out[split] = float("nan")
            continue
        top, _ = song_answers("vote", np.stack(rows["probs"].to_numpy()), np.stack(rows["votes"].to_numpy()),
                              rows["n_tiles"].to_numpy())
        out[split] = float(np.mean(np.asarray(labels, dtype=object)[top] == rows["label"].to_numpy()))
    return out


SUMMARISED = ("valid_song_accuracy", "test_song_accuracy", "valid_tile_accuracy", "test_tile_accuracy",
              "test_genre_precision_at_10", "seconds", "tiles_per_s", "valid_vote_song_accuracy",
              "test_vote_song_accuracy")


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if v == v]
    if not finite:
        return float("nan"), float("nan")
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0


@dataclass(frozen=True)
class Comparison:
    name: str
    ingest_version: str
    rows: tuple[RunRow, ...]
    baseline: BaselineReport

    def families(self) -> list[str]:
        return list(dict.fromkeys(row.family for row in self.rows))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Family -> {field: [mean, sd] over its seeds, parameters, seeds}."""
        out: dict[str, dict[str, Any]] = {}
        for family in self.families():
            rows = [row for row in self.rows if row.family == family]
            out[family] = {name: list(_mean_sd([getattr(row, name) for row in rows])) for name in SUMMARISED}
            out[family].update(parameters=rows[0].parameters, seeds=len(rows))
        return out

    def best_run(self) -> RunRow:
        """The run with the best validation song accuracy (ties: the first, in family and seed
        order; a run without validation songs scores below every run with them)."""
        return max(self.rows, key=lambda row: row.valid_song_accuracy if row.valid_song_accuracy == row.valid_song_accuracy
                   else -1.0)

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "name": self.name, "ingest_version": self.ingest_version, "best_run": self.best_run().run,
            "summary": self.summary(), "baseline": asdict(self.baseline), "runs": [asdict(row) for row in self.rows],
        })

    def csv(self) -> str:
        """A row per run, and one for the baseline (its family ``mfcc-baseline``)."""
        names = [name for name in RunRow.__dataclass_fields__ if name != "per_genre_test"]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in self.rows:
            writer.writerow([getattr(row, name) for name in names])
        writer.writerow(["mfcc-baseline", "", "", self.baseline.valid_song_accuracy, self.baseline.test_song_accuracy]
                        + [""] * (len(names) - 5))
        return out.getvalue()

    def table(self) -> str:
        """What `compare` prints: per family mean ± sd over seeds, the baseline last."""
        def cell(pair: list[float]) -> str:
            return f"{format_metric(pair[0])} ± {format_metric(pair[1])}" if pair[0] == pair[0] else "n/a"

        lines = [f"{'family':<14} {'valid song acc':>16} {'test song acc':>16} {'test tile acc':>16} "
                 f"{'precision@10':>16} {'test song, vote':>16} {'params':>8} {'s/run':>7} {'tiles/s':>8}"]
        for family, numbers in self.summary().items():
            lines.append(
                f"{family:<14} {cell(numbers['valid_song_accuracy']):>16} {cell(numbers['test_song_accuracy']):>16} "
                f"{cell(numbers['test_tile_accuracy']):>16} {cell(numbers['test_genre_precision_at_10']):>16} "
                f"{cell(numbers['test_vote_song_accuracy']):>16} "
                f"{numbers['parameters']:>8} {numbers['seconds'][0]:>7.0f} {numbers['tiles_per_s'][0]:>8.0f}"
            )
        lines.append(f"{'mfcc-baseline':<14} {format_metric(self.baseline.valid_song_accuracy):>16} "
                     f"{format_metric(self.baseline.test_song_accuracy):>16}")
        return "\n".join(lines)


def plot_comparison(comparison: Comparison, path: str) -> None:
    """Song accuracy per family (valid and test; bars = mean, whiskers = sd over seeds), the
    baseline as dashed lines, and each family's per-genre test accuracy beside it."""
    from genre_batch.plots import plot_family_comparison

    summary = comparison.summary()
    genres = list(comparison.baseline.per_genre_test)
    per_genre = np.array([[np.nanmean([row.per_genre_test.get(g, np.nan) for row in comparison.rows
                                       if row.family == family] or [np.nan]) for g in genres]
                          for family in summary])
    plot_family_comparison(
        list(summary), {split: [summary[f][f"{split}_song_accuracy"] for f in summary] for split in ("valid", "test")},
        {"valid": comparison.baseline.valid_song_accuracy, "test": comparison.baseline.test_song_accuracy},
        genres, per_genre, path, title=f"{comparison.name} on ingest {comparison.ingest_version}",
    )
