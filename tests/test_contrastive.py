"""The self-supervised pieces without Ray: the NT-Xent loss, the pair plan, the views."""

from __future__ import annotations

import math

import pytest
import torch

from genre_batch.contrastive import ProjectionHead, gather_views, nt_xent, pair_plan, shard_of, two_views
from genre_batch.models.augment import TileAugment


def test_the_loss_is_lower_when_each_view_is_nearer_its_partner():
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    near = nt_xent(a, a + 0.01 * torch.randn(8, 16))
    far = nt_xent(a, torch.randn(8, 16))
    assert near < far
    assert near < math.log(2 * 8 - 1) < far + 1.0  # chance: 1 partner among 2N - 1 others


def test_the_loss_by_hand_for_two_songs():
    """Two songs, orthogonal: each view's partner has cosine 1, the other song's views 0."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    # For each view: logits (partner 1/t, the other song's two views 0/t) -> -log softmax.
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * math.exp(0)))
    assert float(nt_xent(a, a.clone(), temperature=t)) == pytest.approx(expected, rel=1e-6)


def test_the_loss_does_not_depend_on_the_order_of_the_songs():
    torch.manual_seed(1)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    order = torch.randperm(6)
    assert float(nt_xent(a, b)) == pytest.approx(float(nt_xent(a[order], b[order])), rel=1e-5)
    with pytest.raises(ValueError):
        nt_xent(a, b[:5])


def test_the_pair_plan_never_puts_a_song_twice_in_a_batch_and_covers_every_song():
    songs = {f"s{i:02d}": (i % 4) + 1 for i in range(23)} | {"empty": 0}
    batches = pair_plan(songs, batch_size=5, seed=3, epoch=2)
    assert [len(batch) for batch in batches] == [5, 5, 5, 5, 3]
    for batch in batches:
        assert len({pair.song_id for pair in batch}) == len(batch)  # no song is its own negative
    planned = [pair for batch in batches for pair in batch]
    assert sorted(pair.song_id for pair in planned) == sorted(s for s, n in songs.items() if n)
    for pair in planned:
        n = songs[pair.song_id]
        assert 0 <= pair.tile_a < n and 0 <= pair.tile_b < n
        assert (pair.tile_a != pair.tile_b) or n == 1  # two tiles of the song when it has two
    assert pair_plan(songs, 5, 3, 2) == batches  # a pure function of songs, seed and epoch
    assert pair_plan(songs, 5, 3, 3) != batches
    with pytest.raises(ValueError):
        pair_plan(songs, 1, 0, 0)


def test_each_worker_takes_its_own_songs_of_every_batch():
    batches = pair_plan({f"s{i}": 2 for i in range(10)}, batch_size=4, seed=0, epoch=0)  # 4, 4, 2
    parts = [shard_of(batches, rank, 2) for rank in (0, 1)]
    assert [len(part) for part in parts] == [2, 2]  # the last batch (2 songs) gives a worker one: dropped
    for first, second in zip(*parts):
        assert not {p.song_id for p in first} & {p.song_id for p in second}


def test_without_a_process_group_the_views_are_the_local_ones():
    z = torch.randn(4, 3, requires_grad=True)
    assert gather_views(z) is z


def test_two_views_differ_and_have_the_crop_width():
    torch.manual_seed(0)
    tiles = torch.randint(0, 256, (3, 64, 128), dtype=torch.uint8)
    augment = TileAugment(freq_mask=8, time_mask=8).train()
    a, b = two_views(tiles, tiles, augment, crop_frames=96)
    assert a.shape == b.shape == (3, 1, 64, 96)
    assert not torch.equal(a, b)
    head = ProjectionHead(embedding_dim=128)
    assert head(torch.randn(3, 128)).shape == (3, 64)
