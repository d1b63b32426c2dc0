"""Faults for the reliability tests: a run that stops itself with SIGTERM at a chosen batch."""

from __future__ import annotations

import os
import signal

import lightning as L


class SigtermAt(L.Callback):
    """Send this process SIGTERM after training batch `batch` (0-based) of epoch `epoch`, as a
    cluster scheduler or `kill` would."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)
