"""ConvNet adapts to any input shape; model config names state their measured size."""

from __future__ import annotations

import pytest
import torch

from src.models.components.cnn import ConvNet
from tests.helpers.models import MODEL_DIR, assert_size_ladder, check_config_size

MODEL_CONFIGS = sorted(MODEL_DIR.glob("cnn_*.yaml"))


@pytest.mark.parametrize(
    ("shape", "expected_map"),
    [((1, 32, 32), (4, 4)), ((3, 64, 16), (8, 2)), ((1, 8, 8), (1, 1)), ((2, 1, 5), (1, 1))],
)
def test_convnet_any_shape(shape, expected_map):
    net = ConvNet(shape, channels=[4, 8, 8, 16])
    x = torch.randn(3, *shape, requires_grad=True)
    y = net(x)
    assert y.shape == (3, net.out_features) == (3, 16)
    assert net.feature_shape[1:] == expected_map
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "features"),
    [
        ({"global_pool": "avgmax"}, 16),
        ({"global_pool": "max", "norm": "group", "pool": "avg"}, 8),
        ({"norm": "none", "dropout": 0.2, "kernel_size": 5, "blocks_per_stage": 2}, 8),
    ],
)
def test_convnet_options(kwargs, features):
    net = ConvNet((1, 16, 12), channels=[4, 8], **kwargs)
    assert net(torch.randn(2, 1, 16, 12)).shape == (2, features)
    assert net.out_features == features


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (32, 32)},
        {"channels": []},
        {"kernel_size": 4},
        {"pool": "stride"},
        {"norm": "layer"},
        {"global_pool": "sum"},
    ],
)
def test_convnet_rejects_bad_arguments(kwargs):
    args = {"input_shape": (1, 8, 8), "channels": [4]} | kwargs
    with pytest.raises(ValueError):
        ConvNet(**args)


def test_three_cnn_sizes():
    assert_size_ladder(MODEL_CONFIGS, at_least=3)


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates_and_name_matches_count(path):
    check_config_size(path, ConvNet)
