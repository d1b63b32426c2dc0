"""Training speed: records/s per epoch and the wall-clock time of the first training step."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch
from lightning_utilities.core.rank_zero import rank_zero_only

from src.utils.machine import machine_line


class TrainingSpeed(L.Callback):
    """Time every training epoch (records/s, from its first batch to its end) and note when
    the very first training step started, as Unix time, in `<output_dir>/speed.json`, with the
    machine that ran it.

    Timing starts at the first batch of each epoch, so the per-epoch figure is the steady
    training rate (loading included), not the set-up before it; `skip_batches` more are left
    out to pass any warm-up.
    """

    def __init__(self, filename: str = "speed.json", skip_batches: int = 2) -> None:
        self.filename = filename
        self.skip_batches = skip_batches
        self.first_step_time: float | None = None
        self.epochs: list[dict] = []
        self._t0: float | None = None
        self._t_last = 0.0
        self._records = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_step_time is None:
            self.first_step_time = time.time()
        if batch_idx == self.skip_batches:
            self._t0 = time.perf_counter()
            self._records = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._t0 is not None and batch_idx >= self.skip_batches:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            self._records += int(x.shape[0]) if isinstance(x, torch.Tensor) else 0
            # Validation runs before on_train_epoch_end: stop the clock at the last batch.
            self._t_last = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._t0 is None:
            return
        elapsed = self._t_last - self._t0
        rate = self._records / elapsed if elapsed > 0 else 0.0
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "records": self._records,
                "seconds": elapsed,
                "records_per_s": rate,
            }
        )
        self._t0 = None
        self._write(trainer)

    @rank_zero_only
    def _write(self, trainer: L.Trainer) -> None:
        path = Path(trainer.default_root_dir) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": machine_line(),
            "first_step_time": self.first_step_time,
            "epochs": self.epochs,
        }
        path.write_text(json.dumps(record, indent=2))
