"""Sound-matching distances between a resynthesized note and its target, as the field reports
them (multi-scale log-mel L1, MFCC distance aligned by DTW, RMS-envelope similarity), for whole
batches: every function maps (B, ...) spectra or audio to (B,) values with no loop over records.

Resolutions follow the sample rate: windows of about 32, 64 and 128 ms (`mss_ffts`), so a
metric means the same at 8 kHz and at 44.1 kHz. Mel bands are torchaudio's (HTK, unnormalised
triangles), one band per eight FFT bins up to 128 bands, so no band falls between bins.
docs/audio_eval.md defines each metric in words.
"""

from __future__ import annotations

import functools
import math

import torch
import torchaudio
from torch import Tensor

MSS_SECONDS = (0.032, 0.064, 0.128)
LOG_EPS = 1e-8  # -80 dB re a full-scale sine: below every dataset's noise floor, above zero
N_MFCC = 13  # coefficients 1..13; c0 (overall loudness) is left to the spectral distances


def mss_ffts(sample_rate: int) -> tuple[int, ...]:
    """The FFT sizes of the multi-scale distances: powers of two nearest 32, 64, 128 ms."""
    return tuple(1 << round(math.log2(s * sample_rate)) for s in MSS_SECONDS)


def n_mels_for(n_fft: int) -> int:
    return min(128, n_fft // 8)


# Cached constants are made outside inference mode: a tensor made inside it could never take
# part in a computation autograd records (refinement differentiates through these banks).
@functools.lru_cache(maxsize=32)
def _mel_bank(n_fft: int, sample_rate: int, device: str) -> Tensor:
    with torch.inference_mode(False):
        fb = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels_for(n_fft), sample_rate
        )
        return fb.to(device)


@functools.lru_cache(maxsize=8)
def _dct(n_mels: int, device: str) -> Tensor:
    with torch.inference_mode(False):
        return torchaudio.functional.create_dct(N_MFCC + 1, n_mels, "ortho")[:, 1:].to(device)


def mel_power(power: Tensor, sample_rate: int) -> Tensor:
    """(B, F, T) STFT power (F = n_fft/2 + 1) -> (B, M, T) mel power."""
    n_fft = 2 * (power.shape[1] - 1)
    fb = _mel_bank(n_fft, int(sample_rate), str(power.device))
    return torch.einsum("bft,fm->bmt", power, fb)


def log_mel(power: Tensor, sample_rate: int) -> Tensor:
    return mel_power(power, sample_rate).add_(LOG_EPS).log_()


def log_mel_l1(pred_log_mel: Tensor, target_log_mel: Tensor) -> Tensor:
    """Mean absolute difference of natural-log mel powers over bands and frames."""
    return (pred_log_mel - target_log_mel).abs_().mean(dim=(-2, -1))


def magnitude_convergence(pred_power: Tensor, target_power: Tensor) -> Tensor:
    """Spectral convergence ||S_t - S_p||_F / ||S_t||_F on magnitudes, from powers."""
    cross = (pred_power * target_power).sqrt_().sum(dim=(-2, -1))
    e_t, e_p = target_power.sum(dim=(-2, -1)), pred_power.sum(dim=(-2, -1))
    return (e_t + e_p - 2 * cross).clamp_min(0).sqrt() / e_t.clamp_min(1e-24).sqrt()


def mfcc(log_mel_power: Tensor) -> Tensor:
    """(B, M, T) log-mel -> (B, T, N_MFCC) cepstra (orthonormal DCT-II, c0 dropped)."""
    dct = _dct(log_mel_power.shape[1], str(log_mel_power.device))
    return torch.einsum("bmt,mc->btc", log_mel_power, dct)


def dtw_cost(cost: Tensor) -> Tensor:
    """(B, N, M) pairwise frame costs -> (B,) cost of the cheapest monotone alignment (steps
    right, down, diagonal), divided by N + M. Computed along anti-diagonals, so the Python
    loop runs N + M - 1 times for the whole batch."""
    b, n, m = cost.shape
    big = torch.finfo(cost.dtype).max / 4
    acc = torch.full((b, n + 1, m + 1), big, dtype=cost.dtype, device=cost.device)
    acc[:, 0, 0] = 0.0
    for s in range(n + m - 1):
        i = torch.arange(max(0, s - m + 1), min(s, n - 1) + 1, device=cost.device)
        j = s - i
        best = torch.minimum(torch.minimum(acc[:, i, j + 1], acc[:, i + 1, j]), acc[:, i, j])
        acc[:, i + 1, j + 1] = cost[:, i, j] + best
    return acc[:, n, m] / (n + m)


def mfcc_dtw(pred_log_mel: Tensor, target_log_mel: Tensor) -> Tensor:
    """Mean Euclidean distance between MFCC frames along their DTW alignment."""
    a, b = mfcc(pred_log_mel), mfcc(target_log_mel)
    return dtw_cost(torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist"))


def rms_envelope(audio: Tensor, sample_rate: int) -> Tensor:
    """(B, T) -> (B, frames) RMS in ~32 ms frames, hop a quarter frame."""
    frame = mss_ffts(sample_rate)[0]
    hop = frame // 4
    x = torch.nn.functional.pad(audio, (frame // 2, frame // 2))
    return x.unfold(1, frame, hop).square().mean(dim=-1).sqrt()


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of (B, N) rows (1 = same shape, whatever the scale)."""
    num = (a * b).sum(dim=1)
    return num / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
