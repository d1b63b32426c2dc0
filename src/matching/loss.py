"""The objective of refinement: a multi-scale log-mel distance to the target notes, blind to
the parts of a note a synth's parameters do not set.

Per resolution (the ~32, 64 and 128 ms windows of the MSS metric), both mel spectrograms are
taken as log(power + floor), the floor `floor_db` under the target's loudest band: the noise
floor of the datasets (30-60 dB under the note's peak, spread over every band) and of
recordings sits below it, so noise is neither matched nor needed. Start phases do not reach a
power spectrogram; the onset and attack are searched with the parameters, and detune is
absorbed by the pitch (the refined pitch is the pitch that sounds). The loss is differentiable
and computed for a whole batch at once; `index` lets a population of candidates share their
note's target.
"""

from __future__ import annotations

import torch
from torch import Tensor

from src.imaging.filters import window as make_window
from src.metrics import sound

FLOOR_DB = 40.0


def stft_power(audio: Tensor, n_fft: int) -> Tensor:
    """(B, F, T) power, a full-scale sine at a bin centre = 1; out of place (autograd)."""
    w = make_window(n_fft, "hann", dtype=audio.dtype).to(audio.device)
    z = torch.stft(audio, n_fft, n_fft // 4, window=w, center=True, return_complex=True)
    return (z.real.square() + z.imag.square()) * (4.0 / float(w.sum()) ** 2)


class SpectralLoss:
    """(B,) loss of candidate notes against the targets given at construction."""

    def __init__(self, target: Tensor, sample_rate: int, floor_db: float = FLOOR_DB) -> None:
        self.sample_rate = int(sample_rate)
        self.ffts = sound.mss_ffts(self.sample_rate)
        with torch.no_grad():
            mels = [
                sound.mel_power(stft_power(target.float(), n), self.sample_rate) for n in self.ffts
            ]
            self.floors = [
                m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12) * 10 ** (-floor_db / 10)
                for m in mels
            ]
            self.targets = [(m + f).log() for m, f in zip(mels, self.floors)]

    def __call__(self, audio: Tensor, index: Tensor | None = None) -> Tensor:
        """Mean over resolutions of the mean |log-mel difference|; row i of `audio` is
        compared with target `index[i]` (default: target i)."""
        total = 0.0
        for n, target, floor in zip(self.ffts, self.targets, self.floors):
            mel = sound.mel_power(stft_power(audio, n), self.sample_rate)
            if index is not None:
                target, floor = target[index], floor[index]
            total = total + ((mel + floor).log() - target).abs().mean(dim=(1, 2))
        return total / len(self.ffts)
