"""Files of an audio evaluation: per-record CSV, summary JSON/CSV, WAVs and figures.

Everything goes into one folder of the run (`paths.output_dir`); each file is written whole
(CSV/JSON through a temporary name, WAVs by `write_wav`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from src.audio.io import write_wav
from src.evaluation.resynthesis import Resynthesis, error_key
from src.imaging import SpectrogramImager
from src.metrics.audio import HIGHER_IS_BETTER, METRICS, UNITS


def write_text(path: Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def csv_text(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for row in rows:
        w.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in row])
    return buf.getvalue()


def _finite(x: float) -> float | None:
    """JSON has no NaN or infinity: such a statistic is written as null."""
    return x if math.isfinite(x) else None


def write_resynthesis_report(
    result: Resynthesis,
    imager: SpectrogramImager,
    out_dir: Path,
    meta: dict | None = None,
) -> list[Path]:
    """resynthesis_records.csv, resynthesis_summary.{json,csv}, resynthesis_metrics.png, and
    record_NNN.png with record_NNN_{target,model}.wav for the notes kept to listen to."""
    out_dir = Path(out_dir)
    heads = [p.name for p in result.params]
    cols = result.columns
    rows = []
    for name, rec in result.records.items():
        for i in range(result.n_records):
            rows.append(
                [
                    name,
                    i,
                    *(float(rec[c][i]) for c in cols),
                    *(float(result.true[h][i]) for h in heads),
                    *(float(result.values[name][h][i]) for h in heads),
                ]
            )
    header = ["predictor", "record", *cols, *(f"true_{h}" for h in heads)]
    header += [f"pred_{h}" for h in heads]
    files = [write_text(out_dir / "resynthesis_records.csv", csv_text(header, rows))]

    summary = result.summary()
    stats = ("n", "mean", "median", "std", "q25", "q75")
    rows = [[name, c, *(summary[name][c][s] for s in stats)] for name in summary for c in cols]
    files.append(
        write_text(
            out_dir / "resynthesis_summary.csv", csv_text(["predictor", "metric", *stats], rows)
        )
    )
    doc = {
        "split": result.split,
        "records": result.n_records,
        "target": result.target_source,
        "sample_rate": result.sample_rate,
        "render_seconds": round(result.render_seconds, 4),
        "units": {**UNITS, **{error_key(p.name): p.unit for p in result.params}},
        "higher_is_better": sorted(HIGHER_IS_BETTER),
        **(meta or {}),
        "summary": {
            name: {c: {s: _finite(v) for s, v in m.items()} for c, m in d.items()}
            for name, d in summary.items()
        },
    }
    files.append(write_text(out_dir / "resynthesis_summary.json", json.dumps(doc, indent=2)))
    files.append(summary_figure(result, out_dir / "resynthesis_metrics.png"))

    listen = result.listen
    for i in range(len(listen.get("target", []))):
        target, pred = listen["target"][i], listen["model"][i]
        files.append(write_wav(out_dir / f"record_{i:03d}_target.wav", target, result.sample_rate))
        files.append(write_wav(out_dir / f"record_{i:03d}_model.wav", pred, result.sample_rate))
        table = [
            [
                h + (f" ({p.unit})" if p.unit else ""),
                f"{result.true[h][i]:.4g}",
                f"{result.values['model'][h][i]:.4g}",
            ]
            for h, p in zip(heads, result.params)
        ]
        scores = ", ".join(
            f"{m} {result.records['model'][m][i]:.3g}{UNITS[m] and ' ' + UNITS[m]}" for m in METRICS
        )
        files.append(
            comparison_figure(
                out_dir / f"record_{i:03d}.png",
                target,
                pred,
                imager,
                title=f"{result.split} record {i}: {scores}",
                table=table,
                col_labels=["parameter", "true", "predicted"],
                labels=(f"target ({result.target_source})", "model's prediction, resynthesized"),
            )
        )
    return files


def summary_figure(result: Resynthesis, path: Path) -> Path:
    """One box plot per metric and per head error: every predictor's distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = result.columns
    names = list(result.records)
    ncols = min(4, len(cols))
    nrows = -(-len(cols) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.9 * nrows), squeeze=False)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.9, bottom=0.1, wspace=0.3, hspace=0.55)
    units = {**UNITS, **{error_key(p.name): p.unit for p in result.params}}
    for ax, c in zip(axes.flat, cols):
        data = [result.records[n][c][np.isfinite(result.records[n][c])] for n in names]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, fontsize=7)
        better = "higher" if c in HIGHER_IS_BETTER else "lower"
        unit = f" ({units[c]})" if units.get(c) else ""
        ax.set_title(f"{c}{unit}, {better} is better", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.flat[len(cols) :]:
        ax.axis("off")
    fig.suptitle(
        f"resynthesis of {result.n_records} {result.split} records (target {result.target_source})",
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def comparison_figure(
    path: Path,
    first: torch.Tensor,
    second: torch.Tensor,
    imager: SpectrogramImager,
    title: str,
    table: list[list[str]],
    col_labels: list[str],
    labels: tuple[str, ...],
    more: tuple[torch.Tensor, ...] = (),
) -> Path:
    """Notes side by side (`first`, `second`, then `more`): waveforms, their images as the
    dataset's imager makes them, and a table of parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = (first, second, *more)
    k = len(notes)
    sr, n = imager.sample_rate, imager.n_samples
    images = imager(torch.stack(notes).float()).numpy()
    freqs = imager.frequencies(0).numpy()
    t = np.arange(n) / sr
    fig = plt.figure(figsize=(5 * k, 5.6))
    grid = fig.add_gridspec(
        2,
        k + 1,
        width_ratios=[1] * k + [0.8],
        left=0.07,
        right=0.99,
        top=0.88,
        bottom=0.09,
        wspace=0.3,
        hspace=0.45,
    )
    peak = float(max(max(float(a.abs().max()) for a in notes), 1e-6))
    for col, (audio, label) in enumerate(zip(notes, labels)):
        ax = fig.add_subplot(grid[0, col])
        ax.plot(t, audio.numpy(), lw=0.4)
        ax.set_ylim(-1.05 * peak, 1.05 * peak)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("time (s)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(
            images[col, 0],
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=0,
            vmax=255,
            extent=(0, n / sr, -0.5, imager.height - 0.5),
        )
        rows = np.linspace(0, imager.height - 1, 5).round().astype(int)
        ax.set_yticks(rows, [f"{freqs[r]:.0f}" for r in rows], fontsize=6)
        ax.set_ylabel(f"Hz ({imager.specs[0].scale} rows)", fontsize=7)
        ax.set_xlabel("time (s)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(f"image [{imager.channel_labels[0]}]", fontsize=8)
    ax = fig.add_subplot(grid[:, k])
    ax.axis("off")
    tab = ax.table(cellText=table, colLabels=col_labels, loc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(8)
    tab.scale(1, 1.4)
    fig.suptitle(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
