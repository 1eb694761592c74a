"""The model families (pure torch, no Ray), one module each, and the registry that builds
them by name (``train --model NAME``; a checkpoint's ``model_config.name``).

Every family keeps one contract (``base.EmbeddingModel``): uint8 tiles ``[B, F, T]`` (or the
float input ``tiles_to_input`` makes) in; logits over the genres and a ``embedding_dim``-wide
embedding, the penultimate layer, out of one pass.

| name | module | what it is |
|---|---|---|
| ``cnn`` | ``cnn.py`` | a compact 2-D CNN (strided stem, conv blocks, mean+max over time) |
| ``crnn`` | ``crnn.py`` | conv front end, then a bidirectional GRU over time |
| ``rnn`` | ``rnn.py`` | a bidirectional LSTM over (banded) mel frames |
| ``resnet`` | ``resnet.py`` | residual blocks, a short-chunk ResNet sized for CPUs |
| ``musicnn`` | ``musicnn.py`` | vertical timbre and horizontal rhythm filters, a 1-D mid end |

``ModelConfig.for_family(name)`` gives each family's default sizes.
"""

from __future__ import annotations

from typing import Callable

from genre_batch.config import ModelConfig
from genre_batch.models.augment import TileAugment
from genre_batch.models.base import TILE_MAX, EmbeddingModel, tiles_to_input
from genre_batch.models.cnn import GenreCNN
from genre_batch.models.crnn import GenreCRNN
from genre_batch.models.musicnn import GenreMusicnn
from genre_batch.models.resnet import GenreResNet
from genre_batch.models.rnn import GenreRNN

__all__ = [
    "MODEL_REGISTRY", "TILE_MAX", "EmbeddingModel", "GenreCNN", "GenreCRNN", "GenreMusicnn", "GenreRNN",
    "GenreResNet", "TileAugment", "build_model", "parameter_count", "tiles_to_input",
]

# name -> constructor(n_classes, config).
MODEL_REGISTRY: dict[str, Callable[[int, ModelConfig], EmbeddingModel]] = {
    "cnn": GenreCNN,
    "crnn": GenreCRNN,
    "rnn": GenreRNN,
    "resnet": GenreResNet,
    "musicnn": GenreMusicnn,
}


def build_model(config: ModelConfig, n_classes: int) -> EmbeddingModel:
    """Build the model ``config.name`` names, with ``n_classes`` outputs."""
    try:
        constructor = MODEL_REGISTRY[config.name]
    except KeyError:
        raise ValueError(f"unknown model name {config.name!r}; known: {sorted(MODEL_REGISTRY)}") from None
    return constructor(n_classes, config)


def parameter_count(model: EmbeddingModel) -> int:
    return sum(p.numel() for p in model.parameters())
