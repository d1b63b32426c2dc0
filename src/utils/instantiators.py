"""Build the named, nullable callback and logger entries of a config."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def _instantiate_group(cfg: DictConfig | None, what: str) -> list:
    out = []
    if not cfg:
        return out
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"{what} config must be a mapping of named entries")
    for name, entry in cfg.items():
        if entry is None:  # `callbacks.early_stopping=null` switches one off
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise TypeError(f"{what}.{name} must have a _target_ (or be null)")
        log.info(f"Instantiating {what[:-1]} <{entry._target_}> ({name})")
        out.append(instantiate(entry))
    return out


def instantiate_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    return _instantiate_group(cfg, "callbacks")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return _instantiate_group(cfg, "loggers")
