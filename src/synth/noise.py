"""Coloured noise, steady or in bursts: the sounds a codec must also carry besides notes.

The colour is the exponent a of a 1/f^a power spectrum (0 white, 1 pink, 2 brown; fractional
values in between), shaped in the frequency domain below `f_floor` kept flat so the lowest
bins do not dominate. `bursts` per second > 0 gates the noise into that many short
Hann-shaped bursts at random times (rounded to a whole count per note); 0 is steady noise.
`level` is the RMS over the note in dB re full scale; the rare peaks above full scale (sparse
bursts at a high level) are soft-limited.
"""

from __future__ import annotations

import math

import torch

from src.synth.base import Notes, Synth, db_to_amp, soft_limit_


class NoiseSynth(Synth):
    """Args: f_floor (Hz) below which the spectrum is flat; burst_s, one burst's length."""

    param_names = ("color", "level", "bursts")

    def __init__(self, *, f_floor: float = 20.0, burst_s: float = 0.04) -> None:
        if f_floor <= 0 or burst_s <= 0:
            raise ValueError(f"need f_floor > 0 and burst_s > 0, got {f_floor}, {burst_s}")
        self.f_floor = float(f_floor)
        self.burst_s = float(burst_s)

    def _render(self, notes: Notes) -> torch.Tensor:
        p, sr, t, b = notes.p, notes.sample_rate, notes.n_samples, notes.batch
        white = torch.randn(b, t, generator=notes.random.generator)
        if notes.random.groups is not None:  # records of a group share one draw
            white = white[notes.random.groups]
        freqs = torch.fft.rfftfreq(t, 1.0 / sr).clamp_min(self.f_floor)
        slope = -0.5 * p["color"].float()[:, None]  # amplitude ~ f^(-a/2)
        gain = torch.exp(slope * torch.log(freqs / self.f_floor)[None, :])
        audio = torch.fft.irfft(torch.fft.rfft(white) * gain, n=t)
        audio = audio * self._gate(p["bursts"], notes)
        rms = audio.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
        audio = audio * (db_to_amp(p["level"]).float()[:, None] / rms)
        return soft_limit_(audio.contiguous())

    def _gate(self, rate: torch.Tensor, notes: Notes) -> torch.Tensor:
        """(B, T) envelope: 1 for steady notes, else round(rate x duration) Hann bursts."""
        sr, t, b = notes.sample_rate, notes.n_samples, notes.batch
        count = torch.round(rate * t / sr).long()
        most = int(count.max()) if b else 0
        if most == 0:
            return torch.ones(b, t)
        width = max(2, round(self.burst_s * sr))
        starts = (notes.random.rand(b, most) * t).long()
        weights = (torch.arange(most)[None, :] < count[:, None]).float()
        pulses = torch.zeros(b, t + width).scatter_add_(1, starts, weights)
        window = torch.hann_window(width, periodic=False)
        n = 1 << math.ceil(math.log2(t + 2 * width))
        env = torch.fft.irfft(torch.fft.rfft(pulses, n=n) * torch.fft.rfft(window, n=n), n=n)
        env = env[:, :t].clamp_min(0.0)
        return torch.where(count[:, None] > 0, env, torch.ones_like(env))
