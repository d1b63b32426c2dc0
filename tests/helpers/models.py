"""Model-config checks shared by the family tests: names state the measured size."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from src.data.frames import recipe_frames
from src.data.spec import DataSpec
from src.generation.params import synth_heads
from src.models.multihead_module import MultiheadModule, net_input_kind
from src.paths import CONFIG_DIR
from src.train import train
from tests.helpers.runs import on

MODEL_DIR = CONFIG_DIR / "model"
# The default dataset: 1x32x32 images (or 1 s at 8 kHz) with the saw synth's heads.
HEADS = synth_heads("saw")
DEFAULT_DATA = {
    "image": DataSpec("image", (1, 32, 32), 8000, HEADS),
    "audio": DataSpec("audio", (1, 8000), 8000, HEADS),
    # The default phrase data (configs/data/phrase.yaml): 64 mel bins, windows of 32 + 16.
    "frames": recipe_frames(OmegaConf.load(MODEL_DIR.parent / "data" / "phrase.yaml")),
}


def stated_size(path: Path) -> float:
    m = re.search(r"_(\d+(?:\.\d+)?)([km])\b", path.stem)
    assert m, f"{path.name}: name does not state a size like _25k or _1m"
    return float(m.group(1)) * {"k": 1e3, "m": 1e6}[m.group(2)]


def build_config(path: Path, **overrides) -> MultiheadModule:
    """A model config instantiated for the default dataset of its input kind."""
    cfg = OmegaConf.load(path)
    spec = DEFAULT_DATA[net_input_kind(cfg.net._target_)]
    return hydra.utils.instantiate(cfg, **{**spec.model_kwargs(), **overrides})


def check_config_size(path: Path, net_type: type) -> MultiheadModule:
    """Instantiate on the default dataset; the name's size and the comment's count must match."""
    model = build_config(path)
    assert isinstance(model, MultiheadModule) and isinstance(model.net, net_type)
    total = sum(p.numel() for p in model.parameters())
    assert total == model.param_counts["total"]
    stated = stated_size(path)
    assert abs(total - stated) <= 0.1 * stated, f"{path.name}: measured {total:,}"
    assert f"{total:,}" in path.read_text(), f"{path.name}: comment should say {total:,}"
    # The optimizer builds over every parameter (some nets set their own groups).
    optimizer = model.optimizer_factory(model._param_groups(model.optimizer_factory.keywords["lr"]))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == total
    return model


def train_toy(compose_cfg, data_dir: Path, model: str, overrides: list[str]) -> dict:
    cfg = compose_cfg("train", [*on(data_dir), f"model={model}", *overrides])
    metrics, _ = train(cfg)
    return {k: float(v) for k, v in metrics.items()}


def assert_size_ladder(paths: list[Path], at_least: int) -> None:
    """A family offers `at_least` sizes, each measured at >= 1.5x the parameters of the last."""
    totals = sorted(build_config(p).param_counts["total"] for p in paths)
    assert len(totals) >= at_least, [p.stem for p in paths]
    for small, big in itertools.pairwise(totals):
        assert big >= 1.5 * small, f"sizes too close: {totals}"


def checkpoint_of(module) -> dict:
    """What a checkpoint of `module` holds for eval to rebuild it: weights, hyperparameters
    (as Lightning saves them: a plain dict) and the task's name."""
    return {
        "state_dict": module.state_dict(),
        "hyper_parameters": copy.deepcopy(dict(module.hparams)),
        "task": module.task,
    }
