"""Per-sample predictions of a trained model, and the reports eval.py writes from them."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from src.data.vimh.format import ParamSpec


def collect_predictions(
    trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule
) -> dict[str, np.ndarray]:
    """Predict the test split in order; columns `<head>_{true,pred,true_class,pred_class}`."""
    batches = trainer.predict(model=model, datamodule=datamodule)
    table: dict[str, list[torch.Tensor]] = {}
    for out in batches:
        for kind in ("true", "pred", "true_class", "pred_class"):
            for name, t in out[kind].items():
                table.setdefault(f"{name}_{kind}", []).append(t.detach().cpu())
    return {k: torch.cat(v).numpy() for k, v in table.items()}


def write_prediction_reports(
    table: dict[str, np.ndarray], specs: Sequence[ParamSpec], out_dir: Path
) -> list[Path]:
    """predictions.csv, confusion_<head>.png and scatter_<head>.png in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    n = len(next(iter(table.values())))
    cols = [f"{s.name}_{k}" for s in specs for k in ("true", "pred", "true_class", "pred_class")]
    path = out_dir / "predictions.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *cols])
        data = np.stack([table[c].astype(np.float64) for c in cols], axis=1)
        for i in range(n):
            w.writerow([i, *(f"{v:.6g}" for v in data[i])])
    written.append(path)

    for s in specs:
        true_c = torch.as_tensor(table[f"{s.name}_true_class"]).long()
        pred_c = torch.as_tensor(table[f"{s.name}_pred_class"]).long()
        cm = multiclass_confusion_matrix(pred_c, true_c, num_classes=s.num_classes).numpy()
        ticks = [f"{v:g}" for v in s.class_value(np.arange(s.num_classes))]
        fig, ax = plt.subplots(figsize=(1.2 + 0.45 * s.num_classes, 1 + 0.4 * s.num_classes))
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(
                    j,
                    i,
                    str(v),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > cm.max() / 2 else "black",
                )
        ax.set_xticks(range(s.num_classes), ticks, rotation=90, fontsize=7)
        ax.set_yticks(range(s.num_classes), ticks, fontsize=7)
        unit = f" ({s.unit})" if s.unit else ""
        ax.set_xlabel(f"predicted {s.name}{unit}")
        ax.set_ylabel(f"true {s.name}{unit}")
        acc = float(np.trace(cm)) / max(1, cm.sum())
        ax.set_title(f"{s.name}: accuracy {acc:.3f}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"confusion_{s.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        true_v, pred_v = table[f"{s.name}_true"], table[f"{s.name}_pred"]
        fig, ax = plt.subplots(figsize=(4, 4))
        jitter = np.random.default_rng(0).normal(0, s.span * 0.004, len(true_v))
        ax.scatter(true_v + jitter, pred_v, s=4, alpha=0.3)
        ax.plot([s.min, s.max], [s.min, s.max], color="k", lw=0.8)
        mae = float(np.abs(true_v - pred_v).mean())
        ax.set_title(f"{s.name}: MAE {mae:.4g}{unit}", fontsize=9)
        ax.set_xlabel(f"true {s.name}{unit}")
        ax.set_ylabel(f"predicted {s.name}{unit}")
        fig.tight_layout()
        path = out_dir / f"scatter_{s.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
