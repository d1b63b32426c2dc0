"""Batch transforms that run on the device after transfer: pixel normalisation, masking.

Both are `nn.Module`s in the manner of torchaudio's transforms, applied to whole batches.
Normalisation statistics are exact per-channel moments of the training pixels, computed from
byte histograms (no float copy of the dataset).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torchaudio
from torch import nn

AUGMENT_KEYS = ("freq_mask", "time_mask", "n_masks")


class Normalize(nn.Module):
    """uint8 images (B, C, H, W) -> float32 `(x - mean) / std` per channel.

    Inputs that are not uint8 (waveforms) pass through unchanged.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.shape != std.shape or (std <= 0).any():
            raise ValueError(f"need positive std of mean's shape, got {mean} and {std}")
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.register_buffer("scale", (1.0 / std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            return x
        if self.scale.device != x.device:
            self.to(x.device)
        if x.device.type == "cpu":
            # numpy runs this single-threaded: torch's intra-op threads gain nothing on a
            # half-megabyte batch and stall badly when the cores are shared (measured 10x).
            a = x.numpy().astype(np.float32)
            a *= self.scale.numpy()
            a += self.shift.numpy()
            return torch.from_numpy(a)
        return x.float().mul_(self.scale).add_(self.shift)


def channel_stats(images: np.ndarray, pick: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float64, (C,)) of `images[pick]` (uint8 (N, C, H, W)).

    Exact, from byte histograms read 4096 records at a time; a constant channel gets std 1 so
    it is centred, not blown up.
    """
    c = images.shape[1]
    hist = np.zeros((c, 256), dtype=np.int64)
    for start in range(0, len(pick), 4096):
        chunk = images[pick[start : start + 4096]]
        for ch in range(c):
            hist[ch] += np.bincount(chunk[:, ch].reshape(-1), minlength=256)
    levels = np.arange(256, dtype=np.float64)
    count = hist.sum(axis=1)
    mean = hist @ levels / count
    var = (hist * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / count
    std = np.sqrt(var)
    std[std < 1e-6] = 1.0
    return mean, std


def check_augment(augment: Mapping | None) -> dict | None:
    """Validate `{"freq_mask": F, "time_mask": T, "n_masks": k}`; None when it masks nothing."""
    if augment is None:
        return None
    augment = dict(augment)
    unknown = set(augment) - set(AUGMENT_KEYS)
    if unknown:
        raise ValueError(f"augment: unknown keys {sorted(unknown)}; expected {AUGMENT_KEYS}")
    out = {
        "freq_mask": int(augment.get("freq_mask", 0) or 0),
        "time_mask": int(augment.get("time_mask", 0) or 0),
        "n_masks": int(augment.get("n_masks", 1) or 0),
    }
    if min(out.values()) < 0:
        raise ValueError(f"augment values must be >= 0, got {out}")
    if out["n_masks"] == 0 or out["freq_mask"] + out["time_mask"] == 0:
        return None
    return out


def spec_augment(augment: Mapping) -> torchaudio.transforms.SpecAugment:
    """torchaudio's SpecAugment for a checked `augment` mapping: `n_masks` frequency masks of
    up to `freq_mask` rows and as many time masks of up to `time_mask` columns, drawn
    independently per example and channel, masked pixels set to 0 (the normalised mean)."""
    n = augment["n_masks"]
    return torchaudio.transforms.SpecAugment(
        n_time_masks=n if augment["time_mask"] else 0,
        time_mask_param=augment["time_mask"],
        n_freq_masks=n if augment["freq_mask"] else 0,
        freq_mask_param=augment["freq_mask"],
        iid_masks=True,
        zero_masking=True,
    )
