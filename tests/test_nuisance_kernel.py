"""The compiled onset-and-noise pass (src/generation/nuisance_kernel.py) writes torch's bytes."""

from __future__ import annotations

import pytest
import torch

from src.generation import nuisance as nz
from src.generation import nuisance_kernel
from src.synth.base import Randomness

pytest.importorskip("numba")


def _notes(b: int, t: int, seed: int) -> torch.Tensor:
    """Decaying noisy notes, some silent, one with its peak in the last samples."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(b, t, generator=g) * torch.linspace(1.0, 0.01, t)
    audio[1] = 0.0
    audio[2, -3] = 5.0  # the onset cuts this peak off: the delayed note's peak is smaller
    return audio


@pytest.mark.parametrize(
    ("onset_ms", "noise_db", "threads"),
    [((0, 40), (-60, -30), 1), ((0, 40), (-60, -30), 2), ((5, 5), None, 1), (None, (-40, -20), 2)],
)
def test_compiled_pass_equals_torch(monkeypatch, onset_ms, noise_db, threads: int) -> None:
    nuisance = nz.Nuisance(onset_ms=onset_ms, noise_db=noise_db)
    b, t = 300, 800
    groups = torch.arange(b) // 3  # records sharing draws, as identifiability sweeps do
    out = {}
    for path in ("compiled", "torch"):
        if path == "torch":
            monkeypatch.setattr(nuisance_kernel, "delay_and_noise_", lambda *a: False)
        record: dict = {}
        random = Randomness(torch.Generator().manual_seed(7), groups)
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        audio = _notes(b, t, seed=1)
        out[path] = (nuisance.adjust_audio(audio, 8000, random, record), record)
    (fast, rec_fast), (slow, rec_slow) = out["compiled"], out["torch"]
    assert torch.equal(fast, slow)
    assert rec_fast.keys() == rec_slow.keys() and all(
        torch.equal(rec_fast[k], rec_slow[k]) for k in rec_fast
    )
    if onset_ms == (5, 5):
        assert torch.equal(fast[:, :40], torch.zeros(b, 40))  # 5 ms at 8 kHz: 40 zeros first
        assert torch.equal(fast[:, 40:], _notes(b, t, seed=1)[:, :-40])
    if noise_db is not None:
        assert fast[1].abs().max() == 0  # a silent note gets no noise: the floor is relative


def test_kernel_declines_what_it_cannot_run() -> None:
    from src.generation.nuisance_kernel import delay_and_noise_

    zero = torch.zeros(2, dtype=torch.long)
    assert not delay_and_noise_(torch.zeros(2, 8, dtype=torch.float64), zero, None, None, None)
    assert not delay_and_noise_(torch.zeros(8, 2).t(), zero, None, None, None)
