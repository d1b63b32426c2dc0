"""Distances between notes: spectral (multi-resolution STFT, log-spectral distance, centroid)
and waveform (SNR, SI-SDR from torchmetrics). Every function takes (B, T) float audio and
returns (B,) per-record values, computed over the whole batch at once.

Spectra are calibrated so a full-scale sine at a bin centre reads 1 (0 dB, the imager's
reference) and floored at `FLOOR_DB`, so silent bins compare as equal instead of as log(0).
docs/audio_eval.md defines each metric in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.functional.audio import (
    scale_invariant_signal_distortion_ratio,
    signal_noise_ratio,
)

from src.imaging.filters import window as make_window

FLOOR_DB = -100.0  # dB re a full-scale sine: far below the datasets' noise floors
FFT_SIZES = (128, 256, 512, 1024)  # multi-resolution STFT: 16 ms to 128 ms at 8 kHz
LSD_FFT = 512  # log-spectral distance and centroid resolution
METRICS = ("mrstft", "lsd_db", "snr_db", "si_sdr_db", "centroid_err_hz")
HIGHER_IS_BETTER = {"snr_db", "si_sdr_db"}


def stft_power(audio: Tensor, n_fft: int, hop: int | None = None, window: str = "hann") -> Tensor:
    """(B, F, T) power spectrogram (frames centred, hop n_fft/4 by default), calibrated so a
    full-scale sine at a bin centre reads 1, floored at FLOOR_DB."""
    w = make_window(n_fft, window, dtype=audio.dtype).to(audio.device)
    z = torch.stft(audio, n_fft, hop or n_fft // 4, window=w, center=True, return_complex=True)
    power = z.real.square().add_(z.imag.square())  # cheaper than |z| ** 2
    return power.mul_(4.0 / float(w.sum()) ** 2).clamp_(min=10 ** (FLOOR_DB / 10))


def spectral_convergence(pred_mag: Tensor, target_mag: Tensor) -> Tensor:
    """||target - pred||_F / ||target||_F over each record's magnitude spectrogram (0 = equal)."""
    num = torch.linalg.vector_norm(target_mag - pred_mag, dim=(-2, -1))
    return num / torch.linalg.vector_norm(target_mag, dim=(-2, -1)).clamp_min(1e-12)


def log_spectral_distance(pred_power: Tensor, target_power: Tensor) -> Tensor:
    """dB: per frame the RMS over bins of the dB difference, then the mean over frames."""
    diff = 10.0 * (target_power.log10() - pred_power.log10())
    return diff.square().mean(dim=1).sqrt().mean(dim=1)


def centroid_hz(power: Tensor, sample_rate: int) -> Tensor:
    """Centroid of the note's long-term power spectrum (all frames summed), in Hz."""
    spectrum = power.sum(dim=-1)
    freqs = torch.linspace(0, sample_rate / 2, spectrum.shape[1], device=power.device)
    return (spectrum * freqs).sum(dim=1) / spectrum.sum(dim=1)


class AudioComparison:
    """Every metric of predicted notes against one batch of target notes (B, T).

    The target's spectra (and their logs) are computed once and reused for each predictor
    compared with it; each metric is a few fused passes over the power spectrograms.
    """

    def __init__(
        self,
        target: Tensor,
        sample_rate: int,
        fft_sizes: Sequence[int] = FFT_SIZES,
        lsd_fft: int = LSD_FFT,
    ) -> None:
        self.target = target.float()
        self.sample_rate = int(sample_rate)
        self.fft_sizes = tuple(fft_sizes)
        self.lsd_fft = int(lsd_fft)
        self._power = self._all_spectra(self.target)
        self._log = {n: p.log() for n, p in self._power.items()}
        self._energy = {n: p.sum(dim=(-2, -1)) for n, p in self._power.items()}
        self._centroid = centroid_hz(self._power[self.lsd_fft], self.sample_rate)

    def _all_spectra(self, audio: Tensor) -> dict[int, Tensor]:
        return {n: stft_power(audio, n) for n in sorted({*self.fft_sizes, self.lsd_fft})}

    def __call__(self, pred: Tensor) -> dict[str, Tensor]:
        """{metric: (B,) values} (see METRICS; lower is better except SNR and SI-SDR)."""
        pred = pred.float()
        if pred.shape != self.target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target {self.target.shape}")
        power = self._all_spectra(pred)
        logs = {n: p.log() for n, p in power.items()}
        mr = torch.zeros(len(pred), device=pred.device)
        for n in self.fft_sizes:
            pt, pp = self._power[n], power[n]
            # ||sqrt(pt) - sqrt(pp)||^2 = sum pt + sum pp - 2 sum sqrt(pt pp)
            cross = (pt * pp).sqrt_().sum(dim=(-2, -1))
            e_t, e_p = self._energy[n], pp.sum(dim=(-2, -1))
            sc = (e_t + e_p - 2 * cross).clamp_min(0).sqrt() / e_t.clamp_min(1e-24).sqrt()
            log_mag = 0.5 * (self._log[n] - logs[n]).abs_().mean(dim=(-2, -1))
            mr += sc + log_mag
        db_diff = (self._log[self.lsd_fft] - logs[self.lsd_fft]).mul_(10.0 / math.log(10.0))
        lsd = db_diff.square_().mean(dim=1).sqrt_().mean(dim=1)
        return {
            "mrstft": mr / len(self.fft_sizes),
            "lsd_db": lsd,
            "snr_db": signal_noise_ratio(pred, self.target),
            "si_sdr_db": scale_invariant_signal_distortion_ratio(pred, self.target),
            "centroid_err_hz": (
                centroid_hz(power[self.lsd_fft], self.sample_rate) - self._centroid
            ).abs(),
        }


def summarize(values: Tensor) -> dict[str, float]:
    """Mean, median, standard deviation and quartiles of the finite per-record values, and
    how many there were (`n`)."""
    v = values.double().flatten()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return {"n": 0, **{k: math.nan for k in ("mean", "median", "std", "q25", "q75")}}
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=v.dtype))
    return {
        "n": int(v.numel()),
        "mean": float(v.mean()),
        "median": float(q[1]),
        "std": float(v.std(unbiased=False)),
        "q25": float(q[0]),
        "q75": float(q[2]),
    }
