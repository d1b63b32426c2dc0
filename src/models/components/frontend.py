"""A trainable STFT + mel filterbank front-end: waveforms in, log-mel "images" out.

The STFT is a strided `conv1d` whose kernels start as the windowed Fourier basis, so with both
`trainable_*` flags off the output is the log-mel spectrogram torchaudio computes (tested to
float32 precision), and with them on the same layers become learnable analysis filters. The
mel matrix stays non-negative by parametrisation (w = p², p initialised to sqrt(init)), never
by clamping, so gradients always flow to every positive entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio.functional as taf
from torch import Tensor, nn

from src.imaging.filters import filterbank, padded_window
from src.utils.checks import check_choice

MEL_INITS = ("mel", "random", "linear")
LOGS = ("db", "log1p", None)


def fourier_kernels(window: Tensor) -> Tensor:
    """(2F, 1, n_fft) conv1d kernels: F real parts w·cos then F imaginary parts -w·sin."""
    n_fft = window.numel()
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2.0 * math.pi * torch.outer(k, n) / n_fft
    kernels = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)])
    return kernels.unsqueeze(1).float()


@torch.no_grad()
def kernel_power(kernels: Tensor, sample_rate: int, n_points: int = 1024) -> tuple[Tensor, Tensor]:
    """Frequencies (Hz) and each STFT bin's power response, (F, n_points//2+1), of (2F, 1,
    n_fft) conv1d kernels laid out as `fourier_kernels` makes them.

    The response to a sinusoid of random phase: (|DFT(re)|² + |DFT(im)|²) / 2 of the bin's two
    kernels, so it is meaningful for trained kernels too.
    """
    k = kernels.detach().float().reshape(kernels.shape[0], -1)
    n_freqs, n = k.shape[0] // 2, max(n_points, k.shape[1])
    spec = torch.fft.rfft(k, n=n).abs().square()
    return torch.fft.rfftfreq(n, 1.0 / sample_rate), 0.5 * (spec[:n_freqs] + spec[n_freqs:])


def kernel_response(
    kernels: Tensor, sample_rate: int, n_points: int = 1024, eps: float = 1e-10
) -> tuple[Tensor, Tensor]:
    """`kernel_power` in dB (floored at `eps`)."""
    freqs, power = kernel_power(kernels, sample_rate, n_points)
    return freqs, 10.0 * torch.log10(power.clamp_min(eps))


class STFTMelFrontend(nn.Module):
    """Waveform (B, 1, T) -> log-mel (B, 1, n_mels, frames); row 0 is the lowest band.

    Frames follow torch.stft(center=True, pad_mode="reflect"): 1 + T // hop_length for even
    n_fft. `hop_length=None` means n_fft // 2 (63 frames for a 1 s note at 8 kHz with the
    default n_fft=256). `maskout=[start, end)` zeroes those STFT bins of the power spectrum
    (a fixed mask: no gradient reaches the masked kernels). `mel_floor` lifts the
    filterbank's zero entries to that value so they can learn too: with w = p² an entry
    that starts at exactly 0 has zero gradient and keeps the filter supports of the init.
    `lr` is this front-end's own learning rate (None: the optimizer's), used by the
    composite net's `param_groups`.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 256,
        hop_length: int | None = None,
        win_length: int | None = None,
        window: str = "hann",
        n_mels: int = 40,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_init: str = "mel",
        trainable_stft: bool = False,
        trainable_mel: bool = False,
        maskout: Sequence[int] | None = None,
        log: str | None = "db",
        top_db: float | None = None,
        eps: float = 1e-10,
        mel_floor: float = 0.0,
        lr: float | None = None,
    ) -> None:
        super().__init__()
        if sample_rate <= 0 or n_fft < 2:
            raise ValueError(f"need sample_rate > 0 and n_fft >= 2, got {sample_rate}, {n_fft}")
        hop_length = int(hop_length or n_fft // 2)
        win_length = int(win_length or n_fft)
        if hop_length < 1 or not 1 <= win_length <= n_fft:
            raise ValueError(
                f"need hop_length >= 1 and 1 <= win_length <= n_fft, got {hop_length}, "
                f"{win_length} (n_fft {n_fft})"
            )
        if n_mels < 1:
            raise ValueError(f"n_mels must be >= 1, got {n_mels}")
        check_choice("mel_init", mel_init, MEL_INITS)
        check_choice("log", log, LOGS)
        f_max = float(f_max if f_max is not None else sample_rate / 2)
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = hop_length
        self.win_length = win_length
        self.n_freqs = self.n_fft // 2 + 1
        self.n_mels = int(n_mels)
        self.f_min, self.f_max = float(f_min), f_max
        self.mel_init = mel_init
        self.log = log
        self.top_db = top_db
        self.eps = float(eps)
        self.lr = None if lr is None else float(lr)

        self.stft = nn.Parameter(
            fourier_kernels(padded_window(window, win_length, self.n_fft)),
            requires_grad=bool(trainable_stft),
        )
        init = self.initial_filterbank(mel_init).clamp_min(float(mel_floor))
        self.mel_sqrt = nn.Parameter(init.sqrt(), requires_grad=bool(trainable_mel))

        self.maskout = None if maskout is None else [int(v) for v in maskout]
        if self.maskout is not None:
            start, end = self.maskout
            if not 0 <= start < end <= self.n_freqs:
                raise ValueError(
                    f"maskout must be [start, end) with 0 <= start < end <= {self.n_freqs} "
                    f"(STFT bins), got {self.maskout}"
                )
            mask = torch.ones(self.n_freqs, 1)
            mask[start:end] = 0.0
            self.register_buffer("mask", mask, persistent=False)
        else:
            self.mask = None

    def initial_filterbank(self, kind: str) -> Tensor:
        """(n_freqs, n_mels) non-negative init: torchaudio's mel or linear bank, or random."""
        mel = filterbank("mel", self.n_freqs, self.f_min, self.f_max, self.n_mels, self.sample_rate)
        if kind == "mel":
            return mel
        if kind == "linear":
            return filterbank(
                "linear", self.n_freqs, self.f_min, self.f_max, self.n_mels, self.sample_rate
            )
        # Random filters with the mel bank's mean filter area, so output levels are alike.
        rand = torch.rand(self.n_freqs, self.n_mels)
        return rand / rand.sum(0, keepdim=True) * mel.sum(0).mean()

    @property
    def trainable_stft(self) -> bool:
        return self.stft.requires_grad

    @property
    def trainable_mel(self) -> bool:
        return self.mel_sqrt.requires_grad

    @property
    def filterbank(self) -> Tensor:
        """The effective (n_freqs, n_mels) filterbank, non-negative by construction."""
        return self.mel_sqrt.square()

    def n_frames(self, n_samples: int) -> int:
        pad = self.n_fft // 2
        return (int(n_samples) + 2 * pad - self.n_fft) // self.hop_length + 1

    def output_shape(self, n_samples: int) -> tuple[int, int, int]:
        """(1, n_mels, frames) for a waveform of `n_samples`: what a back-end receives."""
        return (1, self.n_mels, self.n_frames(n_samples))

    def power_spectrogram(self, x: Tensor) -> Tensor:
        """(B, 1, T) or (B, T) -> masked |STFT|² (B, n_freqs, frames)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected a mono waveform (B, 1, T) or (B, T), got {tuple(x.shape)}")
        pad = self.n_fft // 2
        x = F.pad(x, (pad, pad), mode="reflect")
        z = F.conv1d(x, self.stft, stride=self.hop_length)
        re, im = z[:, : self.n_freqs], z[:, self.n_freqs :]
        power = re * re + im * im
        if self.mask is not None:
            power = power * self.mask
        return power

    def forward(self, x: Tensor) -> Tensor:
        power = self.power_spectrogram(x)
        mel = torch.matmul(power.transpose(1, 2), self.filterbank).transpose(1, 2).unsqueeze(1)
        if self.log == "db":
            return taf.amplitude_to_DB(mel, 10.0, self.eps, 0.0, self.top_db)
        if self.log == "log1p":
            return torch.log1p(mel)
        return mel

    @torch.no_grad()
    def kernel_response(self, n_points: int = 1024) -> tuple[Tensor, Tensor]:
        """Frequencies (Hz) and each STFT bin's power response in dB, (n_freqs, n_points//2+1)
        (`kernel_response` of this front-end's current kernels)."""
        return kernel_response(self.stft, self.sample_rate, n_points, self.eps)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
            f"n_mels={self.n_mels}, mel_init={self.mel_init}, trainable_stft="
            f"{self.trainable_stft}, trainable_mel={self.trainable_mel}, maskout={self.maskout}, "
            f"log={self.log}, lr={self.lr}"
        )
