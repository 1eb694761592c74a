"""What every model family shares: the input conversion, the contract, the embedding head.

A tile is one ``[n_mels, tile_frames]`` uint8 log-mel image (see ``FeatureConfig``): axis -2
is frequency (mel bins, low to high), axis -1 is time (frames). ``tiles_to_input`` turns a
batch of them into the float ``[B, 1, F, T]`` tensor every model consumes; training and
inference share it, so a model never sees differently scaled input in the two.

Every family ends the same way: its features are pooled to one vector per tile, a Linear
layer makes the **embedding** (``embedding_dim``, the penultimate layer, taken *before* its
activation: signed, so cosine similarities between songs spread over [-1, 1]), and the head
is ReLU -> Dropout -> Linear to the genres. Dropout sits after the embedding, so ``embed`` is
deterministic in eval mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genre_batch.config import ModelConfig

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


def as_model_input(x: torch.Tensor) -> torch.Tensor:
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


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int | tuple[int, int] = 1) -> nn.Sequential:
    padding = (kernel_size // 2 if isinstance(kernel_size, int)
               else (kernel_size[0] // 2, kernel_size[1] // 2))
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def strided_stem(config: ModelConfig) -> nn.Sequential:
    """The first layer of the conv families: ``channels[0]`` filters of an odd size wider than
    the stride (7 x 7 at stride 4), so that the strided windows overlap."""
    stride = config.stem_stride
    return conv_bn_relu(1, config.channels[0], max(3, 2 * stride - 1), stride=stride)


def pool_over_time(features: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, 2C]``: the mean and the max over time, side by side."""
    return torch.cat([features.mean(dim=-1), features.amax(dim=-1)], dim=1)


def window_offsets(frames: int, config: ModelConfig) -> list[int]:
    """Where the ``eval_windows`` windows of ``eval_window_frames`` frames start in a tile of
    ``frames`` frames: evenly spaced from the first frame to the last full window, so they
    overlap and cover the tile. One offset (the whole tile) when the windows are off or the
    tile is no wider than a window."""
    width = config.eval_window_frames
    if config.eval_windows < 2 or frames <= width:
        return [0]
    last = frames - width
    return sorted({round(i * last / (config.eval_windows - 1)) for i in range(config.eval_windows)})


def check_config(n_classes: int, config: ModelConfig, needs_channels: int = 1) -> None:
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    if len(config.channels) < needs_channels or min(config.channels, default=1) < 1:
        raise ValueError(f"{config.name}: channels must hold at least {needs_channels} positive ints, "
                         f"got {config.channels}")
    if config.stem_stride < 1:
        raise ValueError(f"stem_stride must be at least 1, got {config.stem_stride}")
    if config.hidden < 1:
        raise ValueError(f"hidden must be at least 1, got {config.hidden}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")


class EmbeddingModel(nn.Module):
    """What every model of ``MODEL_REGISTRY`` is: genre logits and the song-space embedding
    (the penultimate layer) from one pass; ``embedding_dim`` says the embedding's width.

    A family computes ``pooled_features`` (one vector per tile, ``features_dim`` wide) and
    builds its layers first; ``add_head`` then adds ``embedding`` and ``head``.
    """

    embedding_dim: int
    band_mean: torch.Tensor  # [input_bands], when the config has input bands
    band_std: torch.Tensor

    def add_head(self, features_dim: int, n_classes: int, config: ModelConfig) -> None:
        self.n_classes = n_classes
        self.config = config
        self.embedding_dim = config.embedding_dim
        self.embedding = nn.Linear(features_dim, config.embedding_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.embedding_dim, n_classes))
        if config.input_bands:
            # Buffers, not parameters: saved and loaded with the weights, never trained.
            self.register_buffer("band_mean", torch.zeros(config.input_bands))
            self.register_buffer("band_std", torch.ones(config.input_bands))

    def set_band_statistics(self, mean: torch.Tensor | np.ndarray, std: torch.Tensor | np.ndarray) -> None:
        """The training tiles' mean and standard deviation per mel band, in model-input units."""
        if not self.config.input_bands:
            raise ValueError(f"{self.config.name} was built without input_bands: no band statistics to set")
        self.band_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.band_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def normalise_bands(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.input_bands:
            return x
        if x.shape[-2] != self.config.input_bands:
            raise ValueError(f"model input has {x.shape[-2]} mel bands, the model was trained on {self.config.input_bands}")
        return (x - self.band_mean.view(1, 1, -1, 1)) / self.band_std.view(1, 1, -1, 1)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Float model input ``[B, 1, F, T]`` -> ``[B, features_dim]``."""
        raise NotImplementedError

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits [B, n_classes], embedding [B, embedding_dim])`` from one pass; ``x``
        is uint8 tiles or float input that ``tiles_to_input`` made. In eval mode with
        ``eval_windows`` > 1, the mean over the tile's overlapping windows (``window_offsets``)."""
        x = self.normalise_bands(as_model_input(x))
        offsets = [] if self.training else window_offsets(x.shape[-1], self.config)
        if len(offsets) < 2:
            embedding = self.embedding(self.pooled_features(x))
            return self.head(embedding), embedding
        width = self.config.eval_window_frames
        # The windows of every tile in one batch: [W * B, 1, F, width], window-major.
        windows = torch.cat([x[..., start : start + width] for start in offsets])
        embedding = self.embedding(self.pooled_features(windows))
        logits = self.head(embedding)
        batch = x.shape[0]
        return (logits.view(len(offsets), batch, -1).mean(dim=0),
                embedding.view(len(offsets), batch, -1).mean(dim=0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, n_classes]``."""
        return self.forward_with_embedding(x)[0]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``[B, embedding_dim]``: the penultimate layer, before its activation."""
        return self.forward_with_embedding(x)[1]
