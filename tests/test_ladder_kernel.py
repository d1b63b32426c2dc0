"""The compiled Moog ladder (src/synth/ladder_kernel.py) against the torch loop it replaces."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from src.synth import ladder_kernel
from src.synth.moog import MoogSynth, ladder_loop
from src.utils.config import compose_config

numba = pytest.importorskip("numba")


def _coefficients(t: int, b: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random (T, B) ladder coefficients over the ranges MoogSynth produces (cutoff up to
    0.45 sr, feedback up to self-oscillation, inputs driven into the tanh)."""
    gen = torch.Generator().manual_seed(seed)
    pi_fc = torch.exp(torch.empty(t, b).uniform_(math.log(1e-3), math.log(0.45 * math.pi)))
    g = pi_fc.tan() / (1.0 + pi_fc.tan())
    k = 4.0 * torch.rand(1, b, generator=gen)
    den = 1.0 + k * g**4
    x = 3.0 * (torch.rand(t, b, generator=gen) - 0.5) * (1.0 + k) / den
    ka = k * (1.0 - g) / den
    return g.float().contiguous(), x.float().contiguous(), ka.float().contiguous()


def test_tanh_is_correctly_rounded_float32() -> None:
    @numba.njit
    def many(v, out):
        for i in range(v.size):
            out[i] = np.float32(ladder_kernel.tanh_f64(np.float64(v[i])))

    v = np.concatenate([np.linspace(-12, 12, 400_001), [0.0, -0.0, 1e-30, 1e-6, 0.00999, 0.01]])
    v = v.astype(np.float32)
    got = np.empty_like(v)
    many(v, got)
    want = np.tanh(v.astype(np.float64)).astype(np.float32)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_torch_loop_on_random_coefficients(threads: int) -> None:
    t, b = 600, 640
    g, x, ka = _coefficients(t, b, seed=threads)
    out_t, out_n = torch.empty(t, b), torch.empty(t, b)
    st_t, st_n = 0.1 * torch.randn(4, b), torch.empty(4, b)
    st_n.copy_(st_t)
    ladder_loop(g, x, ka, out_t, st_t, torch.empty(4, b))
    peak = torch.zeros(b)
    ladder_kernel.ladder_numba(g[:250], x[:250], ka[:250], out_n[:250], st_n, peak, threads)
    ladder_kernel.ladder_numba(g[250:], x[250:], ka[250:], out_n[250:], st_n, peak, threads)
    assert torch.equal(peak, out_n.abs().amax(dim=0))  # carried across the two blocks
    assert out_t.abs().max() > 0.5  # driven hard enough to exercise the tanh
    torch.testing.assert_close(out_n, out_t, rtol=0, atol=2e-5)
    torch.testing.assert_close(st_n, st_t, rtol=0, atol=2e-5)


def test_threads_split_the_batch_without_changing_a_bit() -> None:
    g, x, ka = _coefficients(200, 1000, seed=5)
    outs = []
    for threads in (1, 3):
        out, st, peak = torch.empty(200, 1000), torch.zeros(4, 1000), torch.zeros(1000)
        ladder_kernel.ladder_numba(g, x, ka, out, st, peak, threads)
        outs.append((out, st, peak))
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def _draw(synth: str, batch: int, seed: int) -> dict[str, torch.Tensor]:
    """Parameters drawn uniformly (log-uniformly where the config says so) over a synth's
    configured ranges."""
    params = compose_config("generate", [f"synth={synth}"]).synth.params
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, spec in params.items():
        lo, hi = float(spec.min), float(spec.max)
        u = torch.rand(batch, generator=gen, dtype=torch.float64)
        if spec.get("scale") == "log":
            out[name] = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            out[name] = lo + u * (hi - lo)
    return out


@pytest.mark.parametrize("synth", ["moog", "moog_hard"])
def test_rendered_notes_match_the_torch_loop(synth: str) -> None:
    values = _draw(synth, 96, seed=11)
    values["resonance"][:8] = 0.9  # the loudest resonances of the ranges
    notes = {}
    for ladder in ("auto", "torch"):
        synth_ = MoogSynth(ladder=ladder, block_size=50)  # 8000 / 50: whole blocks
        notes[ladder] = synth_.render(values, 8000, 8000, torch.Generator().manual_seed(2))
    assert notes["torch"].abs().amax(1).min() > 1e-3  # every note sounds
    torch.testing.assert_close(notes["auto"], notes["torch"], rtol=0, atol=2e-6)


def test_torch_loop_serves_other_devices_and_missing_numba(monkeypatch, caplog) -> None:
    values = _draw("moog", 4, seed=3)
    s = MoogSynth()
    assert s._compiled(values)
    assert not s._compiled({"pitch": torch.zeros(4, device="meta")})  # a GPU's tensors alike
    assert not MoogSynth(ladder="torch")._compiled({})
    monkeypatch.setenv("NSM_LADDER", "torch")
    assert not s._compiled({})
    monkeypatch.delenv("NSM_LADDER")
    monkeypatch.setattr(ladder_kernel, "numba", None)
    monkeypatch.setattr(ladder_kernel, "_said", False)
    with caplog.at_level(logging.WARNING, logger="src.synth.ladder_kernel"):
        assert not s._compiled({}) and not s._compiled({})
    said = [r.message for r in caplog.records if "numba" in r.message]
    assert said == ["numba is not installed: the Moog ladder runs its slower torch loop"]
    audio = s.render(values, 8000, 800, torch.Generator().manual_seed(0))
    assert audio.shape == (4, 800) and audio.abs().max() > 1e-3


def test_ladder_option_is_checked() -> None:
    with pytest.raises(ValueError, match="ladder must be"):
        MoogSynth(ladder="numba")
