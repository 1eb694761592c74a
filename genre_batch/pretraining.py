"""One worker's self-supervised training (no Ray): a model family's encoder and a projection
head learn, from pairs of views of the same songs, to tell songs apart (``contrastive``).

The checkpoint is the train job's (``checkpoint.checkpoint_state``: weights, optimiser, feature
and model configs, history, ``weights_only`` loading) with ``extra["kind"] = "pretrain"`` and
the projection head beside the weights; its genre head is a placeholder of one class
(``checkpoint.PRETRAIN_LABEL``). ``checkpoint.init_from_pretrain`` starts a genre model from it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from genre_batch.checkpoint import (
    KIND_KEY,
    PRETRAIN_KIND,
    PRETRAIN_LABEL,
    CheckpointError,
    checkpoint_state,
    is_pretrain,
    restore_training_state,
    unwrap_model,
)
from genre_batch.config import FeatureConfig, TrainConfig, ensure_same_features
from genre_batch.contrastive import ProjectionHead, gather_views, nt_xent, two_views
from genre_batch.models import build_model
from genre_batch.models.augment import TileAugment
from genre_batch.training import cosine_lr

PROJECTION_HEAD = "projection_head"
# Views are crops of this many frames of a tile (the rest of the tile is what varies).
VIEW_FRAMES = 192
TEMPERATURE = 0.1
# Each view goes through another recording chain of this strength (models.augment.rerecord):
# the genre precision@10 of a pretrain-only index on the hard demo is 0.575 with it, 0.84x the
# supervised index's, and 0.45 without it (benchmarks/RESULTS.md, "Pretraining with another
# recording chain per view").
RERECORD_DB = 20.0


class ContrastiveNet(nn.Module):
    """The encoder (a model family, up to its embedding) and the projection head, as one module
    so that DDP wraps and synchronises both."""

    def __init__(self, encoder: nn.Module, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        # The family's genre head (a one-class placeholder) takes no part: frozen, so that DDP
        # does not wait for its gradients.
        for parameter in encoder.head.parameters():  # type: ignore[union-attr]
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.embed(x))  # type: ignore[operator]


class PretrainLoop:
    """A worker's pretraining state and its epochs over pairs of tiles (``uint8`` tiles of the
    same songs, ``[B, F, T]`` twice)."""

    def __init__(self, config: TrainConfig, features: FeatureConfig, device: torch.device | str = "cpu",
                 seed: int | None = None, wrap_model: Callable[[nn.Module], nn.Module] | None = None,
                 temperature: float = TEMPERATURE, view_frames: int = VIEW_FRAMES,
                 rerecord_db: float = RERECORD_DB) -> None:
        seed = config.seed if seed is None else seed
        torch.manual_seed(seed)
        np.random.seed(seed)
        self.config, self.features, self.device = config, features, torch.device(device)
        self.temperature, self.view_frames = temperature, view_frames
        net = ContrastiveNet(build_model(config.model, 1), ProjectionHead(config.model.embedding_dim))
        self.net = wrap_model(net) if wrap_model else net.to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.augment = TileAugment.from_configs(config, features, rerecord_db=rerecord_db).to(self.device).train()
        self.start_epoch = 0
        self.songs_in_last_batch = 0
        self.history: list[dict[str, float]] = []

    @property
    def inner(self) -> ContrastiveNet:
        net = unwrap_model(self.net)
        assert isinstance(net, ContrastiveNet)
        return net

    def step(self, tiles_a: torch.Tensor, tiles_b: torch.Tensor) -> float:
        """One optimiser step on a batch of pairs; returns its loss."""
        self.net.train()
        view_a, view_b = two_views(tiles_a.to(self.device), tiles_b.to(self.device), self.augment, self.view_frames)
        # Both views in one pass, so BatchNorm sees the whole batch, as the loss does.
        projected = self.net(torch.cat([view_a, view_b]))
        local_a, local_b = projected.chunk(2)
        every_a, every_b = gather_views(local_a), gather_views(local_b)
        self.songs_in_last_batch = int(every_a.shape[0])  # every worker's songs: the negatives
        loss = nt_xent(every_a, every_b, self.temperature)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.item())

    def run_epoch(self, epoch: int, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Epoch ``epoch`` (0-based) on the cosine learning-rate curve; its metrics join the history."""
        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = cosine_lr(self.config.learning_rate, epoch, self.config.epochs)
        losses, tiles, songs = [], 0, []
        for tiles_a, tiles_b in batches:
            losses.append(self.step(tiles_a, tiles_b))
            tiles += 2 * len(tiles_a)
            songs.append(self.songs_in_last_batch)
        seconds = time.perf_counter() - started
        metrics = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                   "steps": float(len(losses)), "songs_per_batch": float(np.mean(songs)) if songs else 0.0,
                   "tiles_per_s": tiles / seconds, "epoch_seconds": seconds}
        self.history.append(metrics)
        return metrics

    def checkpoint_state(self, epoch: int, metrics: dict[str, float]) -> dict[str, Any]:
        inner = self.inner
        return checkpoint_state(
            inner.encoder, self.optimizer, [PRETRAIN_LABEL], self.features, self.config.model, epoch, metrics,
            self.history, extra={KIND_KEY: PRETRAIN_KIND, PROJECTION_HEAD: inner.head.state_dict(),
                                 "train_config": self.config.to_dict()},
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Continue a pretrain run from its checkpoint (same tiles, else a named error)."""
        if not is_pretrain(state):
            raise CheckpointError("cannot resume: the run's checkpoints are a genre model's, not a pretrain run's")
        ensure_same_features(FeatureConfig.from_dict(state["feature_config"]), self.features, "the published tiles")
        inner = self.inner
        self.start_epoch = restore_training_state(state, inner.encoder, None)
        inner.head.load_state_dict(state["extra"][PROJECTION_HEAD])
        if state.get("optimizer_state") is not None:
            self.optimizer.load_state_dict(state["optimizer_state"])
        self.history = [dict(row) for row in state.get("history", [])]
