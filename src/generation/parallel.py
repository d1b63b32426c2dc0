"""Render batches into part files, in this process or in `dataset.workers` worker processes.

A `BatchMaker` is everything a process needs to make any batch of the dataset on its own: the
renderer, the seed and each split's label codes (drawn once per split from the split's own
stream, then sliced: the only structure that grows with the dataset, a few bytes a record).
Workers are spawned (not forked: a forked copy of a process that has run torch's thread pool
can hang), each builds its own maker with its own torch thread count, writes the parts it
renders itself and sends back only a record count, so nothing large crosses a pipe.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.data.vimh import encode_records
from src.generation.params import sample_codes
from src.generation.parts import PartStore, Unit
from src.generation.renderer import SPLIT_IDS, Renderer, batch_generator, build_renderer

# The config groups a renderer is built from (all a worker receives).
RENDER_KEYS = ("synth", "spectrogram", "dataset", "nuisance")


def split_codes(renderer: Renderer, seed: int, split: str, n: int) -> np.ndarray:
    """(n, P) uint8 label codes of a whole split: one numpy stream per (seed, split)."""
    return sample_codes(renderer.params, n, np.random.default_rng([seed, SPLIT_IDS[split]]))


class BatchMaker:
    """Makes any batch of one dataset and writes it as a part; splits' codes drawn on demand."""

    def __init__(
        self,
        renderer: Renderer,
        store: PartStore,
        sizes: Mapping[str, int],
        seed: int,
        store_audio: bool,
    ) -> None:
        self.renderer = renderer
        self.store = store
        self.sizes = dict(sizes)
        self.seed = seed
        self.store_audio = store_audio
        self._codes: dict[str, np.ndarray] = {}

    def codes(self, split: str) -> np.ndarray:
        if split not in self._codes:
            self._codes = {split: split_codes(self.renderer, self.seed, split, self.sizes[split])}
        return self._codes[split]

    def make(self, unit: Unit) -> tuple[str, int]:
        """Render `unit` and write its part; returns (split, records)."""
        codes = self.codes(unit.split)[unit.start : unit.start + unit.size]
        r = self.renderer
        pixels, audio = r.render(codes, batch_generator(self.seed, unit.split, unit.index))
        records = encode_records(pixels, codes, r.imager.spec_min, r.imager.spec_max)
        self.store.write(unit, records, audio.numpy() if self.store_audio else None)
        return unit.split, unit.size


def render_config(cfg: DictConfig) -> dict:
    """The resolved config groups a worker rebuilds the renderer from."""
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in RENDER_KEYS}


_MAKER: BatchMaker | None = None


def _init_worker(
    gen: dict, target: str, manifest: dict, sizes: dict, seed: int, store_audio: bool, threads: int
) -> None:
    global _MAKER
    torch.set_num_threads(threads)
    renderer = build_renderer(OmegaConf.create(gen))
    _MAKER = BatchMaker(renderer, PartStore(target, manifest), sizes, seed, store_audio)


def _make(unit: Unit) -> tuple[str, int]:
    return _MAKER.make(unit)


def worker_threads(workers: int, threads: int | None) -> int:
    """Torch threads per process: as configured, else the cores shared out among the workers."""
    if threads:
        return int(threads)
    if workers == 1:
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 1) // workers)


def render_units(
    maker: BatchMaker,
    units: Sequence[Unit],
    *,
    workers: int,
    threads: int,
    gen: dict,
    on_done: Callable[[str, int], None],
) -> None:
    """Make every unit's part, calling `on_done(split, records)` after each one. With
    workers > 1 the units go to a pool; the first failure cancels the rest (finished parts
    stay, so a rerun resumes)."""
    if workers < 1:
        raise ValueError(f"dataset.workers must be >= 1, got {workers}")
    if workers == 1 or len(units) <= 1:
        for u in units:
            on_done(*maker.make(u))
        return
    store = maker.store
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(units)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(
            gen,
            str(store.target),
            store.manifest,
            maker.sizes,
            maker.seed,
            maker.store_audio,
            threads,
        ),
    )
    try:
        pending = {pool.submit(_make, u) for u in units}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                on_done(*f.result())  # re-raises a worker's error here
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
