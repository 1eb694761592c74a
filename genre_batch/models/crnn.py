"""``crnn``: a convolutional front end, then a bidirectional GRU over time (Choi et al. 2017,
"Convolutional recurrent neural networks for music classification": the best model of the
CNN / RNN / CRNN comparison this project grows from).

::

    stem      conv k x k, stride ``stem_stride`` -> BN -> ReLU         (256x256 -> 64x64 at stride 4)
    blocks    per channel count c: conv3x3 -> BN -> ReLU -> maxpool; the first half of the
              blocks pool frequency and time by 2, the rest frequency only   (64x64 -> 4x16)
    collapse  mean over the remaining frequency                     -> [B, C, T'] (T' = 16)
    GRU       2 layers, ``hidden`` units each way, over the T' steps -> [B, T', 2 * hidden]
    pool      [mean over time ; max over time]                       -> 4 * hidden
    embedding Linear -> ``embedding_dim``; head ReLU -> Dropout -> Linear

The convolutions learn local timbre, the GRU how it unfolds over the tile's ~6 s.
"""

from __future__ import annotations

import torch
from torch import nn

from genre_batch.config import ModelConfig
from genre_batch.models.base import EmbeddingModel, check_config, conv_bn_relu, pool_over_time, strided_stem


class GenreCRNN(EmbeddingModel):
    def __init__(self, n_classes: int, config: ModelConfig) -> None:
        super().__init__()
        check_config(n_classes, config)
        self.stem = strided_stem(config)
        blocks = []
        in_channels = config.channels[0]
        pools_time = (len(config.channels) + 1) // 2
        for index, out_channels in enumerate(config.channels):
            pool = (2, 2) if index < pools_time else (2, 1)
            blocks.append(nn.Sequential(conv_bn_relu(in_channels, out_channels), nn.MaxPool2d(pool)))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.gru = nn.GRU(in_channels, config.hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.add_head(4 * config.hidden, n_classes, config)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.stem(x)).mean(dim=2)  # [B, C, T']
        sequence, _ = self.gru(features.transpose(1, 2))  # [B, T', 2H]
        return pool_over_time(sequence.transpose(1, 2))
