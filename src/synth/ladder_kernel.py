"""Compiled sample loop of the Moog ladder (numba): the generation and evaluation path.

The recursion of ``src.synth.moog.ladder_loop`` is sequential in time, so in torch it costs
13 batch-wide op dispatches per sample (8,000 sample steps a note). Here numba compiles it to
machine code: the time loop is outer and the batch loop inner over contiguous rows, so LLVM
vectorises across records (SIMD); with several threads each takes a range of records.
Every step is written as torch's CPU kernels evaluate it (``addcmul`` and ``lerp`` as fused
multiply-adds, ``lerp`` by its two-branch formula on the weight), with ``fastmath=False``.
``tanh`` is computed here in float64 (``exp`` by a Taylor polynomial and five squarings,
rounded once to float32: correctly rounded on a dense grid, see tests/test_ladder_kernel.py)
because the C library's ``tanh`` is a scalar call that stops vectorisation; torch's SLEEF
``tanh`` is within 1 ulp of it, so the two paths differ by float rounding that the filter's
feedback carries along (about 1e-7 on rendered notes).

Why numba: a well-kept JIT with wheels wherever torch has them, so setup needs no compiler;
``cache=True`` keeps the machine code on disk after the first call. The torch loop stays for
GPU tensors and for machines without numba (``available()`` is then False, after one log
line).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from src.utils.threads import run_split

__all__ = ["available", "ladder_numba"]

log = logging.getLogger(__name__)

try:  # optional at import time: the synth falls back to the torch loop
    import numba
    from numba.core import types
    from numba.extending import intrinsic
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None

_said = False


def available() -> bool:
    """True when the compiled kernel can run: numba imports and ``NSM_LADDER`` is not "torch"."""
    global _said
    if numba is None:
        if not _said:
            log.warning("numba is not installed: the Moog ladder runs its slower torch loop")
            _said = True
        return False
    return os.environ.get("NSM_LADDER", "") != "torch"


if numba is not None:
    _jit = {"fastmath": False, "cache": True, "error_model": "numpy", "nogil": True}

    @numba.njit(inline="always", **_jit)
    def tanh_f64(v):  # pragma: no cover - compiled
        """tanh(v) in float64 arithmetic without library calls (vectorisable)."""
        a = min(abs(v), 10.0)  # tanh(10) rounds to 1 in float32
        r = a * (-2.0 / 32.0)  # exp(-2a) = exp(r) ** 32, r in [-0.625, 0]
        p = 1.0 / 1307674368000.0  # Taylor series of exp to degree 15: error < 1e-16
        for c in (
            87178291200.0,
            6227020800.0,
            479001600.0,
            39916800.0,
            3628800.0,
            362880.0,
            40320.0,
            5040.0,
            720.0,
            120.0,
            24.0,
            6.0,
            2.0,
            1.0,
            1.0,
        ):
            p = p * r + 1.0 / c
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        big = (1.0 - p) / (1.0 + p)
        a2 = a * a  # below 0.01, 1 - exp(-2a) cancels: the odd series is exact there
        small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0)))
        t = small if a < 0.01 else big
        return t if v >= 0.0 else -t

    @intrinsic
    def fma32(typingctx, a, b, c):  # pragma: no cover - compiled
        """float32 a * b + c rounded once (LLVM's fma: one instruction where the CPU has FMA),
        as torch's vectorised addcmul and lerp compute it."""
        sig = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            return builder.fma(*args)

        return sig, codegen

    @numba.njit(inline="always", **_jit)
    def _lerp(a, b, w):  # pragma: no cover - compiled
        """torch.lerp(a, b, w): exact at both ends, FMA like torch's kernel."""
        d = b - a
        return fma32(w, d, a) if w < 0.5 else fma32(-d, np.float32(1.0) - w, b)

    @numba.njit(**_jit)
    def _ladder(g, x, ka, out, state, peak, b0, n):  # pragma: no cover - compiled
        """Columns b0 .. b0 + n - 1 of the (T, B) arrays."""
        n_t, n_b = g.shape
        gf, xf, kf, of = g.ravel(), x.ravel(), ka.ravel(), out.ravel()
        s1, s2 = state[0, b0 : b0 + n], state[1, b0 : b0 + n]
        s3, s4 = state[2, b0 : b0 + n], state[3, b0 : b0 + n]
        pk = peak[b0 : b0 + n]
        for t in range(n_t):
            i = t * n_b + b0
            gr, xr, kr, orow = gf[i : i + n], xf[i : i + n], kf[i : i + n], of[i : i + n]
            for b in range(n):
                gt = gr[b]
                w = fma32(s1[b], gt, s2[b])
                y = fma32(w, gt, s3[b])
                w = fma32(y, gt, s4[b])
                u = np.float32(tanh_f64(np.float64(fma32(-kr[b], w, xr[b]))))
                a = s1[b]
                y = _lerp(a, u, gt)
                s1[b] = y + (y - a)  # lerp(a, y, 2) = y - (y - a) (1 - 2)
                a = s2[b]
                z = _lerp(a, y, gt)
                s2[b] = z + (z - a)
                a = s3[b]
                y = _lerp(a, z, gt)
                s3[b] = y + (y - a)
                a = s4[b]
                o = _lerp(a, y, gt)
                s4[b] = o + (o - a)
                orow[b] = o
                pk[b] = max(pk[b], abs(o))


def ladder_numba(
    g: torch.Tensor,
    x: torch.Tensor,
    ka: torch.Tensor,
    out: torch.Tensor,
    state: torch.Tensor,
    peak: torch.Tensor,
    threads: int = 1,
) -> None:
    """``src.synth.moog.ladder_loop`` on contiguous CPU float32 tensors, compiled.

    Same arguments but no scratch; ``out`` and ``state`` are written in place, and ``peak``
    (B,) is raised to each record's largest output magnitude (soft_limit_ then needs no
    pass over the notes). With
    ``threads`` > 1 the batch is split into that many column ranges (of at least 256
    records) run on Python threads: the kernel releases the GIL. Plain threads rather than
    numba's ``parallel=True``, whose OpenMP layer spin-waits between calls and then starves
    torch's own threads (a 50x slowdown of the ops around it, measured on 2 cores).
    Like the torch loop it writes in place, so it is not differentiable.
    """
    arrays = (g.numpy(), x.numpy(), ka.numpy(), out.numpy(), state.numpy(), peak.numpy())
    run_split(lambda b0, b1: _ladder(*arrays, b0, b1 - b0), g.shape[1], threads, 256)
