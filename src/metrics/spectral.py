"""Spectral metrics of predicted frames against target frames, on linear-scale mel power.

Frames reach the sequence task as unit log-mel: a power channel's pixels / 255, i.e. dB
mapped from [db_min, db_max] to [0, 1]. `to_power` undoes that (values clamped to the range a
pixel can hold), giving power re a full-scale sine, as the imager calibrates it. Per frame
(bins last, any leading dimensions, no Python loop over frames), with p the bin powers and f
the bins' centre frequencies:

- centroid = Σ p f / Σ p (Hz); bandwidth = sqrt(Σ p (f - centroid)² / Σ p) (Hz);
- flatness = exp(mean log p) / mean p (1 for a flat frame, near 0 for one peak);
- entropy = -Σ q log q / log K with q = p / Σ p over the K bins (0 for a single active bin,
  1 for a flat frame).

The errors a predictor is judged by, each the mean over frames: `mse` (mean over bins of the
squared power difference), `mse_db` (the same on dB), and the absolute difference of each
feature (`centroid_err`, `bandwidth_err` in Hz, `flatness_err`, `entropy_err`). Each is a
torchmetrics `Metric` that sums per position of a window (so rollouts give curves over the
horizon) and syncs under DDP by summing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric

LN10_OVER_10 = math.log(10.0) / 10.0


def to_power(unit: Tensor, db_min: float, db_max: float) -> Tensor:
    """Unit log-mel (0 = db_min, 1 = db_max) -> linear power, 10 ** (dB / 10)."""
    db = db_min + unit.clamp(0.0, 1.0) * (db_max - db_min)
    return torch.exp(db * LN10_OVER_10)


def to_unit(power: Tensor, db_min: float, db_max: float) -> Tensor:
    """Linear power -> unit log-mel, the inverse of `to_power` (clamped to [0, 1])."""
    db = 10.0 * torch.log10(power.clamp_min(1e-30))
    return ((db - db_min) / (db_max - db_min)).clamp(0.0, 1.0)


def _weights(power: Tensor) -> Tensor:
    return power / power.sum(dim=-1, keepdim=True).clamp_min(1e-30)


def spectral_centroid(power: Tensor, freqs: Tensor) -> Tensor:
    """Power-weighted mean frequency of each frame (Hz)."""
    return (_weights(power) * freqs).sum(dim=-1)


def spectral_bandwidth(power: Tensor, freqs: Tensor) -> Tensor:
    """Power-weighted standard deviation of frequency about the centroid (Hz)."""
    w = _weights(power)
    centroid = (w * freqs).sum(dim=-1, keepdim=True)
    return (w * (freqs - centroid).square()).sum(dim=-1).clamp_min(0.0).sqrt()


def spectral_flatness(power: Tensor) -> Tensor:
    """Geometric over arithmetic mean of the bin powers (in (0, 1])."""
    p = power.clamp_min(1e-30)
    return torch.exp(p.log().mean(dim=-1)) / p.mean(dim=-1)


def spectral_entropy(power: Tensor) -> Tensor:
    """Shannon entropy of the normalised bin powers over log(bins) (in [0, 1])."""
    q = _weights(power)
    h = -(q * q.clamp_min(1e-30).log()).sum(dim=-1)
    return h / math.log(power.shape[-1]) if power.shape[-1] > 1 else h * 0.0


def frame_errors(pred: Tensor, target: Tensor, freqs: Tensor) -> dict[str, Tensor]:
    """Every error of `ERRORS`, per frame: (..., K) linear powers -> {name: (...)}."""
    return {name: fn(pred, target, freqs) for name, fn in ERROR_FUNCTIONS.items()}


ERROR_FUNCTIONS = {
    "mse": lambda p, t, f: (p - t).square().mean(dim=-1),
    "mse_db": lambda p, t, f: (
        ((p.clamp_min(1e-30).log() - t.clamp_min(1e-30).log()) / LN10_OVER_10).square().mean(dim=-1)
    ),
    "centroid_err": lambda p, t, f: (spectral_centroid(p, f) - spectral_centroid(t, f)).abs(),
    "bandwidth_err": lambda p, t, f: (spectral_bandwidth(p, f) - spectral_bandwidth(t, f)).abs(),
    "flatness_err": lambda p, t, f: (spectral_flatness(p) - spectral_flatness(t)).abs(),
    "entropy_err": lambda p, t, f: (spectral_entropy(p) - spectral_entropy(t)).abs(),
}
ERRORS = tuple(ERROR_FUNCTIONS)
UNITS = {"mse": "", "mse_db": "dB²", "centroid_err": "Hz", "bandwidth_err": "Hz"}


class FrameError(Metric):
    """The mean of one per-frame error over every frame seen, kept per window position.

    `update(pred, target)` takes linear powers (B, T, K) (or (B, K) for one position) with
    T = `positions`; `compute()` is the mean over all frames, `curve()` the mean at each
    position (e.g. each step of a rollout's horizon).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False
    error_name: str = ""

    def __init__(self, freqs: Sequence[float] | Tensor, positions: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        if positions < 1:
            raise ValueError(f"positions must be >= 1, got {positions}")
        self.positions = int(positions)
        self.register_buffer(
            "freqs", torch.as_tensor(freqs, dtype=torch.float32).flatten(), persistent=False
        )
        self.add_state("total", default=torch.zeros(self.positions), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(self.positions), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        if pred.shape[-1] != self.freqs.numel():
            raise ValueError(f"frames have {pred.shape[-1]} bins, expected {self.freqs.numel()}")
        err = ERROR_FUNCTIONS[self.error_name](pred.float(), target.float(), self.freqs)
        if err.dim() == 1:
            err = err[:, None]
        if err.shape[-1] != self.positions:
            raise ValueError(f"{err.shape[-1]} positions per window, expected {self.positions}")
        err = err.reshape(-1, self.positions)
        self.total += err.sum(dim=0)
        self.count += err.shape[0]

    def compute(self) -> Tensor:
        return self.total.sum() / self.count.sum().clamp_min(1)

    def curve(self) -> Tensor:
        """(positions,) means, synced across processes like `compute`."""
        with self.sync_context():
            return self.total / self.count.clamp_min(1)


class SpectralMSE(FrameError):
    """Mean squared error of the linear bin powers."""

    error_name = "mse"


class SpectralMSEdB(FrameError):
    """Mean squared error of the bin powers in dB."""

    error_name = "mse_db"


class CentroidError(FrameError):
    """Mean absolute spectral-centroid error (Hz)."""

    error_name = "centroid_err"


class BandwidthError(FrameError):
    """Mean absolute spectral-bandwidth error (Hz)."""

    error_name = "bandwidth_err"


class FlatnessError(FrameError):
    """Mean absolute spectral-flatness error."""

    error_name = "flatness_err"


class EntropyError(FrameError):
    """Mean absolute normalised spectral-entropy error."""

    error_name = "entropy_err"


METRICS: dict[str, type[FrameError]] = {
    m.error_name: m
    for m in (
        SpectralMSE,
        SpectralMSEdB,
        CentroidError,
        BandwidthError,
        FlatnessError,
        EntropyError,
    )
}


class SpectralErrors(nn.Module):
    """Every error of one predictor: `update(pred, target)` on linear powers, `compute()` ->
    {name: mean}, `curves()` -> {name: per-position means}."""

    def __init__(self, freqs: Sequence[float] | Tensor, positions: int = 1) -> None:
        super().__init__()
        self.metrics = nn.ModuleDict({n: cls(freqs, positions) for n, cls in METRICS.items()})

    def update(self, pred: Tensor, target: Tensor) -> None:
        for m in self.metrics.values():
            m.update(pred, target)

    @property
    def updated(self) -> bool:
        return bool(self.metrics["mse"].count.sum() > 0)

    def compute(self) -> dict[str, Tensor]:
        return {n: m.compute() for n, m in self.metrics.items()}

    def curves(self) -> dict[str, Tensor]:
        return {n: m.curve() for n, m in self.metrics.items()}

    def reset(self) -> None:
        for m in self.metrics.values():
            m.reset()
