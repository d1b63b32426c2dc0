"""The simplest back-end: flatten the input, optionally project it; a floor for the others."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


class LinearBackend(nn.Module):
    """(B, *input_shape) -> (B, out_features). Without `out_features` the features are the
    flattened input itself, so the model is linear per head (heads sit in the module)."""

    def __init__(self, input_shape: Sequence[int], out_features: int | None = None) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape must be positive sizes, got {shape}")
        self.input_shape = shape
        n = math.prod(shape)
        if out_features is None:
            self.proj: nn.Module = nn.Identity()
            self.out_features = n
        else:
            if out_features < 1:
                raise ValueError(f"out_features must be >= 1, got {out_features}")
            self.proj = nn.Linear(n, int(out_features))
            self.out_features = int(out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.flatten(1))
