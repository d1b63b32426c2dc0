"""Per-record predictions of a tested model: a CSV in natural units (and class names, for the
nominal heads of recordings), a confusion matrix and a true-vs-predicted scatter per head (what
`src/eval.py` writes with `callbacks=eval`)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning_utilities.core.rank_zero import rank_zero_only
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
)

from src.data.vimh.classes import is_nominal
from src.data.vimh.format import ParamSpec
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

KINDS = ("true", "pred", "true_class", "pred_class")


class PredictionReport(L.Callback):
    """While testing, keep every record's true and predicted values and classes (the module's
    `predict_step` on each test batch); at the end write the reports to the run folder.

    With several processes each rank sees its own shard of the test split (contiguous blocks
    in rank order, see `EpochBatches`); rank 0 gathers them in that order and writes the reports
    for every record.
    """

    def __init__(self, dirname: str | None = None) -> None:
        self.dirname = dirname
        self.table: dict[str, list[torch.Tensor]] = {}
        self.gathered: dict[str, np.ndarray] = {}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.table = {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        with torch.no_grad():
            out = pl_module.predict_step(batch, batch_idx)
        for kind in KINDS:
            for name, t in out[kind].items():
                self.table.setdefault(f"{name}_{kind}", []).append(t.detach().cpu())

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        table = {k: torch.cat(v).numpy() for k, v in self.table.items()}
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            shards = [None] * dist.get_world_size()
            dist.all_gather_object(shards, table)  # every rank takes part, rank 0 keeps them
            shards = [s for s in shards if s]
            table = {k: np.concatenate([s[k] for s in shards]) for k in (shards or [{}])[0]}
        self.gathered = table

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        table = self.gathered
        if not table:
            return
        out = Path(trainer.default_root_dir)
        if self.dirname:
            out = out / self.dirname
        names = getattr(trainer.datamodule, "class_names", None) if trainer.datamodule else None
        files = write_prediction_reports(table, pl_module.specs, out, names)
        log.info("Wrote " + ", ".join(f.name for f in files))


def write_prediction_reports(
    table: dict[str, np.ndarray],
    specs: Sequence[ParamSpec],
    out_dir: Path,
    class_names: Mapping[str, Sequence[str]] | None = None,
) -> list[Path]:
    """predictions.csv, confusion_<head>.png and scatter_<head>.png in `out_dir`; heads with
    `class_names` get `<head>_true_name`, `<head>_pred_name` columns and named axes, and
    nominal heads no scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    n = len(next(iter(table.values())))
    names = {k: list(v) for k, v in (class_names or {}).items()}
    cols = [f"{s.name}_{k}" for s in specs for k in KINDS]
    named = [(s.name, k) for s in specs if s.name in names for k in ("true", "pred")]
    path = out_dir / "predictions.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *cols, *(f"{h}_{k}_name" for h, k in named)])
        data = np.stack([table[c].astype(np.float64) for c in cols], axis=1)
        labels = [np.asarray(names[h])[table[f"{h}_{k}_class"].astype(int)] for h, k in named]
        for i in range(n):
            w.writerow([i, *(f"{v:.6g}" for v in data[i]), *(x[i] for x in labels)])
    written.append(path)

    for s in specs:
        true_c = torch.as_tensor(table[f"{s.name}_true_class"]).long()
        pred_c = torch.as_tensor(table[f"{s.name}_pred_class"]).long()
        cm = multiclass_confusion_matrix(pred_c, true_c, num_classes=s.num_classes).numpy()
        ticks = names.get(s.name) or [f"{v:g}" for v in s.class_value(np.arange(s.num_classes))]
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
        f1 = multiclass_f1_score(pred_c, true_c, s.num_classes, average="macro")
        ax.set_title(f"{s.name}: accuracy {acc:.3f}, macro-F1 {float(f1):.3f}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"confusion_{s.name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        if is_nominal(s):  # class indices with no order: no scatter to draw
            continue
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
