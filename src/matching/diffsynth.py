"""Differentiable renderings of the saw and FM synths, for refinement by gradient descent.

The generation synths (`src/synth/`) write in place into preallocated buffers for speed, which
autograd cannot follow. These twins compute the same notes out of place, so the gradient of a
spectral loss reaches every parameter, and add the two nuisances refinement estimates: the
onset (a continuous delay, in seconds) and the attack time. With the same start phase, the
same values and an onset of a whole number of samples they equal the generation synth's notes
(tests/test_matching.py holds them to it).

Cost: a saw note is about ten (B, T) float ops forward and as many backward; FM renders at 4x
the rate and resamples. The Moog ladder has no twin: its filter is a per-sample recursion
(8,000 sequential steps a note), and backpropagating through it would keep every step's
state, so it is refined by the derivative-free search only (docs/sound_matching.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torchaudio.functional as taf
from torch import Tensor

from src.synth.fm import FMSynth
from src.synth.saw import SawSynth

LN10_OVER_20 = math.log(10.0) / 20.0
TWO_PI = 2.0 * math.pi


def _time(n_samples: int, sample_rate: int, onset_s: Tensor) -> Tensor:
    """(B, T) seconds since each note's onset (negative before it), float64."""
    n = torch.arange(n_samples, dtype=torch.float64, device=onset_s.device)
    return n[None, :] / sample_rate - onset_s.double()[:, None]


def _envelope(p: Mapping[str, Tensor], t: Tensor) -> Tensor:
    """Level, decay (dB/s) and raised-cosine attack over (B, T) times; 0 before the onset."""
    amp = torch.exp(p["level"].double() * LN10_OVER_20)[:, None]
    log_gain = (-p["decay"].double()[:, None] * LN10_OVER_20 * t.clamp_min(0.0)).clamp_min(-30.0)
    attack = p["attack"].double().clamp_min(1e-5)[:, None]
    x = (t / attack).clamp(0.0, 1.0)
    ramp = 0.5 - 0.5 * torch.cos(math.pi * x)
    return (amp * log_gain.exp() * ramp).float()


def _hz(pitch: Tensor) -> Tensor:
    return 440.0 * torch.exp2((pitch.double() - 69.0) / 12.0)


def saw(
    p: Mapping[str, Tensor],
    sample_rate: int,
    n_samples: int,
    onset_s: Tensor,
    phase0: Tensor | None = None,
) -> Tensor:
    """(B, T) PolyBLEP sawtooth notes, as `SawSynth(blep_points=2)` renders them."""
    f = _hz(p["pitch"])
    t = _time(n_samples, sample_rate, onset_s)
    start = torch.zeros_like(f) if phase0 is None else phase0.double()
    x = start[:, None] + f[:, None] * t.clamp_min(0.0)
    d = (x - torch.round(x)).float()  # distance to the nearest wrap, cycles (round: no grad)
    c = (d * (sample_rate / f.float())[:, None]).clamp(-1.0, 1.0)
    wave = 2.0 * d - c * (2.0 - c.abs())
    return wave * _envelope(p, t)


def soft_limit(audio: Tensor, threshold: float = 0.95, ceiling: float = 1.0) -> Tensor:
    """Out-of-place `src.synth.base.soft_limit_`: identity below the knee, tanh above."""
    knee_at = threshold * ceiling
    knee = ceiling - knee_at
    mag = audio.abs()
    limited = torch.tanh((mag - knee_at) / knee) * knee + knee_at
    return torch.where(mag > knee_at, torch.copysign(limited, audio), audio)


def fm(
    p: Mapping[str, Tensor],
    sample_rate: int,
    n_samples: int,
    onset_s: Tensor,
    phase0: Tensor | None = None,
    synth: FMSynth | None = None,
) -> Tensor:
    """(B, T) two-operator FM notes, as `FMSynth` renders them (oversampled, resampled)."""
    synth = synth or FMSynth()
    os_ = synth.oversample
    sr_os = sample_rate * os_
    n_os = n_samples * os_
    f_car = _hz(p["pitch"])
    f_mod = f_car * p["ratio"].double()
    t_os = _time(n_os, sr_os, onset_s).clamp_min(0.0)
    phases = torch.zeros(len(f_car), 2, dtype=torch.float64, device=f_car.device)
    if phase0 is not None:
        phases = phase0.double()
    m = phases[:, 1:2] + f_mod[:, None] * t_os
    m = torch.sin(TWO_PI * (m - torch.round(m)))
    index = p["index"].double()[:, None] * torch.exp(
        (-p["index_decay"].double()[:, None] * LN10_OVER_20 * t_os).clamp_min(-30.0)
    )
    c = phases[:, 0:1] + f_car[:, None] * t_os
    wave = torch.sin(TWO_PI * (c - torch.round(c)) + index * m).float()
    if os_ > 1:
        wave = taf.resample(
            wave,
            sr_os,
            sample_rate,
            lowpass_filter_width=synth.lowpass_filter_width,
            rolloff=synth.rolloff,
        )
    wave = soft_limit(wave[:, :n_samples] * synth.headroom, 0.95)
    return wave * _envelope(p, _time(n_samples, sample_rate, onset_s))


RENDERERS: dict[type, Callable[..., Tensor]] = {SawSynth: saw, FMSynth: fm}


def differentiable(synth: object) -> Callable[..., Tensor] | None:
    """The differentiable twin of a generation synth, or None (refine it without gradients)."""
    render = RENDERERS.get(type(synth))
    if render is fm:
        return lambda *a, **k: fm(*a, **k, synth=synth)
    if render is saw and getattr(synth, "blep_points", 2) != 2:
        return None  # the twin is the two-point PolyBLEP
    return render
