"""Torch's intra-op thread count, set for a block of small operations."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

_pool: tuple[int, ThreadPoolExecutor] | None = None


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count.

    Loops of small ops (a synth's sample loop, metrics over cache-sized chunks) gain nothing
    from splitting each op across threads, and the per-op fork/join then costs more than the
    op - catastrophically so (~1 ms per op) when another process holds a core.
    """
    prev = torch.get_num_threads()
    if prev == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def run_split(fn: Callable[[int, int], object], n: int, threads: int, least: int) -> None:
    """Run ``fn(start, stop)`` over ``range(n)`` cut into up to ``threads`` contiguous ranges
    of at least ``least`` items, on a thread pool of this process (for compiled kernels that
    release the GIL; a forked child makes its own pool). One range runs in the caller."""
    global _pool
    chunks = max(1, min(threads, n // max(1, least)))
    if chunks == 1:
        fn(0, n)
        return
    if _pool is None or _pool[0] != os.getpid() or _pool[1]._max_workers < chunks:
        _pool = (os.getpid(), ThreadPoolExecutor(chunks, thread_name_prefix="kernel"))
    per = -(-n // chunks)
    jobs = [_pool[1].submit(fn, s, min(s + per, n)) for s in range(0, n, per)]
    for job in jobs:
        job.result()
