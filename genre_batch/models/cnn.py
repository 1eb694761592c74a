"""``cnn``: a compact 2-D CNN over the tile, the project's first model.

::

    stem      conv k x k, stride ``stem_stride`` -> BN -> ReLU        (256x256 -> 64x64 at stride 4)
    blocks    per channel count c: [conv3x3 -> BN -> ReLU] x 2 -> maxpool 2   (64 -> 4 after 4 blocks)
    pool      mean over frequency, then [mean over time ; max over time]    -> 2 * channels[-1]
    embedding Linear -> ``embedding_dim``; head ReLU -> Dropout -> Linear

Any tile size works (global pooling), as long as the feature map stays at least 1x1.
"""

from __future__ import annotations

import torch
from torch import nn

from genre_batch.config import ModelConfig
from genre_batch.models.base import EmbeddingModel, check_config, conv_bn_relu, pool_over_time, strided_stem


class GenreCNN(EmbeddingModel):
    """Compact CNN over one-channel log-mel tiles; see the module docstring for the layout.

    ``forward`` accepts uint8 tiles (``[B, F, T]`` or ``[B, 1, F, T]``, converted with
    ``tiles_to_input``) or float input that ``tiles_to_input`` already produced.
    """

    def __init__(self, n_classes: int, config: ModelConfig) -> None:
        super().__init__()
        check_config(n_classes, config)
        self.stem = strided_stem(config)
        blocks = []
        in_channels = config.channels[0]
        for out_channels in config.channels:
            blocks.append(nn.Sequential(
                conv_bn_relu(in_channels, out_channels),
                conv_bn_relu(out_channels, out_channels),
                nn.MaxPool2d(2),
            ))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.add_head(2 * in_channels, n_classes, config)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(x))  # [B, C, F', T']
        return pool_over_time(features.mean(dim=2))
