"""BC-ResNet (size, any mel height, sub-spectral norm, blocks) and the linear back-end."""

from __future__ import annotations

import pytest
import torch

from src.models.components.bcresnet import (
    BCResBlock,
    BCResNet,
    SubSpectralNorm,
    fitting_sub_bands,
)
from src.models.components.linear import LinearBackend


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


pytestmark = pytest.mark.usefixtures("one_thread")


def test_bcresnet1_has_about_9k_parameters_at_40_mels():
    net = BCResNet((1, 40, 63))
    # 8,836 without a classifier; with the paper's 12-class 1x1 conv (32*12 + 12) it is the
    # published 9.2k.
    assert n_params(net) == 8836
    assert n_params(net) + 32 * 12 + 12 == 9232
    assert net.out_features == 32
    assert n_params(BCResNet((1, 40, 63), tau=2.0)) == 26504  # ~3x: widths double


@pytest.mark.parametrize(
    ("n_mels", "bands"),
    [(10, [5, 5, 3, 3, 2, 2, 2, 2]), (20, [5, 5, 5, 5, 3, 3, 3, 3]), (30, [5, 5, 4, 4]), (40, [5])],
)
def test_runs_for_any_mel_height(n_mels, bands):
    net = BCResNet((1, n_mels, 16), dropout=0.0)
    y = net(torch.randn(4, 1, n_mels, 16))
    assert y.shape == (4, 32) and torch.isfinite(y).all()
    counts = net.sub_band_counts
    assert counts[: len(bands)] == bands and set(counts) <= set(bands)
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_short_and_odd_inputs():
    for shape in ((1, 7, 3), (2, 13, 1), (1, 1, 5)):
        net = BCResNet(shape).eval()
        assert net(torch.randn(2, *shape)).shape == (2, 32)
    with pytest.raises(ValueError, match="input_shape"):
        BCResNet((40, 16))


def test_fitting_sub_bands():
    got = {f: fitting_sub_bands(f, 5) for f in (1, 2, 3, 4, 5, 6, 7, 8, 10, 20)}
    assert got == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 3, 7: 1, 8: 4, 10: 5, 20: 5}


def test_sub_spectral_norm_normalises_each_band_separately():
    ssn = SubSpectralNorm(channels=2, freq=10, sub_bands=5).train()
    x = torch.randn(64, 2, 10, 8)
    scale = torch.arange(1, 11, dtype=torch.float32).view(1, 1, 10, 1)
    with torch.no_grad():
        y = ssn(x * scale + scale * 3)  # each pair of rows (one band) at its own level
    for band in range(5):
        rows = y[:, :, 2 * band : 2 * band + 2]
        for c in range(2):
            assert abs(float(rows[:, c].mean())) < 1e-4
            assert abs(float(rows[:, c].std()) - 1.0) < 0.02
    with pytest.raises(ValueError, match="SubSpectralNorm"):
        ssn(torch.randn(2, 2, 9, 8))


def test_blocks_keep_shapes_and_broadcast():
    normal = BCResBlock(8, 8, freq=20)
    assert not normal.transition
    x = torch.randn(2, 8, 20, 11)
    assert normal(x).shape == x.shape
    down = BCResBlock(8, 12, freq=20, stride=2, dilation=2)
    assert down.transition and down.out_freq == 10
    assert down(x).shape == (2, 12, 10, 11)


def test_linear_backend():
    lin = LinearBackend((1, 40, 16))
    assert lin.out_features == 640 and n_params(lin) == 0
    assert lin(torch.randn(3, 1, 40, 16)).shape == (3, 640)
    proj = LinearBackend((1, 40, 16), out_features=32)
    assert proj.out_features == 32 and proj(torch.randn(3, 1, 40, 16)).shape == (3, 32)
