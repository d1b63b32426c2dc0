"""Behavioural tests of the batch synthesizers (fast: short notes, small batches)."""

from __future__ import annotations

import math

import pytest
import torch

from src.synth.base import Synth, midi_to_hz, soft_limit_
from src.synth.fm import FMSynth
from src.synth.moog import MoogSynth
from src.synth.saw import SawSynth, polyblep_saw

SR = 8000

DEFAULTS = {
    "pitch": 57.0,
    "level": 0.0,
    "decay": 0.0,
    "attack": 0.005,
    "cutoff": 90.0,
    "resonance": 0.3,
    "env_amount": 12.0,
    "env_attack": 0.01,
    "env_decay": 0.2,
    "env_sustain": 0.5,
    "env_release": 0.1,
    "ratio": 2.0,
    "index": 3.0,
    "index_decay": 10.0,
}


def make_values(synth: Synth, batch: int, **overrides: float | torch.Tensor) -> dict:
    """Full parameter dict for ``synth``: defaults, with per-key scalar or (B,) overrides."""
    out = {}
    for name in synth.param_names:
        v = overrides.get(name, DEFAULTS[name])
        out[name] = v.float() if torch.is_tensor(v) else torch.full((batch,), float(v))
    return out


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spectrum(x: torch.Tensor) -> torch.Tensor:
    """Hann-windowed power spectrum of the last axis (1 Hz bins for 1 s at SR)."""
    x = x.double()
    w = torch.hann_window(x.shape[-1], periodic=False, dtype=torch.float64)
    return torch.fft.rfft(x * w).abs().square()


ALL = [SawSynth(), MoogSynth(), FMSynth()]


@pytest.mark.parametrize("synth", ALL, ids=lambda s: type(s).__name__)
def test_shape_dtype_and_bounds(synth: Synth) -> None:
    g = gen(1)
    b = 6
    vals = make_values(
        synth,
        b,
        pitch=torch.linspace(30, 90, b),
        resonance=torch.linspace(0, 1, b),
        cutoff=torch.linspace(20, 140, b),
    )
    y = synth.render(vals, SR, 1200, g)
    assert y.shape == (b, 1200)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0


@pytest.mark.parametrize("synth", ALL, ids=lambda s: type(s).__name__)
def test_deterministic_for_seed_and_phase_varies(synth: Synth) -> None:
    vals = make_values(synth, 3)
    a = synth.render(vals, SR, 800, gen(7))
    b = synth.render(vals, SR, 800, gen(7))
    c = synth.render(vals, SR, 800, gen(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    # Same parameters within a batch still get independent start phases.
    assert not torch.allclose(a[0], a[1], atol=1e-3)


@pytest.mark.parametrize("synth", ALL, ids=lambda s: type(s).__name__)
def test_missing_parameter_raises_key_error(synth: Synth) -> None:
    vals = make_values(synth, 2)
    missing = synth.param_names[-1]
    del vals[missing]
    with pytest.raises(KeyError, match=missing) as info:
        synth.render(vals, SR, 100, gen())
    assert type(synth).__name__ in str(info.value)


def test_bad_shapes_raise() -> None:
    s = SawSynth()
    vals = make_values(s, 2)
    vals["level"] = torch.zeros(3)
    with pytest.raises(ValueError, match="level"):
        s.render(vals, SR, 100, gen())
    vals["level"] = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="level"):
        s.render(vals, SR, 100, gen())


@pytest.mark.parametrize("pitch", [45.0, 57.0, 76.0])
def test_saw_pitch_is_spectral_peak(pitch: float) -> None:
    y = SawSynth().render(make_values(SawSynth(), 1, pitch=pitch), SR, SR, gen())
    peak_hz = float(spectrum(y[0]).argmax())  # 1 Hz bins
    assert abs(peak_hz - float(midi_to_hz(torch.tensor(pitch)))) <= 1.0


def test_level_scales_rms_in_db() -> None:
    levels = torch.tensor([0.0, -6.0, -20.0])
    for synth in ALL:
        # One note per call with the same seed: same start phases, only the level differs
        # (FM with integer ratios has a phase-dependent RMS).
        y = torch.cat(
            [synth.render(make_values(synth, 1, level=float(lv)), SR, 4000, gen()) for lv in levels]
        )
        rms = y[:, 400:].square().mean(1).sqrt()
        got = 20 * torch.log10(rms / rms[0])
        assert torch.allclose(got, levels, atol=0.01), (type(synth).__name__, got)


@pytest.mark.parametrize("decay", [6.0, 30.0, 90.0])
def test_decay_rate_in_db_per_second(decay: float) -> None:
    for synth in (SawSynth(), FMSynth()):
        y = synth.render(make_values(synth, 1, decay=decay, index=0.0), SR, SR, gen())
        frames = y[0, : SR // 100 * 100].view(100, -1).double()  # 10 ms frames
        db = 10 * torch.log10(frames.square().mean(1))
        t = (torch.arange(100, dtype=torch.float64) + 0.5) / 100
        sel = slice(5, 95)
        slope = torch.linalg.lstsq(
            torch.stack([t[sel], torch.ones(90, dtype=torch.float64)], 1), db[sel, None]
        ).solution[0, 0]
        assert abs(-float(slope) - decay) < 0.03 * decay + 0.3, (type(synth).__name__, slope)


def test_attack_fades_in() -> None:
    s = SawSynth()
    y = s.render(make_values(s, 1, attack=0.05, pitch=69.0), SR, 2000, gen())[0]
    env_early = y[:40].abs().max()
    env_late = y[400:800].abs().max()
    assert float(y[0]) == 0.0
    assert env_early < 0.05 * env_late


def _nonharmonic_db(x: torch.Tensor, f0: float, dc_is_harmonic: bool = False) -> float:
    """Energy off the harmonics of f0 relative to the energy on them, in dB."""
    p = spectrum(x)
    freqs = torch.arange(p.shape[-1], dtype=torch.float64) * SR / x.shape[-1]
    k = torch.round(freqs / f0)
    harm = ((freqs - k * f0).abs() < 8) & (k >= (0 if dc_is_harmonic else 1))
    return float(10 * torch.log10(p[~harm].sum() / p[harm].sum()))


def test_saw_is_alias_suppressed() -> None:
    pitch = 84.0  # 1047 Hz: only 3 harmonics below Nyquist, the rest would fold back
    f0 = float(midi_to_hz(torch.tensor(pitch)))
    vals = make_values(SawSynth(), 1, pitch=pitch, attack=0.0)
    y2 = SawSynth().render(vals, SR, SR, gen())[0]
    y4 = SawSynth(blep_points=4).render(vals, SR, SR, gen())[0]
    n = torch.arange(SR, dtype=torch.float64)
    naive = 2 * torch.remainder(0.25 + n * f0 / SR, 1.0) - 1
    naive_db, blep2_db, blep4_db = (_nonharmonic_db(x, f0) for x in (naive, y2, y4))
    assert naive_db > -10
    assert blep2_db < -18 and blep2_db < naive_db - 10
    assert blep4_db < blep2_db - 5


def test_polyblep_saw_layouts_agree() -> None:
    f = midi_to_hz(torch.tensor([40.0, 70.0], dtype=torch.float64))
    ph = torch.tensor([0.1, 0.7], dtype=torch.float64)
    full = polyblep_saw(f, ph, SR, 3000)
    parts = [polyblep_saw(f, ph, SR, 1000, start=i * 1000, time_major=True) for i in range(3)]
    assert torch.allclose(torch.cat(parts).t(), full, atol=1e-4)
    # float64 reference of the closed-form PolyBLEP saw: phase stays exact over the note.
    x = ph[:, None] + torch.arange(3000, dtype=torch.float64) * (f / SR)[:, None]
    d = x - torch.round(x)
    c = (d / (f / SR)[:, None]).clamp(-1, 1)
    ref = 2 * d - c * (2 - c.abs())
    assert torch.allclose(full.double(), ref, atol=1e-4)
    assert full.abs().max() <= 1.0


def _energy_above(x: torch.Tensor, hz: float) -> torch.Tensor:
    p = spectrum(x)
    return p[..., int(hz * x.shape[-1] / SR) :].sum(-1)


def test_ladder_higher_cutoff_more_high_frequencies() -> None:
    m = MoogSynth()
    cut = torch.tensor([50.0, 70.0, 90.0, 100.0])
    vals = make_values(m, 4, pitch=40.0, cutoff=cut, env_amount=0.0, resonance=0.2)
    y = m.render(vals, SR, 4000, gen())
    hf = _energy_above(y[:, 400:], 1000.0)
    assert torch.all(hf[1:] > hf[:-1] * 3), hf


def test_ladder_stable_at_max_resonance_and_cutoff() -> None:
    m = MoogSynth()
    b = 8
    vals = make_values(
        m,
        b,
        pitch=torch.tensor([24.0, 36, 48, 60, 72, 84, 96, 105]),
        cutoff=140.0,
        resonance=1.0,
        env_amount=torch.linspace(-60, 60, b),
        env_attack=0.0,
        env_decay=0.05,
        env_release=0.0,
    )
    y = m.render(vals, SR, SR, gen())
    assert torch.isfinite(y).all()
    assert y.abs().max() <= 1.0
    assert (y[:, 1000:].square().mean(1) > 1e-4).all()  # still sounding, not blown up/muted


def test_ladder_resonance_peaks_and_keeps_loudness() -> None:
    m = MoogSynth()
    res = torch.tensor([0.0, 0.5, 0.95])
    vals = make_values(m, 3, pitch=36.0, cutoff=84.0, env_amount=0.0, resonance=res)
    y = m.render(vals, SR, SR, gen())[:, 1000:]
    rms_db = 10 * torch.log10(y.square().mean(1))
    assert (rms_db - rms_db[0]).abs().max() < 4.0, rms_db
    # Resonance boosts the partials around the cutoff (1047 Hz) relative to the rest.
    p = spectrum(y)
    n = y.shape[-1]
    band = p[:, int(900 * n / SR) : int(1200 * n / SR)].sum(1) / p.sum(1)
    assert band[2] > 3 * band[0]


def test_ladder_cutoff_envelope_sweeps() -> None:
    m = MoogSynth(note_off=0.5)
    vals = make_values(
        m,
        1,
        pitch=36.0,
        cutoff=50.0,
        env_amount=48.0,
        env_attack=0.05,
        env_decay=0.1,
        env_sustain=0.5,
        env_release=0.05,
        resonance=0.0,
    )
    y = m.render(vals, SR, SR, gen())[0]
    early = _energy_above(y[400:1200], 1000.0) / y[400:1200].square().sum()  # open filter
    late = _energy_above(y[5600:6400], 1000.0) / y[5600:6400].square().sum()  # released
    assert early > 20 * late


def test_ladder_output_does_not_depend_on_the_block_size() -> None:
    vals = make_values(MoogSynth(), 4, pitch=torch.tensor([30.0, 50, 70, 90]), resonance=0.9)
    a = MoogSynth(block_size=64).render(vals, SR, 500, gen())
    b = MoogSynth(block_size=100).render(vals, SR, 500, gen())
    assert torch.allclose(a, b, atol=1e-5)


def test_fm_index_zero_is_pure_sine() -> None:
    fm = FMSynth()
    vals = make_values(fm, 1, pitch=69.0, index=0.0, ratio=3.0, attack=0.0)
    y = fm.render(vals, SR, SR, gen())[0].double()
    n = torch.arange(SR, dtype=torch.float64)
    w = 2 * math.pi * 440 * n / SR
    basis = torch.stack([torch.sin(w), torch.cos(w)], 1)
    core = slice(200, SR - 200)  # away from the resampler's edge transients
    coef = torch.linalg.lstsq(basis[core], y[core, None]).solution
    resid = y[core] - (basis[core] @ coef)[:, 0]
    assert float(coef.norm()) > 0.5
    assert float(resid.square().mean().sqrt()) < 1e-4 * float(coef.norm())


def test_fm_modulation_adds_sidebands_and_index_decays() -> None:
    fm = FMSynth()
    vals = make_values(
        fm, 2, pitch=57.0, ratio=1.0, index=torch.tensor([0.0, 4.0]), index_decay=60.0, attack=0.0
    )
    y = fm.render(vals, SR, SR, gen())
    above = 400 * 2000 // SR  # bin of 400 Hz in a 2000-sample frame (carrier: 220 Hz)
    p = spectrum(y[:, :2000])
    side = p[:, above:].sum(1) / p.sum(1)
    assert side[0] < 1e-4 and side[1] > 0.1
    late = spectrum(y[1, 6000:])
    assert late[above:].sum() / late.sum() < side[1] / 10


def test_fm_oversampling_suppresses_aliasing() -> None:
    # 440 Hz carrier, ratio 1, index 10: sidebands reach ~5 kHz, past Nyquist. All true
    # components are harmonics of 440 Hz (or DC); folded ones land between them.
    vals = make_values(FMSynth(), 1, pitch=69.0, ratio=1.0, index=10.0, index_decay=0.0)
    vals["attack"] = torch.zeros(1)
    plain, over = (
        _nonharmonic_db(FMSynth(oversample=o).render(vals, SR, SR, gen())[0], 440.0, True)
        for o in (1, 4)
    )
    assert plain > -15
    assert over < -35 and over < plain - 25


def test_soft_limit_only_touches_hot_rows() -> None:
    x = torch.tensor([[0.5, -0.8, 0.2], [2.0, -3.0, 0.95]])
    y = soft_limit_(x.clone(), 0.9)
    assert torch.equal(y[0], x[0])
    assert (y[1].abs() <= 1).all() and y[1, 0] > 0.9 and y[1, 1] < -0.9
    assert 0.9 < y[1, 2] < 0.95  # above the knee: compressed, not clipped


def test_hydra_instantiate_kwargs() -> None:
    from hydra.utils import instantiate

    s = instantiate({"_target_": "src.synth.moog.MoogSynth", "note_off": 0.5, "drive": 0.7})
    assert isinstance(s, MoogSynth) and s.note_off == 0.5
    f = instantiate({"_target_": "src.synth.fm.FMSynth", "oversample": 2})
    assert f.oversample == 2
