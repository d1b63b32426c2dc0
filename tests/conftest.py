"""Shared fixtures: composed train/eval configs pointed at tiny datasets in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def compose_config(name: str, out_dir: Path, overrides: list[str]) -> DictConfig:
    """Compose `configs/<name>.yaml` as Hydra would, with all output under `out_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir / "logs")
        cfg.paths.data_dir = str(out_dir / "data")
        cfg.extras.print_config = False
        cfg.extras.enforce_tags = False
    return cfg


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(name, overrides, out=...) -> DictConfig writing under tmp_path."""

    def make(name: str, overrides: list[str], out: str = "run") -> DictConfig:
        return compose_config(name, tmp_path / out, overrides)

    yield make
    GlobalHydra.instance().clear()
