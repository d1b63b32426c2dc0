"""Windows of frames cut from whole records: which windows exist, and their bytes in batches.

A record is one phrase's image (C, H, W): W frames of H bins. A window is `length` consecutive
frames of one record (it never crosses into the next record), starting every `stride` frames;
the last window of a record is aligned to its end, so every frame lies in some window. Batches
are whole, as for images (`src/data/batching.py`): an epoch's order of window indices comes from
`EpochBatches` (seeded per epoch, sharded per rank, resumable through `VIMHLoader`), and
`WindowStream` gathers each group of windows with one fancy index, from frames held in memory
(frames-major, (N, W, H)) or from the memory-mapped records (N, C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from src.data.batching import Batch, MemmapBatches
from src.errors import ConfigError


def window_starts(n_frames: int, length: int, stride: int) -> np.ndarray:
    """First frame of each window of `length` frames in a record of `n_frames`: every
    `stride` frames, plus one aligned to the end when the stride does not land there."""
    if length < 2 or stride < 1:
        raise ConfigError(f"windows need length >= 2 and stride >= 1, got {length}, {stride}")
    if n_frames < length:
        raise ConfigError(
            f"records have {n_frames} frames, fewer than a window of {length} "
            f"(context + horizon); use a shorter context or horizon, or longer records"
        )
    starts = np.arange(0, n_frames - length + 1, stride, dtype=np.int64)
    if starts[-1] != n_frames - length:
        starts = np.append(starts, n_frames - length)
    return starts


def window_index(n_records: int, n_frames: int, length: int, stride: int) -> np.ndarray:
    """(n_windows, 2) int64 rows of (record, first frame), record-major (record 0's first)."""
    starts = window_starts(n_frames, length, stride)
    records = np.repeat(np.arange(n_records, dtype=np.int64), len(starts))
    return np.stack([records, np.tile(starts, n_records)], axis=1)


class WindowStream(MemmapBatches):
    """Batches of windows: uint8 frames (B, length, H) and their records' int64 codes (B, P).

    `source()` gives the split's frames: in memory as (N, W, H) (`frames_major`), or the
    mapped records (N, C, H, W) of which `channel` is served. `rows` maps the split's
    records to rows of that array (None: the same). A read takes each record once however
    many of its windows the group holds.
    """

    def __init__(
        self,
        source: Callable[[], np.ndarray],
        windows: np.ndarray,
        length: int,
        codes: np.ndarray,
        rows: np.ndarray | None,
        *,
        frames_major: bool,
        channel: int,
        bins: int,
        batch_size: int,
        n_order: int,
        n_batches: int,
    ) -> None:
        super().__init__(
            source,
            length * bins,
            codes,
            rows,
            n_order=n_order,
            batch_size=batch_size,
            n_batches=n_batches,
        )
        self.windows = windows
        self.length = int(length)
        self.frames_major = frames_major
        self.channel = int(channel)
        self.offsets = np.arange(self.length, dtype=np.int64)

    def fetch(self, local: np.ndarray) -> Batch:
        win = self.windows[local]
        rec = win[:, 0] if self.rows is None else self.rows[win[:, 0]]
        steps = win[:, 1:2] + self.offsets  # (B, length) frame indices
        if self.frames_major:  # (N, W, H) in memory: one gather
            x = self.array()[rec[:, None], steps]
        else:  # mapped (N, C, H, W): read each record once, in file order
            uniq, inv = np.unique(rec, return_inverse=True)
            frames = self.array()[uniq][:, self.channel].transpose(0, 2, 1)  # (U, W, H)
            x = frames[inv[:, None], steps]
        codes = self.codes[win[:, 0]].astype(np.int64)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(codes)
