"""Audio metrics and the resynthesis core on generated saw data (no training): the oracle
reproduces the stored notes, a wrong prediction is worse than a nearly right one on every
metric, baselines and heads decode to natural units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.vimh import ParamSpec, VIMHDataset
from src.evaluation.resynthesis import evaluate_resynthesis
from src.generation.rebuild import renderer_from_info
from src.metrics.audio import HIGHER_IS_BETTER, METRICS, AudioComparison, summarize
from src.metrics.baselines import nearest
from src.models.heads import MODES, build_head
from tests.helpers.synth_data import make_saw_dataset


@pytest.fixture(scope="module")
def saw(tmp_path_factory) -> VIMHDataset:
    # 32-record generation batches: the test split (40 records) spans two.
    return VIMHDataset(make_saw_dataset(tmp_path_factory.mktemp("saw"), size=400, batch_size=32))


def true_values(ds: VIMHDataset, n: int) -> dict[str, np.ndarray]:
    v = ds["test"].values()[:n]
    return {p.name: v[:, i] for i, p in enumerate(ds.params)}


def test_oracle_reproduces_the_stored_notes(saw, one_thread):
    dr = renderer_from_info(saw.info)
    n = 37  # ends inside the second generation batch of the test split
    audio = dr.render_records("test", true_values(saw, n))
    assert torch.equal(audio, torch.from_numpy(np.array(saw.audio("test")[:n])))
    # The rebuilt imager makes the stored images from them.
    assert np.array_equal(dr.renderer.image(audio).numpy(), saw["test"].images[:n])

    result = evaluate_resynthesis(saw, {"model": true_values(saw, n)}, n_listen=2)
    assert result.target_source == "stored" and result.n_records == n
    oracle = result.records["oracle"]
    for metric in ("mss", "lsd_db", "sc", "mfcc_dtw", "f0_err_cents", "mrstft", "centroid_err_hz"):
        assert np.abs(oracle[metric]).max() < 1e-5, metric
    assert oracle["rms_cos"].min() > 1 - 1e-6
    assert oracle["snr_db"].min() > 60 and oracle["si_sdr_db"].min() > 60
    assert set(result.records) == {"model", "oracle"}
    assert result.listen["target"].shape == (2, dr.n_samples)


def test_wrong_prediction_scores_worse_on_every_metric(saw, one_thread):
    n = 40
    true = true_values(saw, n)
    specs = {p.name: p for p in saw.params}

    def shifted(name: str, steps: float) -> np.ndarray:
        """`steps` classes away along the axis (octaves for decay), inward at the range ends."""
        s = specs[name]
        up = s.at_position(s.position(true[name]) + steps * s.step)
        down = s.at_position(s.position(true[name]) - steps * s.step)
        return np.where(up > s.max, down, up)

    nearly = {**true, "decay": shifted("decay", 1)}  # one decay class off, the rest right
    wrong = {
        "pitch": shifted("pitch", 2),
        "level": shifted("level", 2),
        "decay": shifted("decay", 2),
    }
    # Exactly one class away (on a log axis a class is `step` octaves, not `step` units).
    d = specs["decay"]
    assert (np.abs(d.class_index(nearly["decay"]) - d.class_index(true["decay"])) == 1).all()
    right = evaluate_resynthesis(saw, {"model": nearly}, n_listen=0).summary()["model"]
    bad = evaluate_resynthesis(saw, {"model": wrong}, n_listen=0).summary()["model"]
    for metric in [*METRICS, *(f"abs_err_{p.name}" for p in saw.params)]:
        r, b = right[metric]["median"], bad[metric]["median"]
        better = r > b if metric in HIGHER_IS_BETTER else r < b
        assert better, (metric, r, b)


def test_metrics_on_known_signals():
    sr, t = 8000, torch.arange(8000) / 8000
    sine = 0.5 * torch.sin(2 * torch.pi * 500 * t)[None]
    same = AudioComparison(sine, sr)(sine.clone())
    assert same["mrstft"].item() == 0 and same["lsd_db"].item() == 0
    assert same["centroid_err_hz"].item() < 1e-3
    octave = AudioComparison(sine, sr)(0.5 * torch.sin(2 * torch.pi * 1000 * t)[None])
    assert octave["centroid_err_hz"].item() == pytest.approx(500, rel=0.02)
    half = AudioComparison(sine, sr)(0.5 * sine)
    # Half the amplitude: the noise is half the target, SNR 6 dB; SI-SDR ignores the scale.
    assert half["snr_db"].item() == pytest.approx(20 * np.log10(2), abs=1e-3)
    assert half["si_sdr_db"].item() > 60
    # Noise (every bin far above the floor) at half amplitude: each bin 6.02 dB down, each
    # magnitude half: spectral convergence 0.5 plus log-magnitude distance ln 2.
    noise = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    half = AudioComparison(noise, sr)(0.5 * noise)
    assert half["lsd_db"].item() == pytest.approx(20 * np.log10(2), abs=1e-3)
    assert half["mrstft"].item() == pytest.approx(0.5 + np.log(2), abs=1e-4)
    stats = summarize(torch.tensor([1.0, 2.0, 3.0, float("nan")]))
    assert stats["n"] == 3 and stats["median"] == 2.0 and stats["mean"] == 2.0


def test_nearest_neighbour_is_exact_and_chunked():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (50, 1, 4, 4), dtype=np.uint8)
    query = train[[7, 3, 49]].copy()
    query[0, 0, 0, 0] ^= 1  # near, not equal
    idx = nearest(train, query, query_chunk=2, train_chunk=16)
    assert idx.tolist() == [7, 3, 49]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", ["linear", "log"])
def test_every_target_mode_decodes_to_natural_units(mode, scale):
    """What resynthesis renders: each head's decoded value is the class's grid value in natural
    units for a confident output, and the continuous modes leave the grid along the
    parameter's own axis (octaves for log scales)."""
    spec = (  # 9 classes: every 200 Hz, or every half octave
        ParamSpec("cutoff", 100.0, 1600.0, 0.5, scale="log", unit="Hz")
        if scale == "log"
        else ParamSpec("cutoff", 100.0, 1700.0, 200.0, unit="Hz")
    )
    head = build_head(spec, mode, in_features=4)
    k = torch.tensor([0, 3, 8])
    if mode in ("classification", "soft"):
        out = torch.nn.functional.one_hot(k, spec.num_classes).float() * 5
    elif mode == "expectation":  # a confident posterior: its mean is the class's position
        out = torch.nn.functional.one_hot(k, spec.num_classes).float() * 50
    elif mode == "offset":  # confident logits, zero offsets
        logits = torch.nn.functional.one_hot(k, spec.num_classes).float() * 5
        out = torch.cat([logits, torch.zeros_like(logits)], dim=1)
    elif mode == "ordinal":
        out = torch.where(torch.arange(spec.num_classes - 1)[None] < k[:, None], 3.0, -3.0)
    else:
        out = torch.from_numpy(spec.to_unit(spec.class_value(k.numpy()))).float()[:, None]
    values, classes = head.decode(out)
    assert classes.tolist() == k.tolist()
    np.testing.assert_allclose(values.numpy(), spec.class_value(k.numpy()), rtol=1e-5)
    # Off the grid: a quarter of the way from class 3 to class 4, along the axis.
    quarter = spec.at_position(3.25 * spec.step)
    if mode == "regression":  # the value itself, from the unit interval
        v, _ = head.decode(torch.tensor([[0.5]]))
        mid = np.sqrt(100.0 * 1600.0) if scale == "log" else 900.0
        assert v.item() == pytest.approx(mid, rel=1e-5)
    if mode == "expectation":  # posterior 3/4 on class 3, 1/4 on class 4
        logits = torch.full((1, spec.num_classes), -1e4)
        logits[0, 3], logits[0, 4] = np.log(3.0), 0.0
        v, c = head.decode(logits)
        assert c.item() == 3 and v.item() == pytest.approx(quarter, rel=1e-5)
    if mode == "offset":  # class 3 moved by +0.25 of a class; an offset past 0.5 is clamped
        out = torch.zeros(2, 2 * spec.num_classes)
        out[:, 3] = 5.0
        out[0, spec.num_classes + 3], out[1, spec.num_classes + 3] = 0.25, 3.0
        v, c = head.decode(out)
        assert c.tolist() == [3, 3]
        assert v[0].item() == pytest.approx(quarter, rel=1e-5)
        assert v[1].item() == pytest.approx(spec.at_position(3.5 * spec.step), rel=1e-5)


def test_sound_distances_accumulate_batches_as_a_torchmetrics_metric():
    """Two batches give the per-record values of one comparison, their mean and median; a
    shared comparison gives the same as passing the target; silence's f0 is left out."""
    from src.metrics.audio import SOUND_METRICS, SoundDistances

    sr = 8000
    t = torch.arange(sr) / sr
    f = torch.tensor([220.0, 330.0, 440.0, 550.0, 660.0])
    target = torch.sin(2 * torch.pi * f[:, None] * t) * torch.exp(-3 * t)
    pred = torch.sin(2 * torch.pi * (f * 2 ** (torch.arange(5) / 1200))[:, None] * t) * torch.exp(
        -4 * t
    )
    metric = SoundDistances(sr)
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], comparison=AudioComparison(target[2:], sr, metrics=SOUND_METRICS))
    whole = AudioComparison(target, sr)(pred)
    values = metric.values()
    out = metric.compute()
    for name in SOUND_METRICS:
        torch.testing.assert_close(values[name], whole[name].double(), rtol=1e-5, atol=1e-6)
        assert out[f"{name}/mean"].item() == pytest.approx(whole[name].double().mean().item())
        assert out[f"{name}/median"].item() == pytest.approx(
            whole[name].double().quantile(0.5).item()
        )
    # detuned by 0..4 cents: the tracker hears it
    np.testing.assert_allclose(values["f0_err_cents"].numpy(), np.arange(5), atol=1.0)
    assert values["rms_cos"].min() < 1.0 and values["mss"].min() > 0
    with pytest.raises(ValueError, match="a target or a comparison"):
        metric.update(pred)
    silent = SoundDistances(sr, ["f0_err_cents"])
    silent.update(torch.zeros(2, sr), target[:2])
    assert torch.isnan(silent.values()["f0_err_cents"]).all()
    assert torch.isnan(silent.compute()["f0_err_cents/mean"])
