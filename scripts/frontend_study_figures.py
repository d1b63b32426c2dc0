"""The front-end study's figures (scripts/frontend_study.py writes them into the doc's folder).

Each takes the saved front-end states of runs (`frontend_filters.pt`: the STFT kernels and
filterbank at initialisation and as tested) and draws learned against initial filters with the
project's plotting helpers (src/callbacks/filterbank_plot.py).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from src.callbacks.filterbank_plot import draw_filters, kernel_picks
from src.models.components.frontend import kernel_power

from mdreport import machine_line

MASK_COLOUR = "tab:red"


def save(fig, path: Path) -> None:
    """Write a figure atomically and close it; the machine it was made on in a corner."""
    fig.text(0.995, 0.003, machine_line(), ha="right", va="bottom", fontsize=6, color="0.4")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def weight_change(ax, f: dict) -> None:
    """Total filterbank weight per STFT bin, learned minus initial: where the bank grew."""
    fb, fb0 = f["filterbank"].double(), f["filterbank_init"].double()
    hz = torch.linspace(0, f["sample_rate"] / 2, fb.shape[0]).numpy()
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.plot(hz, (fb.sum(1) - fb0.sum(1)).numpy(), lw=0.9)
    ax.set(xlabel="frequency (Hz)", ylabel="sum over bands, learned - init", title="weight change")


def filters_figure(path: Path, filters: dict[str, dict], title: str, n_kernels: int = 4) -> None:
    """One row per setting: the learned filterbank over its init, the change of its total weight
    per frequency, and a few STFT kernels' responses over their init (dashed grey)."""
    fig, axes = plt.subplots(len(filters), 3, figsize=(15, 3.4 * len(filters)), squeeze=False)
    for row, (setting, f) in zip(axes, filters.items()):
        picks = kernel_picks(f["filterbank"].shape[0], n_kernels)
        init = (f["filterbank_init"], f["stft_init"])
        draw_filters(row[0], row[2], f["filterbank"], f["stft"], f["sample_rate"], picks, init)
        weight_change(row[1], f)
        row[0].set_title(f"{setting}: filterbank ({f['filterbank'].shape[1]} bands)")
        row[2].set_title(f"{setting}: STFT kernels")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def inits_figure(path: Path, filters: dict[str, dict], title: str) -> None:
    """One column per filterbank init: the learned bank over the initial one."""
    fig, axes = plt.subplots(1, len(filters), figsize=(5 * len(filters), 3.6), squeeze=False)
    for ax, (init, f) in zip(axes[0], filters.items()):
        hz = torch.linspace(0, f["sample_rate"] / 2, f["filterbank"].shape[0]).numpy()
        ax.plot(hz, f["filterbank_init"].numpy(), color="0.6", lw=0.6, ls="--")
        ax.plot(hz, f["filterbank"].numpy(), lw=0.8)
        ax.set(xlabel="frequency (Hz)", ylabel="weight", title=f"init {init}")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def gains_figure(path: Path, panels: dict[str, list[tuple[str, str, float, float, float]]]) -> None:
    """Per task: each trainable setting's gain over the fixed front-end (± standard error)
    against the back-end's size; `panels[task]` = [(back-end, setting, total trainable
    parameters with the fixed front-end, gain, se)]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (task, points) in zip(axes[0], panels.items()):
        settings = sorted({p[1] for p in points})
        for i, s in enumerate(settings):
            pts = sorted((p for p in points if p[1] == s), key=lambda p: p[2])
            x = [max(p[2], 1.0) * (1.0 + 0.06 * (i - 1)) for p in pts]  # side by side
            ax.errorbar(x, [p[3] for p in pts], [p[4] for p in pts], fmt="o-", ms=4, label=s)
            for xi, p in zip(x, pts):
                if i == 0:
                    ax.annotate(
                        p[0], (xi, p[3]), fontsize=7, xytext=(3, 6), textcoords="offset points"
                    )
        ax.axhline(0.0, color="0.5", lw=0.7)
        ax.set_xscale("log")
        ax.set(
            xlabel="trainable parameters with the fixed front-end (log)",
            ylabel="test score gain over fixed",
            title=task,
        )
        if points:
            ax.legend(title="trainable", fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def in_band_power(kernels: torch.Tensor, sample_rate: int, mask: tuple[int, int]) -> float:
    """Total power response inside the masked bins' frequencies, of the unmasked kernels."""
    freqs, power = kernel_power(kernels, sample_rate)
    bin_hz = sample_rate / (2 * (power.shape[0] - 1))
    lo, hi = (mask[0] - 0.5) * bin_hz, (mask[1] - 0.5) * bin_hz
    inside = (freqs >= lo) & (freqs < hi)
    keep = torch.ones(power.shape[0], dtype=torch.bool)
    keep[mask[0] : mask[1]] = False
    return float(power[keep][:, inside].double().sum())


def in_band_gain_db(f: dict, mask: tuple[int, int]) -> float:
    """How much more the unmasked kernels respond inside the masked band after training (dB)."""
    before = in_band_power(f["stft_init"], f["sample_rate"], mask)
    return 10.0 * math.log10(in_band_power(f["stft"], f["sample_rate"], mask) / before)


def maskout_figure(path: Path, filters: dict[str, dict], mask: tuple[int, int], title: str) -> None:
    """Per setting: the kernels next to the masked band, learned over init, the band shaded."""
    width = max(5 * len(filters), 9)  # room for the title and the machine line
    fig, axes = plt.subplots(1, len(filters), figsize=(width, 3.8), squeeze=False)
    for ax, (setting, f) in zip(axes[0], filters.items()):
        n_freqs = f["filterbank"].shape[0]
        bin_hz = f["sample_rate"] / (2 * (n_freqs - 1))
        picks = [b for b in (mask[0] - 1, mask[1], mask[1] + 3) if 0 <= b < n_freqs]
        init = (f["filterbank_init"], f["stft_init"])
        draw_filters(None, ax, f["filterbank"], f["stft"], f["sample_rate"], picks, init)
        ax.axvspan(
            (mask[0] - 0.5) * bin_hz, (mask[1] - 0.5) * bin_hz, color=MASK_COLOUR, alpha=0.12, lw=0
        )
        ax.set_xlim(0, min(f["sample_rate"] / 2, (mask[1] + 12) * bin_hz))
        ax.set_title(f"{setting}: kernels beside the masked band")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
