"""A small convolutional backbone that adapts to any (C, H, W) input.

Stages of conv-norm-ReLU blocks are separated by 2x pooling, applied per spatial axis only
while that axis is at least 2 long, so tiny (8x8), rectangular (64x16) and multi-channel
inputs all work with the same channel list. A global pooling layer ends the backbone; the
per-parameter heads live in the LightningModule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.utils.checks import check_choice, image_shape

POOLS = ("max", "avg")
NORMS = ("batch", "group", "none")
GLOBAL_POOLS = ("avg", "max", "avgmax")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    return nn.Identity()


class GlobalPool(nn.Module):
    """(B, C, H, W) -> (B, C) or (B, 2C) for avgmax (mean and max side by side)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "avg":
            return x.mean(dim=(2, 3))
        if self.kind == "max":
            return x.amax(dim=(2, 3))
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class ConvNet(nn.Module):
    """Conv-norm-ReLU stages with per-axis pooling and global pooling to `out_features`."""

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (16, 32, 64),
        kernel_size: int = 3,
        pool: str = "max",
        dropout: float = 0.0,
        norm: str = "batch",
        global_pool: str = "avg",
        blocks_per_stage: int = 1,
    ) -> None:
        super().__init__()
        shape = image_shape(input_shape)
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (keeps sizes), got {kernel_size}")
        check_choice("pool", pool, POOLS)
        check_choice("norm", norm, NORMS)
        check_choice("global_pool", global_pool, GLOBAL_POOLS)
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")

        self.input_shape = shape
        in_ch, h, w = shape
        layers: list[nn.Module] = []
        for i, out_ch in enumerate(channels):
            for _ in range(blocks_per_stage):
                layers += [
                    nn.Conv2d(
                        in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=norm == "none"
                    ),
                    _norm(norm, out_ch),
                    nn.ReLU(inplace=True),
                ]
                in_ch = out_ch
            if i < len(channels) - 1:
                ph, pw = (2 if h >= 2 else 1), (2 if w >= 2 else 1)
                if ph > 1 or pw > 1:
                    pool_cls = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
                    layers.append(pool_cls(kernel_size=(ph, pw), stride=(ph, pw)))
                    h, w = h // ph, w // pw
        self.features = nn.Sequential(*layers)
        self.feature_shape = (in_ch, h, w)  # before global pooling
        self.pool = GlobalPool(global_pool)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_features = in_ch * (2 if global_pool == "avgmax" else 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.pool(self.features(x)))
