"""``resnet``: residual blocks from scratch, after the short-chunk ResNet of Won et al. 2020
("Evaluation of CNN-based automatic music tagging models": the simple strong default), sized
for a CPU: a strided stem and one residual block per stage, each halving both axes.

::

    stem      conv k x k, stride ``stem_stride`` -> BN -> ReLU          (256x256 -> 64x64 at stride 4)
    stages    per channel count c: a residual block of stride 2:
              conv3x3 (stride 2) -> BN -> ReLU -> conv3x3 -> BN, plus the input (a 1x1 conv
              of stride 2 and BN where the shape changes), then ReLU      (64 -> 4 after 4 stages)
    pool      mean over frequency, then [mean over time ; max over time]   -> 2 * channels[-1]
    embedding Linear -> ``embedding_dim``; head ReLU -> Dropout -> Linear
"""

from __future__ import annotations

import torch
from torch import nn

from genre_batch.config import ModelConfig
from genre_batch.models.base import EmbeddingModel, check_config, pool_over_time, strided_stem


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.shortcut(x))


class GenreResNet(EmbeddingModel):
    def __init__(self, n_classes: int, config: ModelConfig) -> None:
        super().__init__()
        check_config(n_classes, config)
        self.stem = strided_stem(config)
        stages = []
        in_channels = config.channels[0]
        for out_channels in config.channels:
            stages.append(ResidualBlock(in_channels, out_channels))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.add_head(2 * in_channels, n_classes, config)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        return pool_over_time(self.stages(self.stem(x)).mean(dim=2))
