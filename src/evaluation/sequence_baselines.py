"""The sequence task's baselines, fitted where needed and scored exactly as the models are.

- `repeat_last`: the previous true frame (rollout: the last context frame, held);
- `mean_frame`: the training frames' mean linear power per bin (`FrameWindows.frame_mean`);
- `linear_ar`: a linear autoregressive predictor of the next frame from the `context` frames
  before it (every bin of every one, and a constant): ridge-regularised least squares in
  closed form over every frame position of the training records (one pass accumulates the
  Gram matrix, chunk by chunk; no sample loop). Its domain (linear power, where it is scored,
  or unit log-mel, what the networks read) and ridge strength are chosen on the validation
  windows' one-step MSE, never on test. Rollouts feed back its own predictions, clamped to
  what a pixel can hold, as the models' are.

Scoring follows `src/models/sequence_module.py`: the horizon frames of every test window, one
step (each from the true frames before it) and rollout (primed with the context), with the same
`SpectralErrors` on linear power, so the keys and numbers sit beside the models' (the module
logs `repeat_last` and `mean_frame` itself; a test checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from src.data.frames import FrameWindows, frame_frequencies
from src.metrics import metric_key
from src.metrics.spectral import SpectralErrors, to_power

PREDICTORS = ("repeat_last", "mean_frame", "linear_ar")
DOMAINS = ("power", "log_mel")
# Ridge strengths, times the mean diagonal of the standardised Gram matrix.
RIDGE_GRID = (1e-6, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0)
FIT_CHUNK = 64  # training records per pass of the Gram accumulation


@dataclass
class LinearAR:
    """y = x @ weight + bias in `domain`, x the `context` frames before y, flattened."""

    weight: Tensor  # (context * H, H) float64
    bias: Tensor  # (H,)
    domain: str
    ridge: float
    db: tuple[float, float]

    def to_domain(self, unit: Tensor) -> Tensor:
        return to_power(unit.double(), *self.db) if self.domain == "power" else unit.double()

    def to_unit(self, y: Tensor) -> Tensor:
        """Predictions -> unit log-mel, clamped to what a pixel can hold."""
        if self.domain == "log_mel":
            return y.clamp(0.0, 1.0)
        lo, hi = self.db
        db = 10.0 * torch.log10(y.clamp_min(10.0 ** (lo / 10.0)))
        return ((db - lo) / (hi - lo)).clamp(0.0, 1.0)

    def predict(self, context: Tensor) -> Tensor:
        """(..., context, H) unit frames -> (..., H) unit prediction of the next frame."""
        x = self.to_domain(context).flatten(-2)
        return self.to_unit(x @ self.weight + self.bias).float()


def gram(dm: FrameWindows, context: int, domain: str, db: tuple[float, float]) -> dict:
    """Sums over every training position t >= context of x = frames t-context..t-1 (flat),
    y = frame t, in `domain`: n, Σx, Σy, XᵀX, Xᵀy (float64)."""
    h = dm.frames["height"]
    d = context * h
    acc = {
        "n": 0,
        "sx": torch.zeros(d, dtype=torch.float64),
        "sy": torch.zeros(h, dtype=torch.float64),
        "xx": torch.zeros(d, d, dtype=torch.float64),
        "xy": torch.zeros(d, h, dtype=torch.float64),
    }
    n = dm.splits["train"].n_records
    for start in range(0, n, FIT_CHUNK):
        unit = dm.records("train", np.arange(start, min(start + FIT_CHUNK, n))).double() / 255
        f = to_power(unit, *db) if domain == "power" else unit
        win = f.unfold(1, context + 1, 1).transpose(-1, -2)  # (n, W - c, c + 1, H)
        x, y = win[..., :context, :].reshape(-1, d), win[..., context, :].reshape(-1, h)
        acc["n"] += len(x)
        acc["sx"] += x.sum(0)
        acc["sy"] += y.sum(0)
        acc["xx"] += x.T @ x
        acc["xy"] += x.T @ y
    return acc


def solve(acc: dict, ridge: float, domain: str, db: tuple[float, float]) -> LinearAR:
    """Ridge least squares on standardised inputs (the constant left unpenalised)."""
    n = acc["n"]
    mx, my = acc["sx"] / n, acc["sy"] / n
    xx = acc["xx"] - n * torch.outer(mx, mx)
    xy = acc["xy"] - n * torch.outer(mx, my)
    std = (xx.diagonal() / n).clamp_min(0).sqrt().clamp_min(1e-12)
    xx_s = xx / torch.outer(std, std)
    eye = torch.eye(len(xx_s), dtype=xx_s.dtype)
    w = torch.linalg.solve(xx_s + ridge * xx_s.diagonal().mean() * eye, xy / std[:, None])
    w = w / std[:, None]
    return LinearAR(w, my - mx @ w, domain, ridge, db)


def windows(dm: FrameWindows, split: str) -> list[Tensor]:
    """The split's evaluation windows as unit frames, (B, L, H) float32 batches."""
    loader = dm.loader(split, shuffle=False, batch_size=dm.eval_batch_size, rank=0, world_size=1)
    return [x.float() / 255.0 for x, _ in loader]


def one_step_contexts(w: Tensor, context: int, horizon: int) -> Tensor:
    """(B, L, H) -> (B, horizon, context, H): the true frames before each horizon frame."""
    return w.unfold(1, context, 1)[:, :horizon].transpose(-1, -2)


def fit_linear_ar(dm: FrameWindows, context: int, horizon: int) -> tuple[LinearAR, dict]:
    """The validation-chosen linear AR and every candidate's validation one-step MSE."""
    db = (float(dm.frames["db_min"]), float(dm.frames["db_max"]))
    val = windows(dm, "val")
    scores, best = {}, None
    for domain in DOMAINS:
        acc = gram(dm, context, domain, db)
        for ridge in RIDGE_GRID:
            ar = solve(acc, ridge, domain, db)
            err = [
                (
                    to_power(ar.predict(one_step_contexts(w, context, horizon)), *db)
                    - to_power(w[:, context:], *db)
                )
                .square()
                .mean()
                .item()
                * w.shape[0]
                for w in val
            ]
            scores[f"{domain}, ridge {ridge:g}"] = sum(err) / sum(w.shape[0] for w in val)
            if best is None or scores[f"{domain}, ridge {ridge:g}"] < best[0]:
                best = (scores[f"{domain}, ridge {ridge:g}"], ar)
    return best[1], scores


def rollout(ar: LinearAR, primer: Tensor, steps: int) -> Tensor:
    """(B, context, H) true frames -> (B, steps, H), each step fed the ones before it."""
    frames, out = primer, []
    for _ in range(steps):  # sequential by nature; each step is one batched product
        nxt = ar.predict(frames)
        out.append(nxt)
        frames = torch.cat([frames[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(out, dim=1)


@torch.inference_mode()  # as a test: a datamodule's cached loaders may hold inference tensors
def sequence_baselines(dm: FrameWindows, stage: str = "test") -> dict:
    """{"metrics": {metric key: value}, "curves": {predictor: {metric: per-step list}},
    "linear_ar": {"domain", "ridge", "validation_mse"}} on the `stage` split's windows."""
    dm.setup()
    context, horizon = dm.context, dm.horizon
    db = (float(dm.frames["db_min"]), float(dm.frames["db_max"]))
    ar, val_scores = fit_linear_ar(dm, context, horizon)
    mean = torch.tensor(dm.frame_mean(), dtype=torch.float32)
    freqs = frame_frequencies(dm.frames)
    modes = ("step", "rollout")
    errors = {(mode, p): SpectralErrors(freqs, horizon) for mode in modes for p in PREDICTORS}
    for w in windows(dm, stage):
        target = to_power(w[:, context:], *db)
        last = w[:, context - 1 : context].expand(-1, horizon, -1)
        guesses = {
            ("step", "repeat_last"): w[:, context - 1 : -1],
            ("rollout", "repeat_last"): last,
            ("step", "mean_frame"): mean.expand_as(target),
            ("rollout", "mean_frame"): mean.expand_as(target),
            ("step", "linear_ar"): ar.predict(one_step_contexts(w, context, horizon)),
            ("rollout", "linear_ar"): rollout(ar, w[:, :context], horizon),
        }
        for key, guess in guesses.items():
            errors[key].update(to_power(guess, *db), target)
    prefix = {"step": "", "rollout": "rollout_"}
    metrics, curves = {}, {}
    for (mode, p), m in errors.items():
        for name, v in m.compute().items():
            metrics[metric_key(stage, prefix[mode] + name, p)] = float(v)
        if mode == "rollout":
            curves[p] = {k: v.tolist() for k, v in m.curves().items()}
    return {
        "metrics": metrics,
        "curves": curves,
        "linear_ar": {"domain": ar.domain, "ridge": ar.ridge, "validation_mse": val_scores},
    }
