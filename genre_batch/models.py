"""Tile CNN, its input conversion and its training augmentation (pure torch, no Ray).

A tile is one ``[n_mels, tile_frames]`` uint8 log-mel image (see ``FeatureConfig``): axis -2
is frequency (mel bins, low to high), axis -1 is time (frames). ``tiles_to_input`` turns a
batch of them into the float ``[B, 1, F, T]`` tensor every model here consumes; training and
inference share it, so a model never sees differently scaled input in the two.

``GenreCNN``::

    stem      conv k x k, stride ``stem_stride`` -> BN -> ReLU        (256x256 -> 64x64 at stride 4)
    blocks    per channel count c: [conv3x3 -> BN -> ReLU] x 2 -> maxpool 2   (64 -> 4 after 4 blocks)
    pool      mean over frequency, then [mean over time ; max over time]    -> 2 * channels[-1]
    embedding Linear                                                        -> ``embedding_dim``
    head      ReLU -> Dropout -> Linear                                     -> n_classes logits

The embedding is the penultimate layer's output *before* its ReLU (signed, so cosine
similarities spread over [-1, 1]); it is what song-similarity search indexes. Dropout sits
between the embedding and the head, so ``embed`` is deterministic in eval mode.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torchaudio.transforms as audio_transforms
from torch import nn

from genre_batch.config import FeatureConfig, ModelConfig, TrainConfig

# Largest tile value: uint8 tiles map [-top_db, 0] dB onto 0..255.
TILE_MAX = 255.0


def tiles_to_input(tiles: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Convert tiles in tile units (0..255) to model input: float32 ``[B, 1, F, T]`` in [-1, 1].

    Accepts ``[F, T]`` (one tile), ``[B, F, T]`` or ``[B, 1, F, T]``, as uint8 (the stored form)
    or any integer/float dtype holding the same 0..255 values; numpy arrays are accepted too.
    The result stays on the input's device: move uint8 tiles to the GPU first, then convert
    (four times fewer bytes to copy).
    """
    tiles_tensor = torch.as_tensor(tiles)
    if tiles_tensor.ndim == 2:
        tiles_tensor = tiles_tensor.unsqueeze(0)
    if tiles_tensor.ndim == 3:
        tiles_tensor = tiles_tensor.unsqueeze(1)
    if tiles_tensor.ndim != 4 or tiles_tensor.shape[1] != 1:
        raise ValueError(
            f"expected tiles shaped [F, T], [B, F, T] or [B, 1, F, T], got {tuple(tiles_tensor.shape)}"
        )
    return tiles_tensor.to(torch.float32) * (2.0 / TILE_MAX) - 1.0


def _as_model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 tiles are converted with ``tiles_to_input``; float input is taken as already converted."""
    if x.dtype == torch.uint8:
        return tiles_to_input(x)
    if not x.is_floating_point():
        raise TypeError(f"model input must be uint8 tiles or float model input, got {x.dtype}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected input shaped [B, F, T] or [B, 1, F, T], got {tuple(x.shape)}")
    return x


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class EmbeddingModel(nn.Module):
    """What every model of ``MODEL_REGISTRY`` is: genre logits and the song-space embedding
    (the penultimate layer) from one pass; ``embedding_dim`` says the embedding's width."""

    embedding_dim: int

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits [B, n_classes], embedding [B, embedding_dim])`` from one pass."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]``."""
        return self.forward_with_embedding(x)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, embedding_dim]``: the penultimate layer, before its activation."""
        return self.forward_with_embedding(x)[1]


class GenreCNN(EmbeddingModel):
    """Compact CNN over one-channel log-mel tiles; see the module docstring for the layout.

    ``forward`` accepts uint8 tiles (``[B, F, T]`` or ``[B, 1, F, T]``, converted with
    ``tiles_to_input``) or float input that ``tiles_to_input`` already produced. Any tile size
    works (global pooling), as long as the feature map stays at least 1x1.
    """

    def __init__(self, n_classes: int, config: ModelConfig) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        if not config.channels or min(config.channels) < 1:
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {config.channels}")
        if config.stem_stride < 1:
            raise ValueError(f"stem_stride must be at least 1, got {config.stem_stride}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
        self.n_classes = n_classes
        self.config = config
        self.embedding_dim = config.embedding_dim

        stem_kernel = max(3, 2 * config.stem_stride - 1)  # 7x7 at stride 4: windows overlap
        self.stem = _conv_bn_relu(1, config.channels[0], stem_kernel, stride=config.stem_stride)
        blocks = []
        in_channels = config.channels[0]
        for out_channels in config.channels:
            blocks.append(
                nn.Sequential(
                    _conv_bn_relu(in_channels, out_channels),
                    _conv_bn_relu(out_channels, out_channels),
                    nn.MaxPool2d(2),
                )
            )
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        # The embedding is the 128-d layer's output *before* its activation: signed vectors
        # spread over the whole sphere, so cosine similarities between songs are informative
        # (after a ReLU they are non-negative and every pair scores close to 1).
        self.embedding = nn.Linear(2 * in_channels, config.embedding_dim)
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.embedding_dim, n_classes)
        )

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits [B, n_classes], embedding [B, embedding_dim])`` from one pass."""
        features = self.blocks(self.stem(_as_model_input(x)))  # [B, C, F', T']
        over_time = features.mean(dim=2)  # [B, C, T']
        pooled = torch.cat([over_time.mean(dim=2), over_time.amax(dim=2)], dim=1)  # [B, 2C]
        embedding = self.embedding(pooled)
        return self.head(embedding), embedding


# name -> constructor(config, n_classes).
MODEL_REGISTRY: dict[str, Callable[[ModelConfig, int], EmbeddingModel]] = {
    "cnn": lambda config, n_classes: GenreCNN(n_classes, config),
}


def build_model(config: ModelConfig, n_classes: int) -> EmbeddingModel:
    """Build the model ``config.name`` names, with ``n_classes`` outputs."""
    try:
        constructor = MODEL_REGISTRY[config.name]
    except KeyError:
        raise ValueError(f"unknown model name {config.name!r}; known: {sorted(MODEL_REGISTRY)}") from None
    return constructor(config, n_classes)


class TileAugment(nn.Module):
    """SpecAugment-style augmentation of float model input ``[B, 1, F, T]`` (training only).

    In training mode: a random gain shift of up to ``max_gain_db`` dB per tile (clamped to
    the tile range), then one frequency mask of up to ``freq_mask`` mel bins and one time mask
    of up to ``time_mask`` frames, drawn independently per tile (torchaudio's
    ``FrequencyMasking`` / ``TimeMasking`` with ``iid_masks=True``). Masked cells are set to
    ``mask_value`` (0.0 = the middle of the dB range). In eval mode it returns its input as is.
    Randomness comes from torch's global generator, so ``torch.manual_seed`` reproduces it.
    """

    def __init__(
        self,
        freq_mask: int = 24,
        time_mask: int = 32,
        max_gain_db: float = 0.0,
        top_db: float = 80.0,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        if freq_mask < 0 or time_mask < 0 or max_gain_db < 0 or top_db <= 0:
            raise ValueError("freq_mask, time_mask and max_gain_db must be >= 0 and top_db > 0")
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.max_gain_db = max_gain_db
        self.top_db = top_db
        self.mask_value = mask_value
        self.frequency_masking = audio_transforms.FrequencyMasking(freq_mask, iid_masks=True) if freq_mask else None
        self.time_masking = audio_transforms.TimeMasking(time_mask, iid_masks=True) if time_mask else None

    @classmethod
    def from_configs(cls, train: TrainConfig, features: FeatureConfig, max_gain_db: float = 0.0) -> "TileAugment":
        """Masks from ``train.freq_mask`` / ``train.time_mask``; dB scale from ``features.top_db``."""
        return cls(train.freq_mask, train.time_mask, max_gain_db=max_gain_db, top_db=features.top_db)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if not x.is_floating_point() or x.ndim != 4:
            raise ValueError(
                f"TileAugment expects float model input [B, 1, F, T] (tiles_to_input), got {x.dtype} {tuple(x.shape)}"
            )
        if self.max_gain_db > 0:
            # Model input spans top_db dB over a width of 2, so 1 dB = 2 / top_db.
            gain_db = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2 - 1) * self.max_gain_db
            x = (x + gain_db * (2.0 / self.top_db)).clamp(-1.0, 1.0)
        if self.frequency_masking is not None:
            x = self.frequency_masking(x, self.mask_value)
        if self.time_masking is not None:
            x = self.time_masking(x, self.mask_value)
        return x

    def extra_repr(self) -> str:
        return (
            f"freq_mask={self.freq_mask}, time_mask={self.time_mask}, "
            f"max_gain_db={self.max_gain_db}, top_db={self.top_db}, mask_value={self.mask_value}"
        )
