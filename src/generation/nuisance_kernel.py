"""The onset delay and noise floor of a batch in one compiled pass per note (numba).

In torch the two nuisances of `src.generation.nuisance` cost seven passes over the (B, T)
batch (a zero-padded copy, a gather of the delayed windows, the peak, the noise windows
gathered into a new tensor, the add), about half of a saw batch's generation time. Here each
note is shifted, measured and given its noise while it sits in cache, in place. The arithmetic
is torch's, operation for operation (the peak of the delayed note, zeros included; gain =
float32(peak * 10^(dB/20)), the factor computed by torch; note + noise * gain as one fused
multiply-add, as torch's addcmul), so the bytes are the same (tests/test_nuisance_kernel.py).
Without numba the torch code runs.
"""

from __future__ import annotations

import numpy as np
import torch

from src.synth.ladder_kernel import numba

if numba is not None:
    from src.synth.ladder_kernel import fma32
from src.utils.threads import run_split

__all__ = ["delay_and_noise_"]


if numba is not None:

    @numba.njit(fastmath=False, cache=True, nogil=True, error_model="numpy")
    def _rows(audio, delay, factor, bank, starts, scratch, r0, r1):  # pragma: no cover
        t = audio.shape[1]
        noise = factor.size > 0
        for r in range(r0, r1):
            row = audio[r]
            d = delay[r]
            keep = t - d
            hi = np.float32(0.0) if d > 0 else np.float32(-np.inf)
            lo = np.float32(0.0) if d > 0 else np.float32(np.inf)
            for j in range(keep):
                v = row[j]
                hi = max(hi, v)
                lo = min(lo, v)
            scratch[:keep] = row[:keep]
            if not noise:
                row[:d] = 0.0
                row[d:] = scratch[:keep]
                continue
            gain = np.float32(np.float64(max(hi, -lo)) * factor[r])
            z = np.float32(0.0)
            s = starts[r]
            for j in range(d):
                row[j] = fma32(bank[s + j], gain, z)
            for j in range(d, t):
                row[j] = fma32(bank[s + j], gain, scratch[j - d])


def delay_and_noise_(
    audio: torch.Tensor,
    delay: torch.Tensor,
    factor: torch.Tensor | None,
    bank: torch.Tensor | None,
    starts: torch.Tensor | None,
    threads: int = 1,
) -> bool:
    """Delay row b of (B, T) float32 ``audio`` by ``delay[b]`` samples (in [0, T]) and, with
    ``factor`` (10^(dB/20), float64), add ``bank[starts[b]:][:T]`` times the delayed note's
    peak times ``factor[b]``, in place. Returns False (and does nothing) where the kernel
    cannot run (no numba, another device, dtype or layout): the caller then runs torch."""
    if numba is None or audio.device.type != "cpu" or audio.dtype != torch.float32:
        return False
    if not audio.is_contiguous() or audio.ndim != 2:
        return False
    b, t = audio.shape
    d = delay.to(torch.int64).contiguous().numpy()
    if factor is None:
        f = np.empty(0, np.float64)
        nb, st = np.empty(0, np.float32), np.empty(0, np.int64)
    else:
        f = factor.to(torch.float64).contiguous().numpy()
        nb, st = bank.contiguous().numpy(), starts.to(torch.int64).contiguous().numpy()
    a = audio.numpy()

    def rows(r0: int, r1: int) -> None:
        _rows(a, d, f, nb, st, np.empty(t, np.float32), r0, r1)

    run_split(rows, b, threads, 64)
    return True
