"""Compose the project's configs from library code, scripts and tests, like Hydra's apps do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.paths import CONFIG_DIR


def compose_config(
    name: str, overrides: list[str] | None = None, return_hydra_config: bool = False
) -> DictConfig:
    """`configs/<name>.yaml` composed with `overrides`.

    Inside a running Hydra app (or an initialised Compose API) its config search path is used;
    otherwise the project's `configs/` for this call only.
    """
    overrides = list(overrides or [])
    if GlobalHydra.instance().is_initialized():
        return compose(name, overrides=overrides, return_hydra_config=return_hydra_config)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=return_hydra_config)


def target_config(node: Any, what: str) -> dict:
    """A config mapping with a `_target_` (an OmegaConf node or a dict) as a plain dict; any
    other value is a TypeError naming `what`."""
    cfg = plain(node)
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise TypeError(f"{what} must be a config mapping with _target_, got {node!r}")
    return cfg


def plain(obj: Any) -> Any:
    """OmegaConf nodes -> plain dicts/lists (resolved); tuples -> lists; rest unchanged: the
    values a module saves as hyperparameters. Resolving is for the run's own config only: a
    value read from a file (a checkpoint, a dataset's JSON) is never put in an OmegaConf node,
    so it reaches this function as plain data and passes unresolved (`src/utils/build.py`)."""
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
