"""Sound matching: the differentiable twins render the generation synths' notes, the nuisance
draws replay, refinement finds the pitch that sounds, and the SoundFont reader and f0 tracker
read labelled recordings right."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.vimh import VIMHDataset
from src.generate import generate_dataset
from src.generation.nuisance import delayed
from src.generation.rebuild import renderer_from_info
from src.generation.recipe import dataset_path, recipe_config
from src.matching import diffsynth
from src.matching.refine import Refiner, SearchSpace, estimate_onset, refine_cmaes, refine_gradient
from src.metrics.pitch import cents, yin_f0
from src.synth.fm import FMSynth
from src.synth.saw import SawSynth


@pytest.fixture(scope="module")
def saw(tmp_path_factory) -> VIMHDataset:
    """The default saw recipe (continuous labels, every nuisance on), small, audio stored."""
    root = tmp_path_factory.mktemp("saw_match")
    cfg = recipe_config({"dataset": {"size": 400, "seed": 3, "store_audio": True}}, out_dir=root)
    cfg.identifiability.enabled = False
    folder = dataset_path(cfg)
    generate_dataset(cfg)
    return VIMHDataset(Path(folder))


def random_values(b: int, fm: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    v = {
        "pitch": 36 + 48 * torch.rand(b, generator=g),
        "level": -40 * torch.rand(b, generator=g),
        "decay": 4 * torch.exp2(5 * torch.rand(b, generator=g)),
        "attack": 0.002 + 0.03 * torch.rand(b, generator=g),
    }
    if fm:
        v |= {
            "ratio": 1 + 3 * torch.rand(b, generator=g),
            "index": 6 * torch.rand(b, generator=g),
            "index_decay": 40 * torch.rand(b, generator=g),
        }
    return v


@pytest.mark.parametrize("kind", ["saw", "fm"])
def test_differentiable_twins_render_the_generation_synths_notes(kind):
    b, sr, n = 6, 8000, 4000
    synth, render = (SawSynth(), diffsynth.saw) if kind == "saw" else (FMSynth(), diffsynth.fm)
    values = random_values(b, fm=kind == "fm")
    phases = torch.rand(
        b,
        1 if kind == "saw" else 2,
        generator=torch.Generator().manual_seed(5),
        dtype=torch.float64,
    )
    fast = synth.render(values, sr, n, torch.Generator().manual_seed(5))
    twin_phase = phases[:, 0] if kind == "saw" else phases
    twin = render({k: v.double() for k, v in values.items()}, sr, n, torch.zeros(b), twin_phase)
    assert (fast - twin).abs().max() < 1e-4 * fast.abs().max()
    # A whole-sample onset is the generation's delay (FM: but for the resampler's last few
    # samples, where the generation's note is cut and the twin's is not).
    delay = torch.tensor([0, 3, 17, 40, 80, 120])
    late = render({k: v.double() for k, v in values.items()}, sr, n, delay / sr, twin_phase)
    edge = 0 if kind == "saw" else 32
    diff = (delayed(fast, delay) - late)[:, : n - edge]
    assert diff.abs().max() < 1e-4 * fast.abs().max()


def test_gradients_reach_every_parameter_of_the_twin():
    values = {k: v.double().requires_grad_(True) for k, v in random_values(3, fm=True).items()}
    onset = torch.full((3,), 0.01, dtype=torch.float64, requires_grad=True)
    diffsynth.fm(values, 8000, 2000, onset).square().sum().backward()
    for name, v in values.items():
        assert v.grad is not None and v.grad.abs().sum() > 0, name
    assert onset.grad.abs().sum() > 0


def test_search_space_round_trips_values(saw):
    space = SearchSpace.of_renderer(renderer_from_info(saw.info).renderer)
    assert space.names == ["pitch", "level", "decay", "onset", "attack"]
    true = saw["test"].values()[:8]
    values = {p.name: true[:, i] for i, p in enumerate(saw.params)}
    onset, attack = np.linspace(0, 0.05, 8), np.geomspace(0.002, 0.05, 8)
    back, back_onset = space.decode(space.encode(values, onset, attack))
    for name in values:
        np.testing.assert_allclose(back[name].numpy(), values[name], rtol=1e-9)
    np.testing.assert_allclose(back_onset.numpy(), onset, atol=1e-12)
    np.testing.assert_allclose(back["attack"].numpy(), attack, rtol=1e-9)
    assert back["attack"].shape == (8,) and space.dim == 5


def test_nuisance_draws_replay_the_pitch_that_sounds(saw):
    """The tracker hears label + detune in the stored notes, not the label."""
    dr = renderer_from_info(saw.info)
    n = 40
    draws = dr.nuisance_draws("test", n)
    assert set(draws) == {"detune_cents", "attack_s", "onset_s", "noise_db"}
    assert np.abs(draws["detune_cents"]).max() <= 10 and draws["detune_cents"].std() > 2
    label = saw["test"].values()[:n, 0]
    f0 = yin_f0(torch.from_numpy(np.array(saw.audio("test")[:n])), dr.sample_rate)[0]
    heard = 100 * (69 + 12 * np.log2(f0.double().numpy() / 440) - label)
    assert np.median(np.abs(heard - draws["detune_cents"])) < 2.0
    assert np.median(np.abs(heard - draws["detune_cents"])) < 0.5 * np.median(np.abs(heard))


def test_yin_reads_sines_and_saws_within_a_few_cents():
    sr = 8000
    midi = torch.tensor([36.0, 45.3, 57.0, 69.9, 83.5])
    f = 440 * torch.exp2((midi - 69) / 12)
    t = torch.arange(sr) / sr
    sine = torch.sin(2 * math.pi * f[:, None] * t)
    assert cents(yin_f0(sine, sr)[0], f).abs().max() < 3
    values = {
        "pitch": midi,
        "level": torch.full((5,), -6.0),
        "decay": torch.full((5,), 20.0),
        "attack": torch.full((5,), 0.01),
    }
    saw_notes = SawSynth().render(values, sr, sr, torch.Generator().manual_seed(0))
    assert cents(yin_f0(saw_notes, sr)[0], f).abs().max() < 5
    assert torch.isnan(yin_f0(torch.zeros(2, sr), sr)[0]).all()


def test_refinement_finds_the_pitch_that_sounds(saw, one_thread):
    """From a start 0.4 semitone and 2 dB off, CMA-ES lands within a few cents of label +
    detune, and the gradient search lowers every note's loss and the pitch error."""
    dr = renderer_from_info(saw.info)
    space = SearchSpace.of_renderer(dr.renderer)
    n = 4
    target = torch.from_numpy(np.array(saw.audio("test")[:n]))
    true = saw["test"].values()[:n]
    sounding = true[:, 0] + dr.nuisance_draws("test", n)["detune_cents"] / 100
    start_values = {"pitch": true[:, 0] + 0.4, "level": true[:, 1] - 2, "decay": true[:, 2] * 1.2}
    start = space.encode(start_values, estimate_onset(target, dr.sample_rate).numpy(), None)
    cma = refine_cmaes(space, target, start, generations=20)
    err = np.abs(cma.values["pitch"] - sounding) * 100
    assert (cma.loss_end < cma.loss_start).all()
    assert err.max() < 8 and np.median(err) < 3, err
    assert cma.renders == n * (1 + 20 * 8) and cma.unit.shape == (n, 5)
    grad = refine_gradient(space, target, start, steps=30)
    assert (grad.loss_end < grad.loss_start).all()
    assert np.abs(grad.values["pitch"] - sounding).mean() < 0.2


def test_refinement_works_after_an_inference_mode_evaluation(saw, one_thread):
    """The metrics' cached filterbanks, first made under inference mode (as eval does), must
    still serve a gradient search."""
    from src.metrics import sound

    sound._mel_bank.cache_clear()
    dr = renderer_from_info(saw.info)
    space = SearchSpace.of_renderer(dr.renderer)
    target = torch.from_numpy(np.array(saw.audio("test")[:2]))
    with torch.inference_mode():
        sound.mel_power(torch.ones(1, 129, 3), dr.sample_rate)  # fills the cache
    true = saw["test"].values()[:2]
    start = space.encode({p.name: true[:, i] for i, p in enumerate(saw.params)}, [0.0, 0.0], None)
    assert refine_gradient(space, target, start, steps=2).loss_end.shape == (2,)


def test_refiner_options_are_checked():
    with pytest.raises(ValueError, match="method"):
        Refiner(method="newton")
    with pytest.raises(ValueError, match="pitch_start"):
        Refiner(pitch_start="guess")
    with pytest.raises(ValueError, match="sigma"):
        Refiner(sigma=0)


def test_soundfont_samples_are_labelled_recordings():
    from src.audio.soundfont import bundled_bank, read_samples

    bank = bundled_bank()
    if bank is None:
        pytest.skip("pretty_midi (the dev extra) is not installed")
    samples = {s.name: s for s in read_samples(bank)}
    oboe = samples["Oboe C#"]  # C#4, recorded at 22.05 kHz
    assert oboe.pitch == 61.0 and oboe.sample_rate == 22050 and oboe.seconds > 1.0
    f0 = yin_f0(torch.from_numpy(oboe.audio)[None], oboe.sample_rate)[0]
    assert abs(float(cents(f0, torch.tensor(440 * 2 ** ((61 - 69) / 12))))) < 10
