"""A codec's test report: the model and the classic codecs on the same clips, side by side.

`compare_codecs` runs every baseline on the test clips and measures each system per record
(`src/metrics/codec.py`); `write_codec_report` writes into a folder:
- `codec_metrics.csv` / `.json`: one row per system (its bitrate and the mean of each metric
  over the in-distribution records), and the same per source (`codec_metrics_per_source.csv`);
- `rate_distortion.png`: SNR, log-mel distance (and STOI where measured) against kbps,
  baselines as lines by family, the model(s) as points;
- `listen/<n>_<source>/<system>.wav`: the original, the model's and each baseline's rendering
  of a few clips.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from src.audio.io import write_wav
from src.evaluation.codec_baselines import Baseline
from src.metrics.codec import HIGHER_IS_BETTER, waveform_metrics

BATCH = 64  # records measured at once (the STFT distances hold a few spectrograms each)


@dataclass
class System:
    """One codec's results: bitrate (`kbps`; for a model, `coded_kbps` too: entropy-coded
    with tables fitted on the training codes) and per-record metric values."""

    name: str
    family: str
    kbps: float
    values: dict[str, Tensor]
    coded_kbps: float | None = None
    extra: dict = field(default_factory=dict)

    def means(self, mask: Tensor | None = None) -> dict[str, float]:
        out = {}
        for k, v in self.values.items():
            v = v if mask is None else v[mask]
            v = v[torch.isfinite(v)]
            out[k] = float(v.mean()) if v.numel() else math.nan
        return out


def measure(pred: Tensor, target: Tensor, sample_rate: int, stoi: bool) -> dict[str, Tensor]:
    """Per-record metrics of (N, T) reconstructions, a batch at a time."""
    parts = [
        waveform_metrics(pred[i : i + BATCH], target[i : i + BATCH], sample_rate, stoi)
        for i in range(0, len(target), BATCH)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def compare_codecs(
    original: Tensor,
    decoded: Tensor,
    sample_rate: int,
    model: dict,
    baselines: Sequence[Baseline],
    stoi: bool = False,
) -> tuple[list[System], dict[str, Tensor]]:
    """The model's (N, T) reconstructions and every baseline's, measured against `original`.
    `model`: {"name", "kbps", "coded_kbps"}. Returns the systems and the renderings."""
    original, decoded = original.float().cpu(), decoded.float().cpu()
    systems = [
        System(
            model["name"],
            "model",
            float(model["kbps"]),
            measure(decoded, original, sample_rate, stoi),
            coded_kbps=model.get("coded_kbps"),
        )
    ]
    renders = {"original": original, model["name"]: decoded}
    for b in baselines:
        y = b(original, sample_rate)
        systems.append(System(b.name, b.family, b.kbps, measure(y, original, sample_rate, stoi)))
        renders[b.name] = y
    return systems, renders


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _csv_text(header: list[str], rows: list[list]) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])
    return buf.getvalue()


def write_codec_report(
    systems: list[System],
    renders: dict[str, Tensor],
    sources: Tensor,
    source_names: Sequence[str],
    heldout: Sequence[str],
    sample_rate: int,
    out_dir: Path,
    n_listen: int = 1,
    meta: dict | None = None,
) -> list[Path]:
    """The CSVs, JSON, figure and WAVs (see the module docstring); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    held = torch.tensor([source_names[int(s)] in heldout for s in sources], dtype=torch.bool)
    metrics = list(systems[0].values)
    written = []
    header = ["system", "family", "kbps", "coded_kbps", *metrics]
    rows = [
        [
            s.name,
            s.family,
            s.kbps,
            s.coded_kbps if s.coded_kbps is not None else "",
            *s.means(~held).values(),
        ]
        for s in systems
    ]
    written.append(out_dir / "codec_metrics.csv")
    _write_atomic(written[-1], _csv_text(header, rows))
    per_source = []
    for g, name in enumerate(source_names):
        mask = sources == g
        if mask.any():
            per_source += [
                [s.name, name, name in heldout, *s.means(mask).values()] for s in systems
            ]
    written.append(out_dir / "codec_metrics_per_source.csv")
    _write_atomic(written[-1], _csv_text(["system", "source", "heldout", *metrics], per_source))
    record = {
        **(meta or {}),
        "sample_rate": sample_rate,
        "records": int((~held).sum()),
        "heldout_records": int(held.sum()),
        "systems": [
            {
                "name": s.name,
                "family": s.family,
                "kbps": s.kbps,
                "coded_kbps": s.coded_kbps,
                "metrics": s.means(~held),
                "per_source": {
                    n: s.means(sources == g)
                    for g, n in enumerate(source_names)
                    if bool((sources == g).any())
                },
            }
            for s in systems
        ],
    }
    written.append(out_dir / "codec_metrics.json")
    _write_atomic(written[-1], json.dumps(record, indent=2, allow_nan=True))
    written.append(rate_distortion_figure(record["systems"], out_dir / "rate_distortion.png"))
    for g, name in enumerate(source_names):
        for i in torch.nonzero(sources == g).flatten()[:n_listen].tolist():
            folder = out_dir / "listen" / f"{i:04d}_{name}"
            for system, audio in renders.items():
                written.append(write_wav(folder / f"{system}.wav", audio[i], sample_rate))
    return written


def rate_distortion_figure(
    systems: list[dict], path: Path, title: str | None = None, spread: dict | None = None
) -> Path:
    """SNR, log-mel distance (and STOI, when measured) against kbps: one line per baseline
    family, one point per model (`spread`: {model name: {metric: std}} draws error bars). Log
    kbps axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("snr_db", "logmel_db", "stoi")
    panels = [m for m in metrics if any(m in s["metrics"] for s in systems)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for s in systems:  # a 0 kbps system (silence) has no place on a log axis: a level line
        if s["kbps"] <= 0:
            for ax, metric in zip(axes[0], panels):
                value = s["metrics"].get(metric, math.nan)
                ax.axhline(value, color="grey", ls=":", lw=1, label=f"{s['name']} (0 kbps)")
    systems = [s for s in systems if s["kbps"] > 0]
    families = list(dict.fromkeys(s["family"] for s in systems if s["family"] != "model"))
    markers = dict(zip(families, itertools.cycle("osd^v<>ph")))
    for ax, metric in zip(axes[0], panels):
        for fam in families:
            pts = sorted(
                (s["kbps"], s["metrics"].get(metric, math.nan))
                for s in systems
                if s["family"] == fam
            )
            ax.plot(*zip(*pts), marker=markers[fam], lw=1, ms=4, label=fam)
        models = [s for s in systems if s["family"] == "model"]
        for s in models:
            err = (spread or {}).get(s["name"], {}).get(metric)
            ax.errorbar(
                s["kbps"],
                s["metrics"].get(metric, math.nan),
                yerr=err,
                fmt="*",
                ms=11,
                capsize=3,
                label=s["name"],
            )
        ax.set_xscale("log")
        ax.set_xlabel("bitrate (kbit/s)")
        label = {"snr_db": "SNR (dB)", "logmel_db": "log-mel distance (dB)", "stoi": "STOI"}[metric]
        ax.set_ylabel(label + (" ↑" if metric in HIGHER_IS_BETTER else " ↓"))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
