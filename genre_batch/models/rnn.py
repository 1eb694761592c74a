"""``rnn``: an LSTM over mel frames, no convolution (the RNN of the CNN / RNN / CRNN comparison
this project grows from).

::

    bands     average the mel bins into ``channels[0]`` bands (any n_mels)  -> [B, bands, T]
    frames    average ``stem_stride`` frames into one step               -> T / stem_stride steps
    norm      LayerNorm per step
    LSTM      2 layers, ``hidden`` units each way                          -> [B, steps, 2 * hidden]
    pool      [mean over time ; max over time]                           -> 4 * hidden
    embedding Linear -> ``embedding_dim``; head ReLU -> Dropout -> Linear
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from genre_batch.config import ModelConfig
from genre_batch.models.base import EmbeddingModel, check_config, pool_over_time


class GenreRNN(EmbeddingModel):
    def __init__(self, n_classes: int, config: ModelConfig) -> None:
        super().__init__()
        check_config(n_classes, config)
        self.bands = config.channels[0]
        self.frames_per_step = config.stem_stride
        self.norm = nn.LayerNorm(self.bands)
        self.lstm = nn.LSTM(self.bands, config.hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.add_head(4 * config.hidden, n_classes, config)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        steps = max(1, x.shape[-1] // self.frames_per_step)
        frames = functional.adaptive_avg_pool2d(x, (self.bands, steps))[:, 0]  # [B, bands, steps]
        sequence, _ = self.lstm(self.norm(frames.transpose(1, 2)))  # [B, steps, 2H]
        return pool_over_time(sequence.transpose(1, 2))
