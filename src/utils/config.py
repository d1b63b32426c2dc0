"""Compose the project's configs from library code, scripts and tests, like Hydra's apps do."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

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
