"""Distances between notes: the sound-matching set (multi-scale log-mel L1, log-spectral
distance, spectral convergence, MFCC distance along DTW, f0 error in cents, RMS-envelope
cosine), an older multi-resolution STFT distance and the spectral centroid, and waveform
measures (SNR, SI-SDR from torchmetrics). Every function takes (B, T) float audio and returns
(B,) per-record values, computed over the whole batch at once; `SoundDistances` accumulates
them over batches as a torchmetrics Metric.

Spectra are calibrated so a full-scale sine at a bin centre reads 1 (0 dB, the imager's
reference) and floored at `FLOOR_DB`, so silent bins compare as equal instead of as log(0).
docs/audio_eval.md defines each metric in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.audio import (
    scale_invariant_signal_distortion_ratio,
    signal_noise_ratio,
)
from torchmetrics.utilities import dim_zero_cat

from src.imaging.filters import window as make_window
from src.metrics import sound
from src.metrics.pitch import cents, yin_f0

FLOOR_DB = -100.0  # dB re a full-scale sine: far below the datasets' noise floors
FFT_SIZES = (128, 256, 512, 1024)  # multi-resolution STFT: 16 ms to 128 ms at 8 kHz
LSD_FFT = 512  # log-spectral distance and centroid resolution
# The sound-matching distances every estimation table reports (src/metrics/sound.py), then the
# older spectral and waveform measures.
SOUND_METRICS = ("mss", "lsd_db", "sc", "mfcc_dtw", "f0_err_cents", "rms_cos")
METRICS = (*SOUND_METRICS, "mrstft", "snr_db", "si_sdr_db", "centroid_err_hz")
HIGHER_IS_BETTER = {"snr_db", "si_sdr_db", "rms_cos"}
UNITS = {
    "mss": "",
    "lsd_db": "dB",
    "sc": "",
    "mfcc_dtw": "",
    "f0_err_cents": "cents",
    "rms_cos": "",
    "mrstft": "",
    "snr_db": "dB",
    "si_sdr_db": "dB",
    "centroid_err_hz": "Hz",
}


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
    """Metrics of predicted notes against one batch of target notes (B, T).

    The target's spectra, log-mel spectra, f0 and RMS envelope are computed once and reused
    for each predictor compared with it; `metrics` picks which are computed (default: all of
    `METRICS`), and only the spectra those need are taken.
    """

    def __init__(
        self,
        target: Tensor,
        sample_rate: int,
        fft_sizes: Sequence[int] = FFT_SIZES,
        lsd_fft: int = LSD_FFT,
        metrics: Sequence[str] = METRICS,
    ) -> None:
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown audio metrics {sorted(unknown)}; expected {METRICS}")
        self.metrics = tuple(metrics)
        self.target = target.float()
        self.sample_rate = int(sample_rate)
        self.fft_sizes = tuple(fft_sizes)
        self.lsd_fft = int(lsd_fft)
        self.mss_ffts = sound.mss_ffts(self.sample_rate)
        self.mfcc_fft = self.mss_ffts[1]
        self._sizes = self._needed_sizes()
        self._power = self._all_spectra(self.target)
        self._log = {n: p.log() for n, p in self._power.items()}
        self._energy = {n: p.sum(dim=(-2, -1)) for n, p in self._power.items()}
        self._mel = self._log_mels(self._power)
        if "centroid_err_hz" in self.metrics:
            self._centroid = centroid_hz(self._power[self.lsd_fft], self.sample_rate)
        if "f0_err_cents" in self.metrics:
            self._f0 = yin_f0(self.target, self.sample_rate)[0]
        if "rms_cos" in self.metrics:
            self._rms = sound.rms_envelope(self.target, self.sample_rate)

    def _needed_sizes(self) -> set[int]:
        m, sizes = set(self.metrics), set()
        if "mrstft" in m:
            sizes |= set(self.fft_sizes)
        if m & {"lsd_db", "centroid_err_hz"}:
            sizes.add(self.lsd_fft)
        if m & {"mss", "sc"}:
            sizes |= set(self.mss_ffts)
        if "mfcc_dtw" in m:
            sizes.add(self.mfcc_fft)
        return sizes

    def _all_spectra(self, audio: Tensor) -> dict[int, Tensor]:
        return {n: stft_power(audio, n) for n in sorted(self._sizes)}

    def _log_mels(self, power: dict[int, Tensor]) -> dict[int, Tensor]:
        want = set(self.mss_ffts) if "mss" in self.metrics else set()
        if "mfcc_dtw" in self.metrics:
            want.add(self.mfcc_fft)
        return {n: sound.log_mel(power[n], self.sample_rate) for n in sorted(want)}

    def __call__(self, pred: Tensor) -> dict[str, Tensor]:
        """{metric: (B,) values} (see METRICS; lower is better except `HIGHER_IS_BETTER`)."""
        pred = pred.float()
        if pred.shape != self.target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target {self.target.shape}")
        power = self._all_spectra(pred)
        mel = self._log_mels(power)
        m, out = self.metrics, {}
        if "mss" in m:
            out["mss"] = sum(sound.log_mel_l1(mel[n], self._mel[n]) for n in self.mss_ffts) / len(
                self.mss_ffts
            )
        if "lsd_db" in m:
            db_diff = (self._log[self.lsd_fft] - power[self.lsd_fft].log()).mul_(
                10.0 / math.log(10.0)
            )
            out["lsd_db"] = db_diff.square_().mean(dim=1).sqrt_().mean(dim=1)
        if "sc" in m:
            out["sc"] = sum(
                sound.magnitude_convergence(power[n], self._power[n]) for n in self.mss_ffts
            ) / len(self.mss_ffts)
        if "mfcc_dtw" in m:
            out["mfcc_dtw"] = sound.mfcc_dtw(mel[self.mfcc_fft], self._mel[self.mfcc_fft])
        if "f0_err_cents" in m:
            out["f0_err_cents"] = cents(yin_f0(pred, self.sample_rate)[0], self._f0).abs()
        if "rms_cos" in m:
            out["rms_cos"] = sound.cosine(sound.rms_envelope(pred, self.sample_rate), self._rms)
        if "mrstft" in m:
            mr = torch.zeros(len(pred), device=pred.device)
            for n in self.fft_sizes:
                sc = sound.magnitude_convergence(power[n], self._power[n])
                log_mag = 0.5 * (self._log[n] - power[n].log()).abs_().mean(dim=(-2, -1))
                mr += sc + log_mag
            out["mrstft"] = mr / len(self.fft_sizes)
        if "snr_db" in m:
            out["snr_db"] = signal_noise_ratio(pred, self.target)
        if "si_sdr_db" in m:
            out["si_sdr_db"] = scale_invariant_signal_distortion_ratio(pred, self.target)
        if "centroid_err_hz" in m:
            out["centroid_err_hz"] = (
                centroid_hz(power[self.lsd_fft], self.sample_rate) - self._centroid
            ).abs()
        return {k: out[k] for k in m}


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


class SoundDistances(Metric):
    """Per-record audio distances of predictions against targets, accumulated over batches.

    `update(pred, target)` takes (B, T) notes; `compute()` gives `{metric}/mean` and
    `{metric}/median` over every record seen (records whose value is not finite, e.g. the f0
    of a silent note, are left out of that metric). States are concatenated across processes.
    """

    full_state_update = False

    def __init__(self, sample_rate: int, metrics: Sequence[str] = SOUND_METRICS, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)
        self.names = tuple(metrics)
        for name in self.names:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, pred: Tensor, target: Tensor | None = None, comparison: AudioComparison | None = None
    ) -> None:
        """Add (B, T) predictions against (B, T) targets, or against the targets of a
        `comparison` built once and shared by several predictors' metrics."""
        if comparison is None:
            if target is None:
                raise ValueError("SoundDistances.update needs a target or a comparison")
            comparison = AudioComparison(target, self.sample_rate, metrics=self.names)
        values = comparison(pred)
        for name in self.names:
            getattr(self, name).append(values[name].detach().double())

    def values(self) -> dict[str, Tensor]:
        """Every record's value per metric, (N,) each."""
        return {n: dim_zero_cat(getattr(self, n)) for n in self.names}

    def compute(self) -> dict[str, Tensor]:
        out = {}
        for name, v in self.values().items():
            s = summarize(v)
            out[f"{name}/mean"] = torch.tensor(s["mean"])
            out[f"{name}/median"] = torch.tensor(s["median"])
        return out
