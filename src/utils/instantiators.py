"""Build the named, nullable callback and logger entries of a config, and the trainer."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

# Keys of the trainer config group that are not Trainer arguments (see build_trainer).
RUNTIME_KEYS = ("compile", "matmul_precision", "threads")
# trainer.max_epochs=auto: a callback with `decides_max_epochs` (the training budget) sets the
# epochs from the data at setup; without one (callbacks=none, eval) this many.
AUTO = "auto"
EPOCHS_WITHOUT_BUDGET = 20


def _instantiate_group(cfg: DictConfig | None, what: str) -> list:
    out = []
    if not cfg:
        return out
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{what} config must be a mapping of named entries")
    for name, entry in cfg.items():
        if entry is None:  # `callbacks.early_stopping=null` switches one off
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise ConfigError(f"{what}.{name} must have a _target_ (or be null)")
        log.info(f"Instantiating {what[:-1]} <{entry._target_}> ({name})")
        out.append(instantiate(entry))
    return out


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    return _instantiate_group(cfg, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_group(cfg, "loggers")


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    """The Trainer of `cfg.trainer` with `cfg.callbacks` (plus `extra_callbacks`, made in code)
    and `cfg.logger`, for train and eval.

    `max_epochs: auto` starts the Trainer with the budget callback's `epochs` (it decides the
    real count once the data is known, `src/callbacks/budget.py`), or 20 without one.

    The trainer group also carries settings that are not Trainer arguments: `compile` (read
    by the task when it builds the model), `matmul_precision` and `threads` (torch's CPU
    intra-op threads), applied here.
    """
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    runtime = {k: tcfg.pop(k, None) for k in RUNTIME_KEYS}
    if runtime["matmul_precision"]:
        torch.set_float32_matmul_precision(runtime["matmul_precision"])
    if runtime["threads"]:
        torch.set_num_threads(int(runtime["threads"]))
    callbacks = [*instantiate_callbacks(cfg.get("callbacks")), *extra_callbacks]
    if tcfg.get("max_epochs") == AUTO:
        budget = next((c for c in callbacks if getattr(c, "decides_max_epochs", False)), None)
        tcfg["max_epochs"] = budget.epochs if budget is not None else EPOCHS_WITHOUT_BUDGET
    elif isinstance(tcfg.get("max_epochs"), str):
        raise ConfigError(
            f"trainer.max_epochs must be a number or 'auto', got {tcfg['max_epochs']!r}"
        )
    loggers = instantiate_loggers(cfg.get("logger"))
    return instantiate(tcfg, callbacks=callbacks, logger=loggers or False)
