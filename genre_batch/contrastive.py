"""Self-supervised learning from every song, labelled or not: SimCLR-style contrastive pairs.

Two differently cropped and augmented views of the same song (two of its tiles, or one tile
twice when it has only one) are a positive pair; every other song of the batch, on every
worker, is a negative (NT-Xent, Chen et al. 2020, on a small projection head over the
128-d embedding). Here, without Ray: the loss, the head, the pair plan (which tiles of which
songs make each batch, never a song twice in one batch), the gathering of negatives across
DDP workers, and the views. The Ray Train job is ``pipelines/pretrain.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from genre_batch.models.augment import TileAugment, random_crop


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent over a batch of pairs: ``a[i]`` and ``b[i]`` ([N, D]) are two views of song i,
    every other of the 2N views is a negative for both. Cosine similarities over
    ``temperature``; the mean over the 2N views of the cross-entropy of finding its partner."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"views must be two [N, D] tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = a.shape[0]
    views = functional.normalize(torch.cat([a, b]), dim=1)
    logits = views @ views.T / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is not its own negative
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(a.device)
    return functional.cross_entropy(logits, partners)


class ProjectionHead(nn.Module):
    """The small MLP the loss sees (SimCLR's g): the embedding below it is what is kept."""

    def __init__(self, embedding_dim: int = 128, hidden: int = 128, out: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


@dataclass(frozen=True)
class Pair:
    song_id: str
    tile_a: int  # index of the tile within the song (0-based, in time order)
    tile_b: int


def _song_seed(song_id: str, seed: int, epoch: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{epoch}:{song_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def pair_plan(song_tiles: Mapping[str, int], batch_size: int, seed: int, epoch: int) -> list[list[Pair]]:
    """One epoch's batches: every song once, in batches of ``batch_size`` distinct songs (the
    last may be smaller), each with two of its tiles drawn without replacement (one tile twice
    when it has one). A pure function of the songs, seed and epoch, so every worker and every
    resumed run plans the same epoch."""
    if batch_size < 2:
        raise ValueError(f"a contrastive batch needs at least 2 songs, got batch_size {batch_size}")
    songs = sorted(song_id for song_id, n in song_tiles.items() if n > 0)
    order = np.random.default_rng([seed, epoch]).permutation(len(songs))
    pairs = []
    for index in order:
        song_id = songs[int(index)]
        n = int(song_tiles[song_id])
        rng = np.random.default_rng(_song_seed(song_id, seed, epoch))
        a, b = (0, 0) if n == 1 else (int(x) for x in rng.choice(n, size=2, replace=False))
        pairs.append(Pair(song_id, a, b))
    return [pairs[start : start + batch_size] for start in range(0, len(pairs), batch_size)]


def shard_of(batches: Sequence[Sequence[Pair]], rank: int, world: int) -> list[list[Pair]]:
    """This worker's part of each global batch (a slice of its songs); batches too small to give
    every worker two songs are dropped, so that every worker takes the same number of steps."""
    out = []
    for batch in batches:
        if len(batch) < 2 * world:
            continue
        per_worker = len(batch) // world
        out.append(list(batch[rank * per_worker : (rank + 1) * per_worker]))
    return out


def gather_views(local: torch.Tensor) -> torch.Tensor:
    """Every worker's projected views, concatenated in rank order, with this worker's own rows
    keeping their gradient (all_gather returns tensors without one): the negatives of the
    global batch. Without a process group, the local views."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local.detach().contiguous())
    gathered[dist.get_rank()] = local
    return torch.cat(gathered)


def two_views(tiles_a: torch.Tensor, tiles_b: torch.Tensor, augment: TileAugment,
              crop_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Float model input of both views: a random crop of ``crop_frames`` of each tile, then the
    training augmentation (masks, stretch, shift, gain: ``augment`` in training mode)."""
    from genre_batch.models import tiles_to_input

    views = []
    for tiles in (tiles_a, tiles_b):
        x = tiles_to_input(tiles)
        if crop_frames:
            x = random_crop(x, crop_frames)
        views.append(augment(x))
    return views[0], views[1]
