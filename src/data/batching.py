"""Whole batches of records: which records an epoch visits, and where their bytes come from.

Per-record `__getitem__` plus a Python collate costs more than a small network's step, so
batches are made whole: in memory by indexing one contiguous tensor with a seeded per-epoch
permutation (the fast path), or from the memory-mapped file one group of batches per read (the
streaming path, for datasets larger than RAM). Given the same order (a uniform permutation, or
the block order that keeps the streaming path's reads local) both yield identical `(inputs,
codes int64 (B, P))` batches for the same seed and epoch; inputs are uint8 images (B, C, H, W)
or float32 waveforms (B, 1, T), exactly as stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

Batch = tuple[torch.Tensor, torch.Tensor]

BLOCKS_PER_WINDOW = 8


def block_order(
    n: int, window: int, generator: torch.Generator, blocks_per_window: int = BLOCKS_PER_WINDOW
) -> torch.Tensor:
    """A shuffled order of `range(n)` that a reader can follow with a few long reads.

    The records are cut into blocks of `ceil(window / blocks_per_window)` consecutive records;
    the blocks are put in a uniformly random order, and the records inside each `window`
    consecutive positions of that order (about `blocks_per_window` blocks) are put in a
    uniformly random order. Guarantees: every record exactly once; every block equally likely
    at every place of the block order, so every record is equally likely in every window (up to
    the shift the split's one short block causes); a window (one read of the streaming path)
    touches at most `blocks_per_window + 1` runs of the file.
    Not guaranteed: records of one block always share a window. Generated datasets store
    records in the order their labels were drawn (independently), so this carries no
    information about them; for a file sorted by label it would.
    """
    if n <= 0:
        return torch.zeros(0, dtype=torch.int64)
    # Index arithmetic in numpy: torch's thread pool can stall on these small ops when the
    # cores are shared; the random draws stay on the seeded torch.Generator.
    window = max(1, min(window, n))
    block = math.ceil(window / blocks_per_window)
    n_blocks = math.ceil(n / block)
    starts = torch.randperm(n_blocks, generator=generator).numpy() * block
    lengths = np.minimum(n - starts, block)
    first = np.cumsum(lengths) - lengths  # where each block lands in the order
    order = np.repeat(starts - first, lengths) + np.arange(n)
    for lo in range(0, n, window):
        hi = min(lo + window, n)
        order[lo:hi] = order[lo:hi][torch.randperm(hi - lo, generator=generator).numpy()]
    return torch.from_numpy(order)


class EpochBatches:
    """The index batches of one split for one epoch and one rank.

    Lightning calls `set_epoch` on a loader's `.sampler` before every training epoch, so the
    shuffle changes per epoch without any wiring. The order is drawn from a `torch.Generator`
    seeded with `seed + epoch`: a uniform permutation, or with `window` a `block_order` (the
    streaming path's, whose reads then stay local). With several ranks:

    - `pad=True` (training): each rank takes every `world_size`-th index of a permutation, or
      its own contiguous part of a block order (its own windows, so each rank reads a disjoint
      part of the file), padded with the start of the order (or, with `drop_last`, cut) to
      equal lengths, so all ranks run the same number of steps, as gradient synchronisation
      needs. Padding repeats at most `world_size - 1` records per epoch.
    - `pad=False` (evaluation): rank r takes the r-th of `world_size` contiguous, balanced
      blocks; the blocks are disjoint and cover the split, so every record is evaluated exactly
      once. Ranks may then run one batch more or less, which evaluation allows as long as
      nothing synchronises per step: the task modules update torchmetrics per step and sync
      (summing counts across ranks) only at the epoch's end; a per-step `sync_dist` would hang.

    `weights` (n,) (training with class-balanced sampling): each epoch draws n records with
    replacement, record i with probability proportional to `weights[i]`, from the same seeded
    generator; it replaces the permutation (and the block order: reads are then scattered).
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
        window: int | None = None,
        pad: bool = True,
        weights: torch.Tensor | None = None,
    ) -> None:
        if weights is not None and (weights.shape != (n,) or not bool((weights >= 0).all())):
            raise ValueError(f"weights must be {n} non-negative numbers, got {weights.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 record, got {window}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.window = window
        self.pad = pad
        self.weights = None if weights is None else weights.double()
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
        blocks = self.shuffle and self.window is not None and self.weights is None
        if self.shuffle and self.weights is not None:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        elif blocks:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = block_order(self.n, self.window, g)
        elif self.shuffle:
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
        if blocks:  # each rank its own run of windows
            return order[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]
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
        self.start = torch.zeros(1, dtype=torch.int64).share_memory_()  # records to skip
        self.batch_size = batch_size
        self.n_records = min(n_order, n_batches * batch_size)  # less with drop_last
        self.group = self.group_records(batch_size, record_nbytes)
        self._array = None

    @classmethod
    def group_records(cls, batch_size: int, record_nbytes: int) -> int:
        """Records per read (whole batches, about GROUP_BYTES): also the block order's window,
        so that one read covers one window."""
        batch_bytes = batch_size * record_nbytes
        return batch_size * max(1, min(64, cls.GROUP_BYTES // max(batch_bytes, 1)))

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
        first = int(self.start[0])
        for start in range(first + worker * self.group, self.n_records, n_workers * self.group):
            yield self.fetch(order[start : min(start + self.group, self.n_records)])


def _as_is(batch: Batch) -> Batch:
    return batch


class VIMHLoader:
    """An iterable of whole batches that Lightning accepts as a dataloader.

    It is not a `DataLoader`, so Lightning injects no sampler of its own (sharding is done by
    `EpochBatches`); its `.sampler` is what Lightning calls `set_epoch` on. The permutation
    is drawn lazily, on the first batch, so an epoch set after `iter()` still counts.

    It is resumable: `state_dict` (saved in checkpoints by Lightning) holds the epoch and how
    many batches of it were taken, and after `load_state_dict` the next iteration over that
    epoch starts where the saved one stopped, so a run resumed mid-epoch sees exactly the
    batches an uninterrupted run would. (Lightning reads a loader with a length without
    reading ahead, so batches taken are batches trained on.)

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
        self._taken = 0  # batches of the current iteration handed out so far
        self._resume: dict | None = None
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

    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "batches": self._taken}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)

    def __iter__(self) -> Iterator[Batch]:
        skip, resume, self._resume = 0, self._resume, None
        if resume is not None and resume.get("epoch") == self.sampler.epoch:
            skip = int(resume.get("batches", 0))
            if not 0 < skip < len(self):  # the saved epoch was complete: a fresh one
                skip = 0
        self._taken = skip
        for batch in self._iter_memory(skip) if self.in_memory else self._iter_stream(skip):
            self._taken += 1
            yield batch

    def _iter_memory(self, skip: int = 0) -> Iterator[Batch]:
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
        for i in range(skip, len(s)):
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

    def _iter_stream(self, skip: int = 0) -> Iterator[Batch]:
        self.stream.order.copy_(self.sampler.indices())
        bs = self.sampler.batch_size
        self.stream.start.fill_(skip * bs)
        for x, y in self._loader if self._loader is not None else self.stream:
            if self.pin_memory and self._loader is None:
                x, y = x.pin_memory(), y.pin_memory()
            for s in range(0, len(x), bs):  # groups hold whole batches, the last maybe short
                yield x[s : s + bs], y[s : s + bs]
