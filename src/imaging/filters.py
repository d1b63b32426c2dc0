"""Analysis windows and frequency filterbanks, shared by the dataset imager and the trainable
front-end so that a frozen front-end and a generated image use the same filters.

Filterbanks are `(n_freqs, n_filters)` matrices over the bins of a one-sided STFT with
ascending filter centres (column 0 = lowest frequency). Mel and linear banks are torchaudio's;
torchaudio has no log-frequency bank, so `log_fbanks` provides one.
"""

from __future__ import annotations

import math
import warnings

import torch
import torchaudio

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

WINDOWS = ("hann", "hamming", "blackman", "rect")
FILTER_SCALES = ("mel", "linear", "log")


def window(length: int, kind: str = "hann", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A periodic window of `length` samples (the STFT convention of torch and torchaudio).

    Its signature fits torchaudio's `window_fn` (`window_fn(win_length, **wkwargs)`), and as a
    module-level function it keeps transforms that hold it picklable.
    """
    if kind == "hann":
        return torch.hann_window(length, periodic=True, dtype=dtype)
    if kind == "hamming":
        return torch.hamming_window(length, periodic=True, dtype=dtype)
    if kind == "blackman":
        return torch.blackman_window(length, periodic=True, dtype=dtype)
    if kind == "rect":
        return torch.ones(length, dtype=dtype)
    raise ValueError(f"window must be one of {WINDOWS}, got {kind!r}")


def padded_window(kind: str, win_length: int, n_fft: int) -> torch.Tensor:
    """A float64 window of `win_length`, zero-padded centred to `n_fft` (as torch.stft does)."""
    w = window(win_length, kind, torch.float64)
    left = (n_fft - win_length) // 2
    return torch.nn.functional.pad(w, (left, n_fft - win_length - left))


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """HTK mel scale (as torchaudio's default)."""
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def log_fbanks(
    n_freqs: int, f_min: float, f_max: float, n_filter: int, sample_rate: int
) -> torch.Tensor:
    """Triangular filters with log-spaced centres, shape ``(n_freqs, n_filter)``.

    Where log spacing is finer than the STFT bin spacing a plain triangle could fall between
    bins and be empty, so each side of every triangle is widened to at least one bin spacing:
    its support then always holds a bin.
    """
    if f_min <= 0:
        raise ValueError(f"f_min must be > 0 for the log scale, got {f_min}")
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    bin_hz = float(all_freqs[1] - all_freqs[0])
    pts = torch.logspace(math.log10(f_min), math.log10(f_max), n_filter + 2, dtype=torch.float64)
    centre = pts[1:-1]
    lower = torch.minimum(pts[:-2], centre - bin_hz)
    upper = torch.maximum(pts[2:], centre + bin_hz)
    f = all_freqs[:, None]
    rise = (f - lower) / (centre - lower)
    fall = (upper - f) / (upper - centre)
    return torch.clamp(torch.minimum(rise, fall), min=0.0).to(torch.float32)


def filter_centres(scale: str, f_min: float, f_max: float, n_filter: int) -> torch.Tensor:
    """Centre frequency of each filter (Hz, float64), ascending, as `filterbank` places them."""
    if scale == "mel":
        lo, hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64)).tolist()
        pts = mel_to_hz(torch.linspace(lo, hi, n_filter + 2, dtype=torch.float64))
    elif scale == "linear":
        pts = torch.linspace(f_min, f_max, n_filter + 2, dtype=torch.float64)
    elif scale == "log":
        pts = torch.logspace(
            math.log10(f_min), math.log10(f_max), n_filter + 2, dtype=torch.float64
        )
    else:
        raise ValueError(f"scale must be one of {FILTER_SCALES}, got {scale!r}")
    return pts[1:-1]


def filterbank(
    scale: str, n_freqs: int, f_min: float, f_max: float, n_filter: int, sample_rate: int
) -> torch.Tensor:
    """Raw (unnormalised) triangular filterbank ``(n_freqs, n_filter)``, float32.

    `mel` is torchaudio's HTK mel bank without norm (as `MelSpectrogram`), `linear` its linear
    bank, `log` `log_fbanks`. Filters may be empty when bins are too coarse; callers that need
    every filter to see a bin check that themselves.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio warns on empty filters; callers decide
        if scale == "mel":
            return torchaudio.functional.melscale_fbanks(
                n_freqs, f_min, f_max, n_filter, sample_rate, norm=None, mel_scale="htk"
            )
        if scale == "linear":
            return torchaudio.functional.linear_fbanks(n_freqs, f_min, f_max, n_filter, sample_rate)
    if scale == "log":
        return log_fbanks(n_freqs, f_min, f_max, n_filter, sample_rate)
    raise ValueError(f"scale must be one of {FILTER_SCALES}, got {scale!r}")


def image_filterbank(scale: str, n_fft: int, f_min: float, f_max: float, height: int, sr: int):
    """`filterbank` for image rows, float64, refusing rows that no STFT bin reaches."""
    n_freqs = n_fft // 2 + 1
    fb = filterbank(scale, n_freqs, f_min, f_max, height, sr).to(torch.float64)
    empty = sorted((fb.amax(dim=0) <= 0).nonzero().flatten().tolist())
    if empty:
        raise ValueError(
            f"height={height} on the {scale} scale with n_fft={n_fft} leaves rows "
            f"{empty[:8]}{'...' if len(empty) > 8 else ''} without any STFT bin (bin spacing "
            f"{sr / n_fft:.3g} Hz). Use a larger n_fft, a smaller height, or scale='log'."
        )
    bin_freqs = torch.arange(n_freqs) * sr / n_fft
    n_inside = int(((bin_freqs >= f_min) & (bin_freqs <= f_max)).sum())
    if scale == "linear" and height > n_inside:
        log.warning(
            f"height={height} exceeds the {n_inside} STFT bins (n_fft={n_fft}) inside "
            f"[{f_min}, {f_max}] Hz on the linear scale: rows will only interpolate bins. "
            f"Consider n_fft >= {2 * math.ceil(height * sr / (2 * (f_max - f_min)))}."
        )
    return fb


def sine_calibration(fb: torch.Tensor, centres: torch.Tensor, window: torch.Tensor, sr: int):
    """Per-filter gain so a full-scale sine at the filter centre reads exactly 1 (0 dB).

    The STFT power is first normalised by ``(sum w)^2 / 4`` (a full-scale sine at a bin centre
    -> 1); the filter's response to such a sine at its own centre (main-lobe leakage included)
    is then divided out, so the calibration is independent of n_fft, window, scale and height.
    """
    n_fft = window.numel()
    w = window.to(torch.float64)
    n = torch.arange(n_fft, dtype=torch.float64)
    phase = torch.tensor([0.0, math.pi / 2], dtype=torch.float64)  # quadrature: no phase bias
    sines = torch.cos(2 * math.pi * centres[:, None, None] * n / sr + phase[:, None])
    spec = torch.fft.rfft(sines * w, dim=-1).abs().square().mean(dim=1)  # (H, F)
    spec = spec * 4.0 / w.sum() ** 2
    gain = (spec * fb.T).sum(dim=1)  # (H,)
    return fb / gain * (4.0 / w.sum() ** 2)
