"""Training-time augmentation of float model input (torchaudio's SpecAugment masks)."""

from __future__ import annotations

import torch
import torchaudio.transforms as audio_transforms
from torch import nn

from genre_batch.config import FeatureConfig, TrainConfig


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
