"""A per-head table of test metrics, printed with rich and saved as CSV in the run folder."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
from lightning_utilities.core.rank_zero import rank_zero_only
from rich.console import Console
from rich.table import Table

from src.metrics import head_metrics, metric_key


class HeadMetricsTable(L.Callback):
    """After testing, show `test/<head>/<metric>` as one row per head, plus the aggregates."""

    def __init__(self, stage: str = "test", filename: str | None = "test_metrics_per_head.csv"):
        self.stage = stage
        self.filename = filename

    def rows(self, metrics: dict) -> tuple[list[str], dict[str, dict[str, float]]]:
        per_head = head_metrics(metrics, self.stage)
        columns = sorted({m for row in per_head.values() for m in row})
        return columns, per_head

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        columns, per_head = self.rows(trainer.callback_metrics)
        if not per_head:
            return
        table = Table(title=f"{self.stage} metrics per head")
        table.add_column("head")
        for c in columns:
            table.add_column(c, justify="right")
        for head, row in per_head.items():
            table.add_row(head, *(f"{row[c]:.4f}" if c in row else "" for c in columns))
        for key in ("score", "acc_mean", "loss"):
            value = trainer.callback_metrics.get(metric_key(self.stage, key))
            if value is not None:
                table.caption = (table.caption or "") + f"{self.stage}/{key} = {float(value):.4f}  "
        Console().print(table)
        if self.filename:
            path = Path(trainer.default_root_dir) / self.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["head", *columns])
                for head, row in per_head.items():
                    w.writerow([head, *(row.get(c, "") for c in columns)])
