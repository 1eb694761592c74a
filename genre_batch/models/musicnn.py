"""``musicnn``: musically motivated filters for small data (Pons and Serra 2019, "musicnn:
pre-trained convolutional neural networks for music audio tagging"; Pons et al. 2016,
"Experimenting with musically motivated convolutional neural networks").

The front end's filter shapes say what they may learn: *vertical* filters spanning a large
share of the mel axis learn timbre (and, being narrow in time, nothing about rhythm), and
*horizontal* filters over the mel-averaged energy learn tempo and rhythm patterns. With few
labelled songs, such a front end has far fewer ways to memorise a tile than a square-filter CNN.

::

    bands      average the mel bins into 96 bands (any n_mels)               -> [B, 1, 96, T]
    timbre     per height h in (0.4, 0.7) x 96 and width w in (1, 7): conv h x w,
               ``channels[0]`` filters -> BN -> ReLU -> max over frequency     -> [B, c0, T] each
    rhythm     the mean over frequency; per length l in (128, 64, 32) frames (3.0 / 1.5 / 0.75 s
               at 43 frames/s): conv1d of length l, ``channels[0]`` filters -> BN -> ReLU -> [B, c0, T] each
    front      the 7 branches side by side, then max-pooled over ``stem_stride`` frames
    mid end    3 conv1d layers of width 7, ``channels[-1]`` filters, BN, ReLU; the 2nd and 3rd add
               their input (residual)
    pool       front and mid-end outputs side by side (dense), [mean ; max over time]
    embedding  Linear -> ``embedding_dim``; head ReLU -> Dropout -> Linear
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from genre_batch.config import ModelConfig
from genre_batch.models.base import EmbeddingModel, check_config, pool_over_time

BANDS = 96
TIMBRE_HEIGHTS = (0.4, 0.7)  # shares of the mel axis
TIMBRE_WIDTHS = (1, 7)  # frames
RHYTHM_LENGTHS = (128, 64, 32)  # frames
MID_END_WIDTH = 7


def _conv1d_bn_relu(in_channels: int, out_channels: int, length: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, length, padding=length // 2, bias=False),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(inplace=True),
    )


class GenreMusicnn(EmbeddingModel):
    def __init__(self, n_classes: int, config: ModelConfig) -> None:
        super().__init__()
        check_config(n_classes, config)
        filters, width = config.channels[0], config.channels[-1]
        self.timbre = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1, filters, (int(share * BANDS), frames), padding=(0, frames // 2), bias=False),
                nn.BatchNorm2d(filters),
                nn.ReLU(inplace=True),
            )
            for share in TIMBRE_HEIGHTS for frames in TIMBRE_WIDTHS
        )
        self.rhythm = nn.ModuleList(_conv1d_bn_relu(1, filters, length) for length in RHYTHM_LENGTHS)
        front = filters * (len(self.timbre) + len(self.rhythm))
        self.frames_per_step = config.stem_stride
        self.mid_end = nn.ModuleList(
            [_conv1d_bn_relu(front, width, MID_END_WIDTH)]
            + [_conv1d_bn_relu(width, width, MID_END_WIDTH) for _ in range(2)]
        )
        self.add_head(2 * (front + 3 * width), n_classes, config)

    def front_end(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1, F, T]`` -> ``[B, 7 * channels[0], T / stem_stride]``."""
        frames = x.shape[-1]
        bands = functional.adaptive_avg_pool2d(x, (BANDS, frames))
        branches = [branch(bands).amax(dim=2) for branch in self.timbre]  # max over frequency
        energy = bands.mean(dim=2)  # [B, 1, T]
        branches += [branch(energy)[..., :frames] for branch in self.rhythm]  # even lengths pad one over
        return functional.max_pool1d(torch.cat(branches, dim=1), self.frames_per_step, ceil_mode=True)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        front = self.front_end(x)
        outputs = [front]
        for index, layer in enumerate(self.mid_end):
            out = layer(outputs[-1])
            outputs.append(out + outputs[-1] if index > 0 else out)
        return pool_over_time(torch.cat(outputs, dim=1))
