"""The fundamental frequency of each note in a batch, by YIN on its loudest stretch.

One analysis window per record (`window` samples where the note is loudest, found from the
frame energies), the YIN cumulative-mean-normalised difference function over lags
`sr / fmax .. sr / fmin` computed for the whole batch with FFTs, the first dip under
`threshold` (the global minimum when none is), and a parabolic fit around it for sub-sample
lags. No Python loop over records. Used to score resynthesis (f0 error in cents between a
prediction's rendering and its target) and to check predictions on recordings, where no label
says what pitch was played.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import Tensor

FMIN_HZ = 40.0
FMAX_HZ = 2000.0
THRESHOLD = 0.15
# Below this rate the window is upsampled first: at 8 kHz a 1 kHz period is 8 samples, and a
# difference taken at whole-sample lags misses a non-integer period by so much that YIN would
# prefer two periods (an octave low).
ANALYSIS_RATE = 32000


def analysis_window(sample_rate: int, fmin: float = FMIN_HZ) -> int:
    """Window length: a power of two holding at least three periods of `fmin` (>= 1024)."""
    need = 3 * sample_rate / fmin
    return max(1024, 1 << math.ceil(math.log2(need)))


def loudest_window(audio: Tensor, window: int) -> Tensor:
    """(B, window) stretch of each (B, T) record where its energy is largest (hop window/4)."""
    t = audio.shape[1]
    if t <= window:
        return torch.nn.functional.pad(audio, (0, window - t))
    hop = max(1, window // 4)
    frames = audio.unfold(1, window, hop)  # (B, F, window), a view
    start = frames.square().sum(-1).argmax(dim=1) * hop
    idx = start[:, None] + torch.arange(window, device=audio.device)
    return audio.gather(1, idx)


def cmnd(x: Tensor, tau_max: int) -> Tensor:
    """(B, tau_max + 1) YIN cumulative-mean-normalised difference d'(tau) of (B, W) windows,
    each difference summed over the first W - tau_max samples."""
    w = x.shape[1]
    n = w - tau_max
    if n < 1:
        raise ValueError(f"window of {w} samples is too short for lags up to {tau_max}")
    size = 1 << math.ceil(math.log2(w + n))
    spec_x = torch.fft.rfft(x, size)
    spec_h = torch.fft.rfft(x[:, :n], size)
    corr = torch.fft.irfft(spec_x * spec_h.conj(), size)[:, : tau_max + 1]  # r(tau)
    sq = torch.nn.functional.pad(x.square().cumsum(dim=1), (1, 0))
    taus = torch.arange(tau_max + 1, device=x.device)
    e_tau = sq[:, taus + n] - sq[:, taus]  # energy of x[tau : tau + n]
    d = (e_tau[:, :1] + e_tau - 2 * corr).clamp_min(0.0)
    running = d[:, 1:].cumsum(dim=1) / taus[1:]
    out = torch.ones_like(d)
    out[:, 1:] = d[:, 1:] / running.clamp_min(1e-12)
    return out


def yin_f0(
    audio: Tensor,
    sample_rate: int,
    fmin: float = FMIN_HZ,
    fmax: float = FMAX_HZ,
    threshold: float = THRESHOLD,
) -> tuple[Tensor, Tensor]:
    """(f0 in Hz, aperiodicity) per (B, T) record; aperiodicity is d' at the chosen lag (0 for
    a perfectly periodic stretch, near 1 for noise). Silent records get f0 NaN."""
    audio = audio.float()
    fmax = min(fmax, sample_rate / 4)
    x = loudest_window(audio, analysis_window(sample_rate, fmin))
    x = x - x.mean(dim=1, keepdim=True)
    factor = max(1, math.ceil(ANALYSIS_RATE / sample_rate))
    if factor > 1:
        x = torchaudio.functional.resample(x, 1, factor)
        sample_rate = sample_rate * factor
    tau_min = max(2, math.floor(sample_rate / fmax))
    tau_max = math.ceil(sample_rate / fmin)
    d = cmnd(x, tau_max)
    taus = torch.arange(tau_max + 1, device=audio.device)
    valid = taus >= tau_min
    below = (d < threshold) & valid
    first = torch.where(below.any(dim=1), below.float().argmax(dim=1), tau_max + 1)
    # The dip that starts at `first`: lags from it while d' stays under the threshold.
    run = (below | (taus < first[:, None])).int().cumprod(dim=1).bool() & (taus >= first[:, None])
    pick = torch.where(run, d, torch.full_like(d, math.inf))
    fallback = torch.where(valid, d, torch.full_like(d, math.inf)).argmin(dim=1)
    tau = torch.where(below.any(dim=1), pick.argmin(dim=1), fallback)
    # Parabolic interpolation of d' around the chosen lag.
    lo, hi = (tau - 1).clamp(min=tau_min), (tau + 1).clamp(max=tau_max)
    y0, y1, y2 = (
        d.gather(1, lo[:, None])[:, 0],
        d.gather(1, tau[:, None])[:, 0],
        d.gather(1, hi[:, None])[:, 0],
    )
    denom = y0 - 2 * y1 + y2
    shift = torch.where(
        (denom.abs() > 1e-12) & (lo < tau) & (hi > tau), 0.5 * (y0 - y2) / denom, 0.0
    )
    period = tau.float() + shift.clamp(-1.0, 1.0)
    f0 = sample_rate / period
    silent = x.square().sum(dim=1) <= 1e-12
    return torch.where(silent, torch.full_like(f0, math.nan), f0), y1


def cents(f_pred: Tensor, f_true: Tensor) -> Tensor:
    """Signed pitch difference in cents, 1200 log2(f_pred / f_true)."""
    return 1200.0 * torch.log2(f_pred / f_true)
