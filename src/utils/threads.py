"""Torch's intra-op thread count, set for a block of small operations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


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
