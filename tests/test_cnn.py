"""ConvNet adapts to any input shape; model config names state their measured size."""

from __future__ import annotations

import re
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from src.data.vimh import ParamSpec
from src.models.components.cnn import ConvNet
from src.models.multihead_module import MultiheadModule

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = sorted((ROOT / "configs" / "model").glob("cnn_*.yaml"))
# The default dataset: 1x32x32 images, heads pitch (9 classes), level (8), decay (10).
DEFAULT_HEADS = [
    {"name": "pitch", **ParamSpec("pitch", 45, 69, 3).mapping()},
    {"name": "level", **ParamSpec("level", -21, 0, 3).mapping()},
    {"name": "decay", **ParamSpec("decay", 6, 60, 6).mapping()},
]


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


def _stated_size(path: Path) -> float:
    m = re.search(r"_(\d+(?:\.\d+)?)([km])\b", path.stem)
    assert m, f"{path.name}: name does not state a size like _10k or _1m"
    return float(m.group(1)) * {"k": 1e3, "m": 1e6}[m.group(2)]


def test_at_least_three_cnn_sizes():
    assert len(MODEL_CONFIGS) >= 3


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_config_instantiates_and_name_matches_count(path):
    cfg = OmegaConf.load(path)
    model = hydra.utils.instantiate(cfg, heads=DEFAULT_HEADS, input_shape=[1, 32, 32])
    assert isinstance(model, MultiheadModule)
    assert isinstance(model.net, ConvNet)
    total = sum(p.numel() for p in model.parameters())
    assert total == model.param_counts["total"]
    stated = _stated_size(path)
    assert abs(total - stated) <= 0.1 * stated, f"{path.name}: measured {total:,}"
    # The measured count is written in the file, so it must be the current one.
    assert f"{total:,}" in path.read_text(), f"{path.name}: comment should say {total:,}"
    # The optimizer node stayed a DictConfig (_recursive_: false) and still builds.
    optimizer = model.optimizer_factory(model.parameters())
    assert isinstance(optimizer, torch.optim.AdamW)
