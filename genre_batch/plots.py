"""PNG figures that sit next to the numbers: confusion matrix, training curves, embedding map.

Paths are local files; callers upload them to object storage themselves. Figures are drawn
with the non-interactive Agg backend (works on headless workers) and always closed, so a
long job that plots every epoch does not leak memory.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: must be chosen before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

logger = logging.getLogger(__name__)

_DPI = 120


def _save(fig: Figure, path: str | os.PathLike[str]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=_DPI, bbox_inches="tight")
    logger.info("wrote %s", target)


def plot_confusion_matrix(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix (songs)",
) -> None:
    """Draw counts ``[R, C]`` (rows true, columns predicted) as a PNG.

    Cell colour is the row-normalised share (so small classes are as readable as big ones);
    the text in each cell is the raw count.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix shape {counts.shape} does not match {len(row_labels)} row and {len(col_labels)} column labels"
        )
    row_sums = counts.sum(axis=1, keepdims=True).astype(np.float64)
    shares = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=np.float64), where=row_sums > 0)

    n_rows, n_cols = counts.shape
    width = max(5.0, 0.6 * n_cols + 3.0)
    height = max(4.0, 0.5 * n_rows + 2.0)
    fig, ax = plt.subplots(figsize=(width, height))
    try:
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        fig.colorbar(image, ax=ax, label="share of the true class")
        font_size = 9 if max(n_rows, n_cols) <= 12 else 6
        for r in range(n_rows):
            for c in range(n_cols):
                # Dark cells get white text so counts stay legible.
                colour = "white" if shares[r, c] > 0.6 else "black"
                ax.text(c, r, str(int(counts[r, c])), ha="center", va="center", color=colour, fontsize=font_size)
        ax.set_xticks(range(n_cols), [str(label) for label in col_labels], rotation=45, ha="right")
        ax.set_yticks(range(n_rows), [str(label) for label in row_labels])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        _save(fig, path)
    finally:
        plt.close(fig)


_CURVES: dict[str, tuple[str, ...]] = {
    "loss": ("train_loss", "valid_loss"),
    "accuracy": ("train_accuracy", "valid_accuracy", "valid_song_accuracy"),
}


def plot_training_curves(
    history: Sequence[Mapping[str, float]],
    path: str | os.PathLike[str],
    title: str = "Training curves",
) -> None:
    """Two panels (loss, accuracy) from per-epoch rows like ``{"epoch": 1, "train_loss": ...}``.

    Missing keys (or None/NaN values) are skipped point by point; ``epoch`` defaults to the
    row's 1-based position. A panel with no values says so instead of failing.
    """
    epochs = [float(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    if not history:
        logger.warning("plot_training_curves: empty history, writing an empty figure to %s", path)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    try:
        for ax, (panel, keys) in zip(axes, _CURVES.items()):
            drawn = False
            for key in keys:
                points = [
                    (epoch, float(row[key]))
                    for epoch, row in zip(epochs, history)
                    if row.get(key) is not None and math.isfinite(float(row[key]))
                ]
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=key.replace("_", " "))
                drawn = True
            if drawn:
                ax.legend()
            else:
                ax.text(0.5, 0.5, f"no {panel} values", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(panel)
            ax.grid(True, alpha=0.3)
        fig.suptitle(title)
        _save(fig, path)
    finally:
        plt.close(fig)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ``[N, D]`` onto its first two principal components (numpy SVD).

    Returns ``(points [N, 2], explained [2])`` with ``explained`` the share of variance per
    component; missing components (``N < 2`` or ``D < 2``) are zeros.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected vectors [N, D] with N >= 1, got shape {x.shape}")
    centred = x - x.mean(axis=0, keepdims=True)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    n_comp = min(2, vt.shape[0])
    points = np.zeros((x.shape[0], 2))
    points[:, :n_comp] = centred @ vt[:n_comp].T
    variance = singular**2
    explained = np.zeros(2)
    if variance.sum() > 0:
        explained[:n_comp] = variance[:n_comp] / variance.sum()
    return points, explained


def plot_embedding_map(
    vectors: np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Song embeddings (PCA)",
    max_points: int = 20_000,
    seed: int = 0,
) -> None:
    """Scatter ``vectors [N, D]`` on their first two principal components, coloured by label.

    At most ``max_points`` songs (a seeded random sample) are drawn so that big catalogues
    still give a readable, quick plot.
    """
    x = np.asarray(vectors, dtype=np.float64)
    names = np.asarray([str(label) for label in labels], dtype=object)
    if x.ndim != 2 or x.shape[0] != names.shape[0]:
        raise ValueError(f"vectors shape {x.shape} does not match {names.shape[0]} labels")
    if x.shape[0] == 0:
        raise ValueError("no vectors to plot")
    if x.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=max_points, replace=False))
        x, names = x[keep], names[keep]

    points, explained = pca_2d(x)
    classes = sorted(set(names.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(7, 6))
    try:
        for i, name in enumerate(classes):
            members = names == name
            ax.scatter(
                points[members, 0],
                points[members, 1],
                s=12,
                alpha=0.75,
                color=cmap(i % cmap.N),
                label=f"{name} ({int(members.sum())})",
            )
        ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
        ax.set_title(title)
        ax.legend(loc="best", fontsize=8, markerscale=1.5, ncol=1 if len(classes) <= 12 else 2)
        _save(fig, path)
    finally:
        plt.close(fig)


def plot_family_comparison(
    families: Sequence[str],
    accuracy: Mapping[str, Sequence[Sequence[float]]],
    baseline: Mapping[str, float],
    genres: Sequence[str],
    per_genre: np.ndarray,
    path: str | os.PathLike[str],
    title: str = "Model families",
) -> None:
    """Left: song accuracy per family and split (``accuracy[split][i] = (mean, sd)`` over seeds:
    bars and whiskers), the baseline of each split as a dashed line. Right: per-genre test
    accuracy ``[families, genres]`` as a heat map."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(10.0, 1.4 * len(families) + 0.5 * len(genres) + 6), 4.5))
    try:
        positions = np.arange(len(families))
        width = 0.8 / max(1, len(accuracy))
        colours = {"valid": "tab:blue", "test": "tab:orange"}
        for offset, (split, pairs) in enumerate(accuracy.items()):
            means = [pair[0] for pair in pairs]
            sds = [0.0 if pair[1] != pair[1] else pair[1] for pair in pairs]
            colour = colours.get(split, None)
            left.bar(positions + (offset - (len(accuracy) - 1) / 2) * width, means, width, yerr=sds, capsize=3,
                     label=f"{split} songs", color=colour)
            if split in baseline and baseline[split] == baseline[split]:
                left.axhline(baseline[split], linestyle="--", color=colour, linewidth=1,
                             label=f"MFCC baseline, {split} ({baseline[split]:.2f})")
        left.set_xticks(positions, list(families), rotation=20)
        left.set_ylim(0, 1)
        left.set_ylabel("song accuracy (mean ± sd over seeds)")
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
        left.grid(True, axis="y", alpha=0.3)
        image = right.imshow(np.asarray(per_genre, dtype=np.float64), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        fig.colorbar(image, ax=right, label="test song accuracy")
        right.set_xticks(range(len(genres)), list(genres), rotation=45, ha="right")
        right.set_yticks(range(len(families)), list(families))
        right.set_title("per genre, test songs (mean over seeds)")
        fig.suptitle(title)
        _save(fig, path)
    finally:
        plt.close(fig)
