"""Plots write real, non-blank PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from genre_batch.plots import pca_2d, plot_confusion_matrix, plot_embedding_map, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_real_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(pixels[..., :3].var()) > 0  # not a blank canvas


def test_plot_confusion_matrix(tmp_path: Path) -> None:
    matrix = np.array([[5, 1, 0, 2], [0, 7, 1, 0], [3, 0, 0, 0]])
    path = tmp_path / "deep" / "dir" / "confusion.png"
    plot_confusion_matrix(matrix, ["blues", "jazz", "rock"], ["blues", "jazz", "rock", "unknown"], path)
    assert_real_png(path)


def test_plot_confusion_matrix_shape_check(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], ["a", "b"], tmp_path / "x.png")


def test_plot_training_curves_with_missing_keys(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "train_loss": 1.9, "train_accuracy": 0.3, "valid_loss": 1.8, "valid_accuracy": 0.35},
        {"epoch": 2, "train_loss": 1.2, "train_accuracy": 0.55},  # no validation this epoch
        {"epoch": 3, "train_loss": 0.8, "train_accuracy": 0.7, "valid_loss": 1.0, "valid_accuracy": 0.62},
    ]
    path = tmp_path / "curves.png"
    plot_training_curves(history, path)
    assert_real_png(path)


def test_plot_training_curves_loss_only(tmp_path: Path) -> None:
    path = tmp_path / "loss_only.png"
    plot_training_curves([{"train_loss": 2.0}, {"train_loss": 1.5}], path)
    assert_real_png(path)


def test_pca_2d_finds_the_spread_direction() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((200, 5))
    x[:, 3] = rng.normal(scale=10.0, size=200)  # almost all variance on one axis
    x[:, 1] = rng.normal(scale=0.1, size=200)
    points, explained = pca_2d(x)
    assert points.shape == (200, 2)
    assert explained[0] > 0.99
    assert abs(np.corrcoef(points[:, 0], x[:, 3])[0, 1]) > 0.999


def test_plot_embedding_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(["blues", "jazz", "rock"], 30)
    vectors = np.repeat(centres, 30, axis=0) + 0.2 * rng.normal(size=(90, 16))
    path = tmp_path / "map.png"
    plot_embedding_map(vectors, labels.tolist(), path, max_points=60)
    assert_real_png(path)
    with pytest.raises(ValueError):
        plot_embedding_map(vectors, labels[:10].tolist(), tmp_path / "bad.png")
