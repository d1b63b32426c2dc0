"""Every config of every group composes (train, eval, generate), and what it builds is valid.

A config that no longer composes, names a missing `_target_`, passes an argument its class
does not take, or describes an impossible dataset fails here rather than in a user's run.
"""

from __future__ import annotations

import importlib.util
import inspect

import hydra
import lightning as L
import pytest
from omegaconf import OmegaConf

from src.generation.recipe import dataset_name, recipe_config
from src.generation.renderer import build_renderer
from src.models.multihead_module import net_input_kind
from src.paths import CONFIG_DIR
from src.utils.instantiators import RUNTIME_KEYS
from tests.helpers.models import DEFAULT_DATA

TRAIN_GROUPS = (
    "data",
    "model",
    "callbacks",
    "logger",
    "trainer",
    "paths",
    "extras",
    "hydra",
    "experiment",
    "hparams_search",
    "debug",
)
EVAL_GROUPS = ("data", "callbacks", "logger", "trainer")
GENERATE_GROUPS = ("synth", "spectrogram")
OPTIONAL_PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def cases(config: str, groups: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return [(config, g, o) for g in groups for o in options(g)]


ALL = cases("train", TRAIN_GROUPS) + cases("eval", EVAL_GROUPS) + cases("generate", GENERATE_GROUPS)


def test_every_group_has_options():
    for group in (*TRAIN_GROUPS, *GENERATE_GROUPS):
        assert options(group), group


@pytest.mark.parametrize(("config", "group", "option"), ALL, ids=lambda v: str(v))
def test_config_composes(compose_cfg, config, group, option):
    overrides = [f"{group}={option}"]
    if config == "eval":
        overrides.append("ckpt_path=some.ckpt")
    cfg = compose_cfg(config, overrides)
    OmegaConf.to_container(cfg, resolve=False)  # every node parses
    if config == "generate":
        build_renderer(cfg)  # synth and imager accept the config
        assert dataset_name(cfg).startswith("vimh-")
        return
    # Trainer keys are Trainer arguments (plus our runtime keys).
    accepted = set(inspect.signature(L.Trainer.__init__).parameters)
    unknown = set(cfg.trainer) - accepted - {"_target_", *RUNTIME_KEYS}
    assert not unknown, f"trainer keys that Trainer does not take: {sorted(unknown)}"
    # Callbacks and loggers are named, nullable entries whose targets build (optional
    # packages only where installed).
    for what in ("callbacks", "logger"):
        for name, entry in (cfg.get(what) or {}).items():
            if entry is None:
                continue
            package = next((p for k, p in OPTIONAL_PACKAGES.items() if k in name), None)
            if package and importlib.util.find_spec(package) is None:
                continue
            hydra.utils.instantiate(entry)
    # The data config names its dataset (a recipe that composes, or a folder).
    data = cfg.data
    # Several sources (src/data/waveforms.py): each names its dataset the same way.
    for source in (data.get("sources") or {"": data}).values():
        if source.get("recipe"):
            gen = recipe_config(source.recipe, out_dir=cfg.paths.data_dir)
            assert dataset_name(gen).startswith("vimh-")
        else:
            # a folder, or files (data=wav_dir's path, a codec source's wav_dir)
            assert {"data_dir", "wav_dir", "path"} & set(source.keys())
    # The model builds for the default data of its input kind.
    if "model" in cfg:
        spec = DEFAULT_DATA[net_input_kind(cfg.model.net._target_)]
        assert hydra.utils.instantiate(cfg.model, **spec.model_kwargs()).param_counts["total"]
