"""The training budget: how many optimizer steps a run gets, sized from its data, stated up front.

A fixed epoch count means very different amounts of training on different datasets: 20 epochs
of the default 13,108 records in batches of 128 are 2,060 optimizer steps, 20 epochs of 700
records are 120, far too few for a network to learn what a nearest-neighbour lookup already
knows. So when `trainer.max_epochs` is `auto` (the default) this callback decides, at the
start of fitting, once the train split's size is known:

- batch size: at most the records per process / `min_batches_per_epoch` (not below
  `min_batch_size`), so a small split still gives an epoch several steps;
- epochs: `epochs`, or more when that gives fewer than `min_steps` optimizer steps;
- early stopping's patience: at least `patience_steps` optimizer steps (rounded up to whole
  validations), since a few epochs of a small split are only a handful of steps and its
  validation score is noisy.

A dataset big enough for the defaults (the default experiment) keeps them all unchanged.
A number for `trainer.max_epochs` (or `trainer.max_steps`) fixes the run as given, batch
size and patience as configured; the budget then only states the plan and warns, before
training, when it gives fewer than `min_steps` steps. Every run logs its budget in one block
and writes it to `<run>/budget.json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping
from lightning_utilities.core.rank_zero import rank_zero_only

from src.errors import ConfigError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

AUTO = "auto"


class TrainingBudget(L.Callback):
    """Size the run from the train split when `max_epochs` is "auto"; state it; warn when short.

    Args:
        max_epochs: the configured `trainer.max_epochs` ("auto", a number, or null).
        epochs: the epochs of an "auto" run whose data gives enough steps in them.
        min_steps: optimizer steps a run needs to learn; "auto" adds epochs to reach them, a
            fixed budget below them gets a warning.
        min_batches_per_epoch: "auto" caps the batch size so an epoch has at least this many.
        min_batch_size: the cap never goes below this (batch norm needs a few records).
        patience_steps: "auto" raises early stopping's patience to at least this many
            optimizer steps.
        filename: the budget's record in the run folder (null: none).
    """

    # build_trainer starts the Trainer with `epochs` when max_epochs is "auto"; setup decides.
    decides_max_epochs = True

    def __init__(
        self,
        max_epochs: int | str | None = AUTO,
        epochs: int = 20,
        min_steps: int = 2000,
        min_batches_per_epoch: int = 16,
        min_batch_size: int = 16,
        patience_steps: int = 800,
        filename: str | None = "budget.json",
    ) -> None:
        if isinstance(max_epochs, str) and max_epochs != AUTO:
            raise ConfigError(f"trainer.max_epochs must be a number or 'auto', got {max_epochs!r}")
        for name, value in (
            ("epochs", epochs),
            ("min_batches_per_epoch", min_batches_per_epoch),
            ("min_batch_size", min_batch_size),
        ):
            if int(value) < 1:
                raise ConfigError(f"callbacks.budget.{name} must be >= 1, got {value}")
        for name, value in (("min_steps", min_steps), ("patience_steps", patience_steps)):
            if int(value) < 0:
                raise ConfigError(f"callbacks.budget.{name} must be >= 0, got {value}")
        self.max_epochs = max_epochs
        self.epochs = int(epochs)
        self.min_steps = int(min_steps)
        self.min_batches_per_epoch = int(min_batches_per_epoch)
        self.min_batch_size = int(min_batch_size)
        self.patience_steps = int(patience_steps)
        self.filename = filename
        self.plan: dict[str, Any] = {}

    @property
    def auto(self) -> bool:
        return self.max_epochs == AUTO

    # --- the plan --------------------------------------------------------------------------------
    def batch_cap(self, records_per_rank: int) -> int:
        """The largest batch that still gives `min_batches_per_epoch` batches an epoch."""
        return max(self.min_batch_size, records_per_rank // self.min_batches_per_epoch)

    def auto_epochs(self, steps_per_epoch: int) -> int:
        return max(self.epochs, math.ceil(self.min_steps / max(steps_per_epoch, 1)))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.fast_dev_run or trainer.overfit_batches:
            return
        dm = trainer.datamodule
        records = dm.num_records("train") if hasattr(dm, "num_records") else None
        world = max(int(trainer.world_size), 1)
        fixed_steps = trainer.max_steps != -1
        batch = getattr(dm, "batch_size", None)
        configured_batch = batch
        if self.auto and not fixed_steps and records and isinstance(batch, int):
            batch = min(batch, self.batch_cap(math.ceil(records / world)))
            dm.batch_size = batch
        # Lightning's own count (limit_train_batches, shards, drop_last): the loader is built
        # now, with the batch size above, and kept for the run.
        trainer.fit_loop.setup_data()
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            log.info("Training budget: the train loader has no length; epochs as configured")
            return
        steps_per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        if self.auto:
            # A fixed max_steps decides the run's length; otherwise the epochs do.
            trainer.fit_loop.max_epochs = -1 if fixed_steps else self.auto_epochs(steps_per_epoch)
        total = int(trainer.estimated_stepping_batches)
        patience = self._size_patience(trainer, steps_per_epoch)
        if not self.auto and records and isinstance(batch, int):
            # What "auto" would do here, for the warning (limits and drop_last aside).
            per_rank = math.ceil(records / world)
            auto_batch = min(batch, self.batch_cap(per_rank))
            auto_steps = math.ceil(
                math.ceil(per_rank / auto_batch) / trainer.accumulate_grad_batches
            )
            auto = {
                "auto_batch_size": auto_batch,
                "auto_steps_per_epoch": auto_steps,
                "auto_epochs": self.auto_epochs(auto_steps),
            }
        else:
            auto = {}
        self.plan = {
            "max_epochs": self.max_epochs,
            "train_records": records,
            "processes": world,
            "batch_size": batch,
            "configured_batch_size": configured_batch,
            "steps_per_epoch": steps_per_epoch,
            "epochs": trainer.max_epochs,
            "max_steps": trainer.max_steps,
            "total_steps": total,
            "min_steps": self.min_steps,
            "early_stopping_patience": patience,
            **auto,
        }
        self._report(trainer)

    def _size_patience(self, trainer: L.Trainer, steps_per_epoch: int) -> int | None:
        """Early stopping's patience (in validations), raised to `patience_steps` when auto."""
        stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
        if stopper is None:
            return None
        if self.auto:
            every = max(int(trainer.check_val_every_n_epoch or 1), 1)
            steps_per_check = steps_per_epoch * every
            if isinstance(trainer.val_check_batch, int) and trainer.val_check_batch < max(
                trainer.num_training_batches, 1
            ):  # validation inside the epoch, every val_check_batch batches
                steps_per_check = math.ceil(
                    trainer.val_check_batch / trainer.accumulate_grad_batches
                )
            needed = math.ceil(self.patience_steps / max(steps_per_check, 1))
            stopper.patience = max(int(stopper.patience), needed)
        return int(stopper.patience)

    # --- what the user sees ----------------------------------------------------------------------
    def too_short(self) -> str | None:
        """Why this plan is too small to learn and what to change, or None."""
        p = self.plan
        if p["total_steps"] >= self.min_steps:
            return None
        need = math.ceil(self.min_steps / max(p["steps_per_epoch"], 1))
        head = (
            f"Training budget too small to learn: {p['total_steps']:,} optimizer steps "
            f"({p['steps_per_epoch']} an epoch), fewer than the {self.min_steps:,} the budget "
            f"asks for (callbacks.budget.min_steps), so expect an under-trained model. "
        )
        if p["max_steps"] != -1 and p["total_steps"] >= p["max_steps"]:
            return head + f"Raise trainer.max_steps to at least {self.min_steps}."
        fix = f"set trainer.max_epochs={need} or more"
        if p.get("auto_epochs"):
            fix = (
                f"leave trainer.max_epochs unset (auto: {p['auto_epochs']} epochs of "
                f"{p['auto_steps_per_epoch']} steps here, batch {p['auto_batch_size']}), or " + fix
            )
        return head + fix[0].upper() + fix[1:] + "."

    @rank_zero_only
    def _report(self, trainer: L.Trainer) -> None:
        p = self.plan
        records = "unknown" if p["train_records"] is None else f"{p['train_records']:,}"
        if p["processes"] > 1:
            records += f" over {p['processes']} processes"
        batch = f"{p['batch_size']}"
        if p["batch_size"] != p["configured_batch_size"]:
            batch += (
                f" (data.batch_size={p['configured_batch_size']} capped for a small split: "
                f"records / {self.min_batches_per_epoch}, at least {self.min_batch_size})"
            )
        if p["epochs"] == -1:
            epochs = f"by steps (trainer.max_steps={p['max_steps']})"
        elif self.auto:
            epochs = (
                f"{p['epochs']} (auto: {self.epochs}, or more to reach {self.min_steps:,} steps)"
            )
        else:
            epochs = f"{p['epochs']} (trainer.max_epochs)"
        lines = [
            "Training budget:",
            f"  train records      {records}",
            f"  batch size         {batch}",
            f"  steps per epoch    {p['steps_per_epoch']}",
            f"  epochs             {epochs}",
            f"  optimizer steps    {p['total_steps']:,} (at most; early stopping may end sooner)",
        ]
        if p["early_stopping_patience"] is not None:
            lines.append(f"  stop patience      {p['early_stopping_patience']} validations")
        log.info("\n".join(lines))
        short = self.too_short()
        if short:
            log.warning(short)
        if self.filename:
            path = Path(trainer.default_root_dir) / self.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**p, "too_short": short}, indent=2))
