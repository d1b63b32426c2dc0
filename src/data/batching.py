"""Whole batches of records: which records an epoch visits, and where their bytes come from.

Per-record `__getitem__` plus a Python collate costs more than a small network's step, so
batches are made whole: in memory by indexing one contiguous tensor with a seeded per-epoch
permutation (the fast path), or from the memory-mapped file one group of batches per read (the
streaming path, for datasets larger than RAM). Both yield identical `(inputs, codes int64 (B,
P))` batches for the same seed and epoch; inputs are uint8 images (B, C, H, W) or float32
waveforms (B, 1, T), exactly as stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

Batch = tuple[torch.Tensor, torch.Tensor]


class EpochBatches:
    """The index batches of one split for one epoch and one rank.

    Lightning calls `set_epoch` on a loader's `.sampler` before every training epoch, so the
    shuffle changes per epoch without any wiring. The permutation is drawn from a
    `torch.Generator` seeded with `seed + epoch`. With several ranks:

    - `pad=True` (training): each rank takes every `world_size`-th index, padded with the start
      of the order (or, with `drop_last`, cut) to equal lengths, so all ranks run the same
      number of steps, as gradient synchronisation needs. Padding repeats at most
      `world_size - 1` records per epoch.
    - `pad=False` (evaluation): rank r takes the r-th of `world_size` contiguous, balanced
      blocks; the blocks are disjoint and cover the split, so every record is evaluated exactly
      once. Ranks may then run one batch more or less, which evaluation allows as long as
      nothing synchronises per step: the task modules update torchmetrics per step and sync
      (summing counts across ranks) only at the epoch's end; a per-step `sync_dist` would hang.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0
        if world_size == 1:
            self.per_rank = n
        elif not pad:
            lo, hi = self.block()
            self.per_rank = hi - lo
        elif drop_last:
            self.per_rank = n // world_size
        else:
            self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def block(self) -> tuple[int, int]:
        """This rank's [start, stop) positions in the epoch order when shards are unpadded."""
        return self.rank * self.n // self.world_size, (self.rank + 1) * self.n // self.world_size

    @property
    def contiguous(self) -> bool:
        """True when this rank's records are one ascending run of indices (in-order batches can
        then be slices)."""
        return not self.shuffle and (self.world_size == 1 or not self.pad)

    def indices(self) -> torch.Tensor:
        """This rank's record order for the current epoch, int64 (per_rank,)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.world_size == 1:
            return order
        if not self.pad:
            lo, hi = self.block()
            return order[lo:hi]
        total = self.per_rank * self.world_size
        if total > self.n:  # pad with the start of the order, as DistributedSampler does
            reps = math.ceil(total / max(self.n, 1))
            order = order.repeat(reps)
        return order[:total][self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.indices()
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


class MemmapBatches(IterableDataset):
    """Batches read straight from a memory-mapped split file (the streaming path).

    `source` is a picklable zero-argument callable returning the (N, ...) mapped array (the
    reader's `VIMHSplit.pixel_source()` or `VIMHDataset.audio_source()`): each worker maps the
    file itself, since a pickled memmap would carry the whole file. Records are read a group of
    consecutive batches at a time (about 4 MiB): one fancy-indexed read with the record indices
    sorted, so pages are touched in file order, then put back in epoch order. Groups, not
    batches, cross the worker queue, because each message costs about a millisecond whatever
    its size. Worker w of W serves groups w, w+W, ..., which a DataLoader's round-robin turns
    back into the exact epoch order. The order lives in a shared-memory tensor rewritten in
    place each epoch, so persistent workers see it.
    """

    GROUP_BYTES = 4 << 20

    def __init__(
        self,
        source: Callable[[], np.ndarray],
        record_nbytes: int,
        codes: np.ndarray,
        rows: np.ndarray | None,
        n_order: int,
        batch_size: int,
        n_batches: int,
    ) -> None:
        self.source = source
        self.codes = np.ascontiguousarray(codes)  # (n, P) uint8, already split-local
        self.rows = rows  # split-local index -> record index in the file (None: identity)
        self.order = torch.zeros(n_order, dtype=torch.int64).share_memory_()
        self.batch_size = batch_size
        self.n_records = min(n_order, n_batches * batch_size)  # less with drop_last
        batch_bytes = batch_size * record_nbytes
        self.group = batch_size * max(1, min(64, self.GROUP_BYTES // max(batch_bytes, 1)))
        self._array = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self.source()
        return self._array

    def fetch(self, local: np.ndarray) -> Batch:
        """Records `local` (split-local indices) in that order: inputs and int64 codes."""
        rec = local if self.rows is None else self.rows[local]
        srt = np.argsort(rec, kind="stable")
        got = self.array()[rec[srt]]
        inputs = np.empty_like(got)
        inputs[srt] = got
        codes = self.codes[local].astype(np.int64)
        return torch.from_numpy(inputs), torch.from_numpy(codes)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = self.order.numpy()
        for start in range(worker * self.group, self.n_records, n_workers * self.group):
            yield self.fetch(order[start : min(start + self.group, self.n_records)])


def _as_is(batch: Batch) -> Batch:
    return batch


class VIMHLoader:
    """An iterable of whole batches that Lightning accepts as a dataloader.

    It is not a `DataLoader`, so Lightning injects no sampler of its own (sharding is done by
    `EpochBatches`); its `.sampler` is what Lightning calls `set_epoch` on. The permutation
    is drawn lazily, on the first batch, so an epoch set after `iter()` still counts.
    `on_device`: the in-memory tensors already live on the accelerator (the GPU fast path);
    batches are gathered there with the epoch's index order, sent once per epoch, so no step
    copies records from the host.
    """

    batch_sampler = None  # Lightning's shuffle check looks for it

    def __init__(
        self,
        batches: EpochBatches,
        *,
        inputs: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        stream: MemmapBatches | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        on_device: bool = False,
    ) -> None:
        if (inputs is None) == (stream is None):
            raise ValueError("give either in-memory inputs and codes or a stream")
        if on_device and inputs is None:
            raise ValueError("on_device needs in-memory inputs and codes")
        self.sampler = batches
        self.on_device = on_device
        self.inputs = inputs
        self.codes = codes
        self.stream = stream
        self.num_workers = num_workers
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._loader = None
        if stream is not None and num_workers > 0:
            self._loader = DataLoader(
                stream,
                batch_size=None,
                num_workers=num_workers,
                pin_memory=self.pin_memory,
                collate_fn=_as_is,
                persistent_workers=persistent_workers,
            )

    @property
    def in_memory(self) -> bool:
        return self.inputs is not None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        if self.in_memory:
            yield from self._iter_memory()
        else:
            yield from self._iter_stream()

    def _iter_memory(self) -> Iterator[Batch]:
        s = self.sampler
        inputs, codes = self.inputs, self.codes
        order, bs = s.indices(), s.batch_size
        if s.contiguous and len(order):
            start, stop = int(order[0]), int(order[-1]) + 1
        elif self.on_device:  # one index transfer per epoch, none per step
            order = order.to(inputs.device, non_blocking=True)
        else:
            flat, shape = inputs.numpy().reshape(len(inputs), -1), inputs.shape[1:]
            codes_np = codes.numpy()
        for i in range(len(s)):
            if s.contiguous:  # in order: a zero-copy slice
                lo = start + i * bs
                hi = min(lo + bs, stop)
                x, y = inputs[lo:hi], codes[lo:hi]
            elif self.on_device:  # gathered where the tensors live
                idx = order[i * bs : (i + 1) * bs]
                x, y = inputs.index_select(0, idx), codes.index_select(0, idx)
            else:
                # numpy's gather is single-threaded and as fast as torch's; torch's
                # index_select stalls on its thread pool when the cores are shared.
                idx = order[i * bs : (i + 1) * bs].numpy()
                x = torch.from_numpy(np.take(flat, idx, axis=0).reshape(len(idx), *shape))
                y = torch.from_numpy(np.take(codes_np, idx, axis=0))
            if self.pin_memory and not self.on_device:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y

    def _iter_stream(self) -> Iterator[Batch]:
        self.stream.order.copy_(self.sampler.indices())
        bs = self.sampler.batch_size
        for x, y in self._loader if self._loader is not None else self.stream:
            if self.pin_memory and self._loader is None:
                x, y = x.pin_memory(), y.pin_memory()
            for s in range(0, len(x), bs):  # groups hold whole batches, the last maybe short
                yield x[s : s + bs], y[s : s + bs]
