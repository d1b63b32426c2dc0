"""Notes a model was not trained on, with the pitch each was played at: other synths' notes
and recorded instruments, for the out-of-domain table of docs/sound_matching.md.

- `fm_notes`: two-operator FM (integer ratios, so the carrier is the fundamental).
- `plucked_strings`: Karplus-Strong strings (a noise burst in a delay line with a two-point
  average; the pitch is sr / (period + 0.5)).
- `recorded_notes`: recorded instrument samples of a SoundFont bank (`src/audio/soundfont.py`),
  labelled with the pitch the bank says they were recorded at. Banks tune some samples in
  their instrument zones rather than in the sample header, so a header is trusted only where
  the f0 tracker agrees with it (within `agree_cents`); the others are left out and counted.
  Of a stereo pair (names ending in L and R) only the left channel is kept.

Every source returns (audio (N, n_samples) float32 at `sample_rate`, MIDI pitch (N,), names).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as taf

from src.audio.soundfont import LEFT, MONO, read_samples
from src.metrics.pitch import yin_f0
from src.synth.fm import FMSynth

# Instrument families of TimGM6mb whose samples are acoustic recordings of sustained notes.
RECORDED_FAMILIES = ("Oboe", "Str1", "ensstrings", "Trump", "FrenchHorn", "Alto", "Sop", "Bari")


def _fit(audio: torch.Tensor, n_samples: int) -> torch.Tensor:
    if audio.shape[-1] >= n_samples:
        return audio[..., :n_samples]
    return torch.nn.functional.pad(audio, (0, n_samples - audio.shape[-1]))


def fm_notes(n: int, sample_rate: int, n_samples: int, pitch=(45.0, 69.0), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lo, hi = pitch
    values = {
        "pitch": lo + (hi - lo) * torch.rand(n, generator=g),
        "level": -6 - 14 * torch.rand(n, generator=g),
        "decay": 6 + 24 * torch.rand(n, generator=g),
        "attack": torch.full((n,), 0.005),
        "ratio": torch.randint(1, 5, (n,), generator=g).float(),
        "index": 0.5 + 3.5 * torch.rand(n, generator=g),
        "index_decay": 6 + 24 * torch.rand(n, generator=g),
    }
    audio = FMSynth().render(values, sample_rate, n_samples, g)
    names = [f"fm_{i:03d}" for i in range(n)]
    return audio, values["pitch"].double().numpy(), names


def plucked_strings(n: int, sample_rate: int, n_samples: int, pitch=(40.0, 76.0), seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.uniform(*pitch, n)
    out = torch.zeros(n, n_samples)
    labels = np.empty(n)
    for i, m in enumerate(target):  # reference sounds, one recursive filter each
        f = 440.0 * 2 ** ((m - 69) / 12)
        period = max(2, round(sample_rate / f - 0.5))
        labels[i] = 69 + 12 * math.log2(sample_rate / (period + 0.5) / 440.0)
        x = torch.zeros(n_samples, dtype=torch.float64)
        x[:period] = torch.from_numpy(rng.uniform(-1, 1, period))
        a = torch.zeros(period + 2, dtype=torch.float64)
        a[0], a[period], a[period + 1] = 1.0, -0.498, -0.498
        b = torch.zeros_like(a)
        b[0] = 1.0
        y = taf.lfilter(x, a, b, clamp=False)
        out[i] = (0.5 * y / y.abs().max()).float()
    return out, labels, [f"pluck_{i:03d}" for i in range(n)]


def recorded_notes(
    bank: str | Path,
    sample_rate: int,
    n_samples: int,
    pitch=(36.0, 84.0),
    agree_cents: float = 30.0,
    min_seconds: float = 0.3,
):
    """Labelled recordings of the bank (see the module doc); also returns how many samples
    of the families were left out because the tracker disagreed with their header."""
    kept, labels, names, dropped = [], [], [], 0
    for s in read_samples(bank):
        if not s.name.startswith(RECORDED_FAMILIES) and not any(
            f in s.name for f in RECORDED_FAMILIES
        ):
            continue
        if s.kind not in (MONO, LEFT) or s.seconds < min_seconds or s.name.endswith(" R"):
            continue
        if not pitch[0] <= s.pitch <= pitch[1]:
            continue
        audio = torch.from_numpy(s.audio)[None]
        f0 = float(yin_f0(audio, s.sample_rate)[0][0])
        if not math.isfinite(f0) or abs(1200 * math.log2(f0 / 440) + 6900 - 100 * s.pitch) > (
            agree_cents
        ):
            dropped += 1
            continue
        note = taf.resample(audio, s.sample_rate, sample_rate)[0]
        kept.append(_fit(note / note.abs().max().clamp_min(1e-9) * 0.5, n_samples))
        labels.append(s.pitch)
        names.append(s.name)
    return torch.stack(kept), np.array(labels), names, dropped
