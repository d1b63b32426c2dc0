"""Decode and image recordings chunk by chunk, in this process or in worker processes.

Each chunk (`dataset.batch_size` files of one split, in record order) is read with
`src/audio/io.py` (soundfile, mono, torchaudio resampling, onset, cut or pad), imaged with the
dataset's `SpectrogramImager`, and written as a part file (`src/generation/parts.py`): encoded
records and, when audio is stored, the float32 notes. A file that cannot be used (missing,
unreadable, empty, non-finite) is left out of its chunk and reported with the reason, never
dropped silently. Workers are spawned as in generation; only file indices, counts and
per-file facts cross the pipe.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from src.audio.io import load_notes
from src.data.vimh import encode_records
from src.errors import DataError
from src.generation.parts import PartStore, Unit
from src.imaging import SpectrogramImager


@dataclass(frozen=True)
class Decoding:
    """How a file becomes a record: the note's rate and length, its start, the images."""

    spectrogram: dict  # SpectrogramImager arguments other than the rate and length
    sample_rate: int
    n_samples: int
    onset: str = "start"
    onset_db: float = -30.0
    store_audio: bool = False

    def imager(self) -> SpectrogramImager:
        return SpectrogramImager(
            sample_rate=self.sample_rate, n_samples=self.n_samples, **self.spectrogram
        )


@dataclass(frozen=True)
class Chunk:
    """Files `rows` (collection indices, in record order) of `split`; `start` is the position
    of the first of them among the split's files."""

    split: str
    index: int
    start: int
    rows: tuple[int, ...]


@dataclass
class ChunkResult:
    split: str
    index: int
    start: int
    kept: list[int]  # rows written, in order
    facts: list[dict]  # per kept row: file_rate, file_seconds, onset_s
    bad: list[tuple[int, str]] = field(default_factory=list)  # (row, reason)

    @property
    def unit(self) -> Unit:
        return Unit(self.split, self.index, self.start, len(self.kept))


def plan_chunks(order: dict[str, np.ndarray], size: int) -> list[Chunk]:
    if size < 1:
        raise ValueError(f"dataset.batch_size must be >= 1, got {size}")
    return [
        Chunk(split, b, s, tuple(int(r) for r in rows[s : s + size]))
        for split, rows in order.items()
        for b, s in enumerate(range(0, len(rows), size))
    ]


class ChunkMaker:
    """Everything a process needs to turn any chunk into a part file."""

    def __init__(
        self, decoding: Decoding, store: PartStore, paths: Sequence[str], codes: np.ndarray
    ) -> None:
        self.decoding = decoding
        self.imager = decoding.imager()
        self.shape = (len(self.imager.channel_labels), self.imager.height, self.imager.width)
        self.store = store
        self.paths = paths
        self.codes = codes

    def make(self, chunk: Chunk) -> ChunkResult:
        d = self.decoding
        notes, kept, facts, bad = [], [], [], []
        for row in chunk.rows:
            path = Path(self.paths[row])
            if not path.is_file():
                bad.append((row, "no such file"))
                continue
            try:
                note, fact = load_notes([path], d.sample_rate, d.n_samples, d.onset, d.onset_db)
            except DataError as e:
                bad.append((row, str(e).removeprefix(f"{path}: ")))
                continue
            notes.append(note)
            kept.append(row)
            facts.append({k: fact[0][k] for k in ("file_rate", "file_seconds", "onset_s")})
        result = ChunkResult(chunk.split, chunk.index, chunk.start, kept, facts, bad)
        im = self.imager
        audio = torch.cat(notes) if notes else torch.zeros(0, d.n_samples)
        with torch.inference_mode():
            pixels = im(audio).numpy() if notes else np.zeros((0, *self.shape), np.uint8)
        records = encode_records(pixels, self.codes[kept], im.spec_min, im.spec_max)
        self.store.write(result.unit, records, audio.numpy() if d.store_audio else None)
        return result


_MAKER: ChunkMaker | None = None


def _init_worker(decoding, target, manifest, paths, codes, threads) -> None:
    global _MAKER
    torch.set_num_threads(threads)
    _MAKER = ChunkMaker(decoding, PartStore(target, manifest), paths, codes)


def _make(chunk: Chunk) -> ChunkResult:
    return _MAKER.make(chunk)


def decode_chunks(
    maker: ChunkMaker,
    chunks: Sequence[Chunk],
    *,
    workers: int,
    threads: int,
    on_done: Callable[[ChunkResult], None],
) -> list[ChunkResult]:
    """Make every chunk's part (in `workers` processes when > 1); results in chunk order."""
    if workers < 1:
        raise ValueError(f"dataset.workers must be >= 1, got {workers}")
    results: dict[tuple[str, int], ChunkResult] = {}

    def done(r: ChunkResult) -> None:
        results[r.split, r.index] = r
        on_done(r)

    if workers == 1 or len(chunks) <= 1:
        for c in chunks:
            done(maker.make(c))
    else:
        store = maker.store
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(chunks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(
                maker.decoding,
                str(store.target),
                store.manifest,
                list(maker.paths),
                maker.codes,
                threads,
            ),
        )
        try:
            pending = {pool.submit(_make, c) for c in chunks}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    done(f.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return [results[c.split, c.index] for c in chunks]
