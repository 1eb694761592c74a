"""Training-time augmentation of float model input ``[B, 1, F, T]`` in [-1, 1]: time
stretch, random time crops, frequency shift, gain, another recording chain, and SpecAugment's
masks (torchaudio).
Each is off at 0; randomness comes from torch's global generator, and an augmentation that
is off draws nothing, so turning one on does not change the others' draws before it.
"""

from __future__ import annotations

import torch
import torchaudio.transforms as audio_transforms
from torch import nn
from torch.nn import functional

from genre_batch.config import FeatureConfig, TrainConfig

# Model input for silence: the bottom of the dB range (tiles_to_input maps 0 to -1).
SILENCE = -1.0


def stretch_time(x: torch.Tensor, max_change: float) -> torch.Tensor:
    """Each tile played faster or slower by a factor drawn from [1 - max_change, 1 + max_change]
    (linear interpolation along time), then cut or padded with silence back to its width:
    tempo changes, pitch stays."""
    frames = x.shape[-1]
    factors = 1.0 + (torch.rand(x.shape[0]) * 2 - 1) * max_change
    out = torch.full_like(x, SILENCE)
    for i, factor in enumerate(factors.tolist()):
        width = max(1, round(frames * factor))
        stretched = functional.interpolate(x[i : i + 1], size=(x.shape[-2], width), mode="bilinear", align_corners=False)
        out[i, ..., : min(width, frames)] = stretched[0, ..., :frames]
    return out


def random_crop(x: torch.Tensor, frames: int) -> torch.Tensor:
    """A window of ``frames`` frames from each tile, at a random offset per tile (the models
    pool over time, so they take any width)."""
    if frames >= x.shape[-1]:
        return x
    starts = torch.randint(0, x.shape[-1] - frames + 1, (x.shape[0],))
    return torch.stack([x[i, ..., int(start) : int(start) + frames] for i, start in enumerate(starts)])


def shift_frequency(x: torch.Tensor, max_bins: int) -> torch.Tensor:
    """Each tile moved up or down the mel axis by up to ``max_bins`` bins; the bins moved in
    from outside are silence."""
    shifts = torch.randint(-max_bins, max_bins + 1, (x.shape[0],))
    out = torch.full_like(x, SILENCE)
    bins = x.shape[-2]
    for i, shift in enumerate(shifts.tolist()):
        if shift >= 0:
            out[i, :, shift:, :] = x[i, :, : bins - shift, :]
        else:
            out[i, :, : bins + shift, :] = x[i, :, -shift:, :]
    return out


def rerecord(x: torch.Tensor, strength_db: float, top_db: float, rolloff_db_per_bin: float = 1.5) -> torch.Tensor:
    """Each tile as if recorded through another chain, in the log-mel domain (CLMR's filters,
    noise and gain, Spijkervet & Burgoyne 2021): a spectral tilt of up to ±``strength_db``
    from the lowest mel bin to the highest, a gain of up to ±half of it, a low-pass above a
    random bin in the top ``0.03 × strength_db`` share of the axis (at most 0.9) and a high-pass
    below a random bin in the bottom ``0.01 × strength_db`` share, each rolling off by
    ``rolloff_db_per_bin``, and a flat noise floor up to ``2 × strength_db`` above the bottom
    of the range, added as power. For self-supervised views: a song's recording chain (band
    limits, hiss, level) then no longer tells it apart, its music has to."""
    if strength_db <= 0:
        return x
    batch, _, bins, _ = x.shape
    unit = 2.0 / top_db  # model input per dB

    def draw(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, 1, 1, 1, device=x.device)

    position = torch.linspace(0.0, 1.0, bins, device=x.device).view(1, 1, bins, 1)
    lowpass_from = 1.0 - draw(0.0, min(0.9, 0.03 * strength_db))
    highpass_below = draw(0.0, min(0.9, 0.01 * strength_db))
    shape_db = (draw(-strength_db, strength_db) * (position - 0.5) + draw(-strength_db / 2, strength_db / 2)
                - ((position - lowpass_from).clamp(min=0) + (highpass_below - position).clamp(min=0))
                * (bins - 1) * rolloff_db_per_bin)
    level_db = (x + 1.0) / unit + shape_db  # dB above the bottom of the range
    floor_db = draw(0.0, 2.0 * strength_db)
    level_db = 10.0 * torch.log10(10.0 ** (level_db / 10.0) + 10.0 ** (floor_db / 10.0))
    return (level_db * unit - 1.0).clamp(-1.0, 1.0)


def mixup(x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al. 2018): the batch blended with a shuffled copy of itself by a weight
    drawn from Beta(alpha, alpha); returns (mixed input, the partner of each tile, weight).
    The loss is then ``weight * loss(targets) + (1 - weight) * loss(targets[partner])``."""
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(x.shape[0])
    return weight * x + (1 - weight) * x[partner], partner, weight


class TileAugment(nn.Module):
    """SpecAugment-style augmentation of float model input ``[B, 1, F, T]`` (training only).

    In training mode: a time stretch of up to ``time_stretch`` (a share), a random crop of
    ``crop_frames`` frames, a shift of up to ``freq_shift`` mel bins (each per tile, off at 0),
    a random gain shift of up to ``max_gain_db`` dB per tile (clamped to the tile range),
    another recording chain of strength ``rerecord_db`` (``rerecord``), then one frequency mask
    of up to ``freq_mask`` mel bins and one time mask of up to ``time_mask`` frames, drawn
    independently per tile (torchaudio's ``FrequencyMasking`` / ``TimeMasking`` with
    ``iid_masks=True``). Masked cells are set to ``mask_value`` (0.0 = the middle of the dB
    range). In eval mode it returns its input as is.
    Randomness comes from torch's global generator, so ``torch.manual_seed`` reproduces it.
    """

    def __init__(
        self,
        freq_mask: int = 24,
        time_mask: int = 32,
        max_gain_db: float = 0.0,
        top_db: float = 80.0,
        mask_value: float = 0.0,
        time_stretch: float = 0.0,
        crop_frames: int = 0,
        freq_shift: int = 0,
        rerecord_db: float = 0.0,
    ) -> None:
        super().__init__()
        if min(freq_mask, time_mask, max_gain_db, time_stretch, crop_frames, freq_shift, rerecord_db) < 0 or top_db <= 0:
            raise ValueError("augmentation sizes must be >= 0 and top_db > 0")
        if time_stretch >= 1:
            raise ValueError(f"time_stretch must be below 1, got {time_stretch}")
        self.time_stretch, self.crop_frames, self.freq_shift = time_stretch, crop_frames, freq_shift
        self.rerecord_db = rerecord_db
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.max_gain_db = max_gain_db
        self.top_db = top_db
        self.mask_value = mask_value
        self.frequency_masking = audio_transforms.FrequencyMasking(freq_mask, iid_masks=True) if freq_mask else None
        self.time_masking = audio_transforms.TimeMasking(time_mask, iid_masks=True) if time_mask else None

    @classmethod
    def from_configs(cls, train: TrainConfig, features: FeatureConfig, max_gain_db: float = 0.0,
                     rerecord_db: float = 0.0) -> "TileAugment":
        """Masks, stretch, crop and shift from ``train``; dB scale from ``features.top_db``."""
        return cls(train.freq_mask, train.time_mask, max_gain_db=max_gain_db, top_db=features.top_db,
                   time_stretch=train.time_stretch, crop_frames=train.crop_frames, freq_shift=train.freq_shift,
                   rerecord_db=rerecord_db)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if not x.is_floating_point() or x.ndim != 4:
            raise ValueError(
                f"TileAugment expects float model input [B, 1, F, T] (tiles_to_input), got {x.dtype} {tuple(x.shape)}"
            )
        if self.time_stretch > 0:
            x = stretch_time(x, self.time_stretch)
        if self.crop_frames:
            x = random_crop(x, self.crop_frames)
        if self.freq_shift:
            x = shift_frequency(x, self.freq_shift)
        if self.max_gain_db > 0:
            # Model input spans top_db dB over a width of 2, so 1 dB = 2 / top_db.
            gain_db = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2 - 1) * self.max_gain_db
            x = (x + gain_db * (2.0 / self.top_db)).clamp(-1.0, 1.0)
        if self.rerecord_db > 0:
            x = rerecord(x, self.rerecord_db, self.top_db)
        if self.frequency_masking is not None:
            x = self.frequency_masking(x, self.mask_value)
        if self.time_masking is not None:
            x = self.time_masking(x, self.mask_value)
        return x

    def extra_repr(self) -> str:
        return (
            f"freq_mask={self.freq_mask}, time_mask={self.time_mask}, "
            f"max_gain_db={self.max_gain_db}, top_db={self.top_db}, mask_value={self.mask_value}, "
            f"time_stretch={self.time_stretch}, crop_frames={self.crop_frames}, freq_shift={self.freq_shift}, "
            f"rerecord_db={self.rerecord_db}"
        )
