"""How far a trainable front-end moved from its initialisation, and how its parameters split.

`FrontendDrift` keeps the front-end's initial STFT kernels and filterbank (taken when fitting
starts, and kept in the checkpoint so a resumed run measures against the true init). When the
test ends (the tested weights: the best checkpoint) it logs, so they land in `metrics.json`:

- `frontend/params/{frontend,frontend_trainable,backend,heads,trainable}`: parameter counts
  (the back-end includes the input norm; `heads` is everything outside the net).
- `frontend/drift/filterbank`, `frontend/drift/stft`: ||W - W0|| / ||W0|| (Frobenius) of the
  effective filterbank and of the STFT kernels.
- `frontend/drift/band_centre_hz`: mean |shift| of the filterbank's band centroids.
- `frontend/drift/kernel_centre_hz`: mean |shift| of the STFT kernels' response centroids.

and writes `<run>/frontend_filters.pt` (both states, for the study's figures).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning_utilities.core.rank_zero import rank_zero_only
from torch import Tensor

from src.callbacks.filterbank_plot import find_frontend
from src.models.components.frontend import kernel_power

FILTERS_FILE = "frontend_filters.pt"
PREFIX = "frontend"


def _centroids(weights: Tensor, freqs: Tensor) -> Tensor:
    """(n, K) non-negative weights over `freqs` (n,) -> (K,) weighted mean frequency."""
    w = weights.double().clamp_min(0.0)
    return (freqs.double()[:, None] * w).sum(0) / w.sum(0).clamp_min(1e-30)


def kernel_centroids(kernels: Tensor, sample_rate: int) -> Tensor:
    """(F,) Hz: the power-weighted mean frequency of each STFT bin's response."""
    freqs, power = kernel_power(kernels, sample_rate)
    return _centroids(power.T, freqs)


def drift_measures(
    stft0: Tensor, stft: Tensor, fb0: Tensor, fb: Tensor, sample_rate: int
) -> dict[str, float]:
    """The drift measures above, from initial and final kernels (2F, 1, n_fft) and
    filterbanks (F, n_mels)."""

    def rel(a: Tensor, b: Tensor) -> float:
        return float((b.double() - a.double()).norm() / a.double().norm().clamp_min(1e-30))

    bin_hz = torch.linspace(0.0, sample_rate / 2, fb.shape[0])
    return {
        "drift/filterbank": rel(fb0, fb),
        "drift/stft": rel(stft0, stft),
        "drift/band_centre_hz": float(
            (_centroids(fb, bin_hz) - _centroids(fb0, bin_hz)).abs().mean()
        ),
        "drift/kernel_centre_hz": float(
            (kernel_centroids(stft, sample_rate) - kernel_centroids(stft0, sample_rate))
            .abs()
            .mean()
        ),
    }


def param_counts(pl_module: torch.nn.Module) -> dict[str, int]:
    """Front-end, back-end (with the input norm) and heads (everything else), and trainable."""
    net = pl_module.net
    counts = net.param_counts()
    total = sum(p.numel() for p in pl_module.parameters())
    return {
        "params/frontend": counts["frontend"],
        "params/frontend_trainable": sum(
            p.numel() for p in net.frontend.parameters() if p.requires_grad
        ),
        "params/backend": counts["backend"],
        "params/heads": total - sum(p.numel() for p in net.parameters()),
        "params/trainable": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
    }


class FrontendDrift(L.Callback):
    """Log the front-end's parameter counts and drift from its init at the end of testing."""

    def __init__(self) -> None:
        self.init: dict[str, Tensor] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frontend = find_frontend(pl_module)
        if frontend is not None and self.init is None:  # a resumed run keeps the first init
            self.init = {
                "stft": frontend.stft.detach().cpu().clone(),
                "filterbank": frontend.filterbank.detach().cpu().clone(),
            }

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frontend = find_frontend(pl_module)
        if frontend is None or not hasattr(pl_module.net, "param_counts"):
            return
        stft = frontend.stft.detach().cpu().clone()
        fb = frontend.filterbank.detach().cpu().clone()
        init = self.init or {"stft": stft, "filterbank": fb}  # test only: no fit, no drift
        values = {**param_counts(pl_module)}
        values.update(
            drift_measures(init["stft"], stft, init["filterbank"], fb, frontend.sample_rate)
        )
        for name, value in values.items():
            pl_module.log(f"{PREFIX}/{name}", float(value), sync_dist=False)
        self._save(trainer, frontend, init, stft, fb)

    @rank_zero_only
    def _save(self, trainer, frontend, init: dict, stft: Tensor, fb: Tensor) -> None:
        path = Path(trainer.default_root_dir) / FILTERS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(
            {
                "stft_init": init["stft"],
                "stft": stft,
                "filterbank_init": init["filterbank"],
                "filterbank": fb,
                "sample_rate": int(frontend.sample_rate),
                "maskout": frontend.maskout,
            },
            tmp,
        )
        tmp.replace(path)

    def state_dict(self) -> dict:
        return {"init": self.init}

    def load_state_dict(self, state_dict: dict) -> None:
        self.init = state_dict.get("init")
