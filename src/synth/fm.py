"""Two-operator FM (phase modulation) with a decaying modulation index.

FM sidebands are not band-limited, so the note is rendered at ``oversample`` times the target
rate and brought down with torchaudio's windowed-sinc resampler, which removes most of what
would otherwise fold back below Nyquist.
"""

from __future__ import annotations

import math

import torch
import torchaudio.functional as taf

from src.synth.base import (
    Notes,
    Synth,
    block_phase,
    db_to_amp,
    decay_envelope_,
    envelope_factors,
    midi_to_hz,
    soft_limit_,
)
from src.synth.saw import pick_block

__all__ = ["FMSynth"]

_TWO_PI = 2.0 * math.pi


class FMSynth(Synth):
    """Sine carrier phase-modulated by a sine modulator at ``ratio`` times its frequency.

    The phase deviation is ``index * 10**(-index_decay * t / 20)`` radians, so the spectrum
    darkens over the note; the amplitude follows the usual level / decay / attack envelope.

    Args:
        oversample: integer render-rate multiplier before resampling to the target rate.
        rolloff: resampler cutoff as a fraction of the target Nyquist; below 1 leaves a
            guard band so sidebands just above Nyquist are attenuated instead of folded.
        lowpass_filter_width: resampler sinc half-width in zero crossings (sharper = slower).
        chunk_size: records rendered and resampled together (bounds the oversampled buffer).
    """

    param_names = ("pitch", "level", "decay", "attack", "ratio", "index", "index_decay")
    # Band-limiting FM removes sidebands and breaks its constant envelope: peaks of the
    # resampled signal reach ~1.4x the sine amplitude for rich, aliasing-prone settings.
    # This gain keeps nearly all notes below the soft limiter's knee (0.95).
    headroom = 0.7

    def __init__(
        self,
        *,
        oversample: int = 4,
        rolloff: float = 0.9,
        lowpass_filter_width: int = 6,
        chunk_size: int = 16,
    ) -> None:
        if oversample < 1 or int(oversample) != oversample:
            raise ValueError(f"oversample must be a positive integer, got {oversample}")
        if not 0.0 < rolloff <= 1.0:
            raise ValueError(f"rolloff must be in (0, 1], got {rolloff}")
        if chunk_size < 1 or lowpass_filter_width < 1:
            raise ValueError("chunk_size and lowpass_filter_width must be >= 1")
        self.oversample = int(oversample)
        self.rolloff = rolloff
        self.lowpass_filter_width = lowpass_filter_width
        self.chunk_size = chunk_size

    def _render(self, notes: Notes) -> torch.Tensor:
        p, sample_rate, n_samples, batch = notes.p, notes.sample_rate, notes.n_samples, notes.batch
        phases = notes.start_phases(2)
        sr_os = sample_rate * self.oversample
        n_os = n_samples * self.oversample
        block = pick_block(n_os)
        n_blocks = -(-n_os // block)
        f_car = midi_to_hz(p["pitch"])
        f_mod = f_car * p["ratio"]
        car_start, car_ramp = block_phase(f_car, phases[:, 0], sr_os, n_blocks, block)
        mod_start, mod_ramp = block_phase(f_mod, phases[:, 1], sr_os, n_blocks, block)
        idx_gain, idx_fine = envelope_factors(p["index"], p["index_decay"], sr_os, n_blocks, block)
        out = torch.empty(batch, n_samples, dtype=torch.float32, device=phases.device)
        chunk = max(1, min(self.chunk_size, batch))
        car = torch.empty(chunk, n_blocks, block, dtype=torch.float32, device=phases.device)
        mod = torch.empty_like(car)
        tmp = torch.empty_like(car)
        for s in range(0, batch, chunk):
            e = min(s + chunk, batch)
            c, m, t = car[: e - s], mod[: e - s], tmp[: e - s]
            # Phases reduced to [-0.5, 0.5] cycles keep sin's argument small and exact.
            torch.add(mod_start[s:e, :, None], mod_ramp[s:e, None, :], out=m)
            m.sub_(torch.round(m, out=t)).mul_(_TWO_PI).sin_()
            m.mul_(idx_gain[s:e, :, None]).mul_(idx_fine[s:e, None, :])
            torch.add(car_start[s:e, :, None], car_ramp[s:e, None, :], out=c)
            c.sub_(torch.round(c, out=t))
            torch.add(m, c, alpha=_TWO_PI, out=c).sin_()
            wave = c.view(e - s, -1)[:, :n_os]
            if self.oversample > 1:
                wave = taf.resample(
                    wave,
                    sr_os,
                    sample_rate,
                    lowpass_filter_width=self.lowpass_filter_width,
                    rolloff=self.rolloff,
                )
            out[s:e] = wave[:, :n_samples]
        soft_limit_(out.mul_(self.headroom), 0.95)
        return decay_envelope_(out, db_to_amp(p["level"]), p["decay"], p["attack"], sample_rate)
