"""The generation nuisance does what its config says: onsets shift whole notes, the noise floor
sits at the stated level below each note's peak, shared draws stay shared."""

from __future__ import annotations

import math

import pytest
import torch

from src.errors import ConfigError
from src.generation.nuisance import Nuisance, delayed
from src.synth.base import Randomness


def test_delayed_shifts_each_row_by_its_own_delay():
    audio = torch.randn(5, 20)
    delay = torch.tensor([0, 3, 20, 1, 25])  # 20: all silence; 25 is clamped to the length
    out = delayed(audio, delay)
    for row, d in enumerate(delay.clamp_max(20).tolist()):
        assert torch.equal(out[row], torch.cat([torch.zeros(d), audio[row, : 20 - d]]))
    assert delayed(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).shape == (0, 4)


def test_noise_floor_is_at_the_stated_level_below_each_peak():
    t, sr = 8000, 8000
    audio = torch.zeros(64, t)
    audio[:, 100] = torch.linspace(0.01, 1.0, 64)  # one click per row: peaks known exactly
    n = Nuisance.from_config({"noise_db": [-40, -40]})
    out = n.adjust_audio(audio.clone(), sr, Randomness(torch.Generator().manual_seed(0)))
    noise = out.clone()
    noise[:, 100] -= audio[:, 100]
    ratio = noise.std(dim=1) / audio[:, 100]
    assert torch.allclose(ratio, torch.full_like(ratio, 10 ** (-40 / 20)), rtol=0.05)


def test_onsets_are_in_range_and_groups_share_them():
    t, sr = 800, 8000
    audio = torch.zeros(6, t)
    audio[:, 0] = 1.0
    n = Nuisance.from_config({"onset_ms": [5, 20]})
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    out = n.adjust_audio(audio, sr, Randomness(torch.Generator().manual_seed(1), groups))
    onsets = out.argmax(dim=1)
    assert ((onsets >= 40) & (onsets <= 160)).all()
    assert torch.equal(onsets[0::2], onsets[1::2])


def test_bad_ranges_are_named():
    with pytest.raises(ConfigError, match="onset_ms"):
        Nuisance.from_config({"onset_ms": [10, 5]})
    with pytest.raises(ConfigError, match="unknown keys"):
        Nuisance.from_config({"jitter": 1})
    assert math.isclose(Nuisance.from_config({"detune_cents": 10}).detune_cents, 10.0)
