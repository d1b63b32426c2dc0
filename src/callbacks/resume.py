"""What an exact resume needs beyond Lightning's own checkpoint state, and a checkpoint when a
run is stopped with SIGTERM.

Lightning saves the weights, optimizer, schedulers, loop counters, the callbacks' state (the
best score of ModelCheckpoint, EarlyStopping's patience) and, since `VIMHLoader` is resumable,
the position in the epoch. It does not save the random number generators: this callback adds
them, so dropout and masking continue as they would have. It also hands the saved loader
position back to the train loader when Lightning did not: Lightning restores loader states
only if it asks for the train loader after reading the checkpoint, and a scheduler sized by
`trainer.estimated_stepping_batches` makes it ask before.

On SIGTERM (a scheduler's preemption, `kill`), Lightning stops after the current training
batch; this callback then writes `last.ckpt` with the exact mid-epoch state, so `ckpt_path=last`
continues where the run stopped. At an epoch's end ModelCheckpoint's `last.ckpt` of that epoch
is already the state to resume from; a SIGTERM during validation writes nothing, since a
half-run validation cannot be resumed exactly: `last.ckpt` of the previous epoch stays the
resume point.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.types import _Stateful
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.exceptions import SIGTERMException

from src.utils.pylogger import RankedLogger
from src.utils.runs import LAST

log = RankedLogger(__name__)


def rng_states() -> dict:
    """torch (CPU, CUDA), numpy and Python generator states as tensors and plain values, so
    checkpoints still load with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeState(L.Callback):
    """Saves the random generators in every checkpoint and `dirpath/last.ckpt` on SIGTERM."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self._loader_states: list | None = None

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    def state_dict(self) -> dict:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "rng" in state_dict:
            set_rng_states(state_dict["rng"])

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        self._loader_states = fit_loop.get("state_dict", {}).get("combined_loader")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Before the first batch is drawn (loaders draw lazily); loading twice is harmless,
        # so this does not need to know whether Lightning loaded them too.
        states, self._loader_states = self._loader_states, None
        loader = trainer.train_dataloader
        if states and len(states) == 1 and isinstance(loader, _Stateful):
            loader.load_state_dict(states[0])

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        total = trainer.num_training_batches
        if trainer.state.stage != RunningStage.TRAINING or not 0 < done < total:
            log.warning(
                f"SIGTERM at the end of an epoch or during {trainer.state.stage}: no new "
                f"checkpoint; {self.last_path} (from the last finished epoch, if any) is the "
                f"resume point"
            )
            return
        trainer.save_checkpoint(self.last_path)
        log.warning(
            f"SIGTERM: saved {self.last_path} at epoch {trainer.current_epoch}, after batch "
            f"{done} of {total}; resume with ckpt_path=last"
        )
