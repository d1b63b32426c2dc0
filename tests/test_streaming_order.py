"""The streaming path's block order: every record once per epoch, uniform placement, local
reads, disjoint parts per rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.batching import BLOCKS_PER_WINDOW, EpochBatches, MemmapBatches, block_order
from src.data.datamodule import VIMHDataModule
from src.errors import ConfigError
from tests.helpers.vimh import make_vimh


def runs(indices: torch.Tensor) -> int:
    """How many runs of consecutive records a set of indices reads."""
    s = np.unique(indices.numpy())
    return 1 + int((np.diff(s) != 1).sum()) if len(s) else 0


@pytest.mark.parametrize(("n", "window"), [(1, 8), (7, 8), (100, 16), (1000, 64), (1003, 100)])
def test_every_record_once_and_reads_stay_local(n, window):
    for epoch in range(3):
        order = block_order(n, window, torch.Generator().manual_seed(epoch))
        assert sorted(order.tolist()) == list(range(n))
        for lo in range(0, n, window):  # each window reads at most B + 1 runs of the file
            assert runs(order[lo : lo + window]) <= BLOCKS_PER_WINDOW + 1


def test_block_order_is_uniform_over_the_split_and_mixes_blocks():
    n, window, epochs = 1024, 128, 800
    block = window // BLOCKS_PER_WINDOW
    hits = np.zeros((n, n // window), dtype=np.int64)  # record -> window it landed in
    distinct = []
    for e in range(epochs):
        order = block_order(n, window, torch.Generator().manual_seed(e)).numpy()
        hits[order, np.arange(n) // window] += 1
        distinct.append(len(np.unique(order[:16] // block)))  # blocks in the first batch
    # every record is equally likely in every window: 100 expected per cell
    expected = epochs / (n // window)
    assert np.abs(hits.sum(0) / n - expected).max() < 1e-9  # windows hold n/8 records each
    assert np.abs(hits - expected).max() < 5 * np.sqrt(expected)
    chi2 = ((hits - expected) ** 2 / expected).sum(1)  # per record, 7 degrees of freedom
    assert 5 < chi2.mean() < 9
    # a batch of 16 from a window of 8 blocks draws on most of them
    assert np.mean(distinct) > 6


@pytest.mark.parametrize(("n", "world", "drop_last"), [(1000, 2, False), (1001, 3, False)])
def test_ranks_stream_disjoint_parts(n, world, drop_last):
    kw = dict(shuffle=True, seed=3, window=64, world_size=world, drop_last=drop_last)
    parts = []
    for rank in range(world):
        b = EpochBatches(n, 16, rank=rank, **kw)
        b.set_epoch(5)
        parts.append(b.indices())
    assert len({len(p) for p in parts}) == 1  # equal steps on every rank
    both = torch.cat(parts).tolist()
    assert set(both) == set(range(n))
    assert len(both) - len(set(both)) == (-n) % world
    # each rank's reads: its own windows (a read may straddle two), a few blocks each
    block = 64 // BLOCKS_PER_WINDOW
    for p in parts:
        for lo in range(0, len(p), 64):
            assert len(set((p[lo : lo + 64] // block).tolist())) <= 2 * (BLOCKS_PER_WINDOW + 1)
    cut = [EpochBatches(n, 16, rank=r, **{**kw, "drop_last": True}) for r in range(world)]
    a = [c.indices() for c in cut]
    joined = torch.cat(a).tolist()
    assert len(joined) == n // world * world and len(set(joined)) == len(joined)  # no repeats


def test_streaming_loader_serves_every_record_once_per_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(MemmapBatches, "GROUP_BYTES", 2048)  # several windows of 32 records
    folder = make_vimh(tmp_path, n_train=300, n_val=16, n_test=16, learnable=False)
    dm = VIMHDataModule(folder, batch_size=8, in_memory="auto", max_memory_gb=1e-6)
    loader = dm.train_dataloader()
    assert not loader.in_memory and loader.sampler.window == 32
    images = dm.dataset["train"].images
    stored = sorted(bytes(r) for r in images.reshape(len(images), -1))
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        x = torch.cat([x for x, _ in loader])
        assert sorted(bytes(r) for r in x.reshape(len(x), -1).numpy()) == stored
        orders.append(loader.sampler.indices())
    assert not torch.equal(orders[0], orders[1])  # a new order every epoch
    # in memory the default stays a uniform permutation; block order on request
    assert VIMHDataModule(folder, in_memory=True).train_dataloader().sampler.window is None
    forced = VIMHDataModule(folder, in_memory=True, shuffle_order="block", batch_size=8)
    assert forced.train_dataloader().sampler.window == 32
    assert forced.val_dataloader().sampler.window is None  # evaluation is never shuffled
    with pytest.raises(ConfigError, match="shuffle_order must be one of"):
        VIMHDataModule(folder, shuffle_order="random")
