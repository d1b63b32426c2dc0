"""Spectral metrics of frames on signals whose answers are known (src/metrics/spectral.py)."""

from __future__ import annotations

import math

import pytest
import torch

from src.imaging import SpectrogramImager
from src.metrics.spectral import (
    ERRORS,
    CentroidError,
    SpectralErrors,
    SpectralMSE,
    spectral_bandwidth,
    spectral_centroid,
    spectral_entropy,
    spectral_flatness,
    to_power,
)

SR, N = 8000, 16000


def imager(scale: str, height: int) -> SpectrogramImager:
    return SpectrogramImager(
        height=height,
        width=63,
        sample_rate=SR,
        n_samples=N,
        channels=[{"kind": "power", "scale": scale, "n_fft": 512}],
        f_min=40.0 if scale == "mel" else 0.0,
    )


def frames_of(im: SpectrogramImager, audio: torch.Tensor) -> torch.Tensor:
    """(W, H) linear powers of one clip, the edge frames (half outside the clip) dropped."""
    db = im.to_float(audio[None])[0, 0].T
    return (10.0 ** (db / 10.0))[4:-4]


@pytest.mark.parametrize("row", [12, 30, 50])
def test_a_pure_tone_has_its_frequency_as_centroid(one_thread, row):
    im = imager("mel", 64)
    freqs = im.frequencies(0).float()
    f0 = float(freqs[row])
    tone = 0.5 * torch.sin(2 * math.pi * f0 * torch.arange(N) / SR)
    power = frames_of(im, tone)
    centroid = spectral_centroid(power, freqs)
    assert centroid == pytest.approx(torch.full_like(centroid, f0), abs=0.005 * f0)
    # Narrow: within a mel band or two of the tone; concentrated: low entropy.
    assert float(spectral_bandwidth(power, freqs).max()) < 2 * float(freqs[row + 1] - freqs[row])
    assert float(spectral_entropy(power).max()) < 0.2


def test_white_noise_is_flat(one_thread):
    im = imager("linear", 32)  # equal bands: noise puts the same expected power in each
    noise = 0.05 * torch.randn(N, generator=torch.Generator().manual_seed(0))
    power = frames_of(im, noise)
    assert 0.85 < float(spectral_flatness(power).mean()) <= 1.0
    assert float(spectral_flatness(power.mean(dim=0))) > 0.99  # the averaged spectrum
    assert float(spectral_entropy(power.mean(dim=0))) > 0.999
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * torch.arange(N) / SR)
    assert float(spectral_flatness(frames_of(im, tone)).max()) < 0.05


def test_single_bin_and_flat_frames_exactly():
    freqs = torch.linspace(100.0, 3100.0, 16)
    one = torch.zeros(3, 16)
    one[torch.arange(3), torch.tensor([0, 7, 15])] = 2.5
    assert torch.equal(spectral_entropy(one), torch.zeros(3))
    assert torch.allclose(spectral_centroid(one, freqs), freqs[[0, 7, 15]])
    assert torch.allclose(spectral_bandwidth(one, freqs), torch.zeros(3), atol=1e-3)
    assert float(spectral_flatness(one).max()) < 1e-6
    flat = torch.full((2, 16), 0.3)
    assert torch.allclose(spectral_entropy(flat), torch.ones(2))
    assert torch.allclose(spectral_flatness(flat), torch.ones(2))
    assert torch.allclose(spectral_centroid(flat, freqs), torch.full((2,), 1600.0))
    # Two equal bins: centroid halfway, bandwidth half their distance, entropy log 2 / log K.
    two = torch.zeros(16)
    two[[2, 6]] = 1.0
    assert float(spectral_centroid(two, freqs)) == pytest.approx(float(freqs[[2, 6]].mean()))
    assert float(spectral_bandwidth(two, freqs)) == pytest.approx(float(freqs[6] - freqs[2]) / 2)
    assert float(spectral_entropy(two)) == pytest.approx(math.log(2) / math.log(16))


def test_unit_log_mel_maps_to_power():
    unit = torch.tensor([0.0, 0.5, 1.0, 1.7, -0.2])
    power = to_power(unit, -80.0, 0.0)
    expected = torch.tensor([1e-8, 1e-4, 1.0, 1.0, 1e-8])
    assert torch.allclose(power, expected, rtol=1e-5)


def test_metrics_accumulate_per_position_and_overall():
    freqs = torch.linspace(100.0, 3100.0, 8)
    mse = SpectralMSE(freqs, positions=3)
    target = torch.rand(4, 3, 8)
    offsets = torch.tensor([0.0, 0.1, 0.2])
    for half in (target[:2], target[2:]):  # two batches
        mse.update(half + offsets[None, :, None], half)
    assert torch.allclose(mse.curve(), offsets.square(), atol=1e-7)
    assert float(mse.compute()) == pytest.approx(float(offsets.square().mean()), abs=1e-7)
    centroid = CentroidError(freqs, positions=3)
    shifted = target.roll(1, dims=-1)
    centroid.update(shifted, target)
    expected = (spectral_centroid(shifted, freqs) - spectral_centroid(target, freqs)).abs()
    assert torch.allclose(centroid.curve(), expected.mean(dim=0), rtol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        mse.update(target[:, :2], target[:, :2])


def test_a_perfect_prediction_has_no_error_anywhere():
    errors = SpectralErrors(torch.linspace(100.0, 3100.0, 8), positions=2)
    frames = to_power(torch.rand(5, 2, 8), -80.0, 0.0)
    errors.update(frames, frames.clone())
    values = errors.compute()
    assert sorted(values) == sorted(ERRORS)
    assert all(float(v) == pytest.approx(0.0, abs=1e-6) for v in values.values())
    errors.reset()
    assert not errors.updated
