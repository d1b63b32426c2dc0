"""Checkpoints of untrained models for the export tests: parity needs weights, not training.

Batch-norm statistics are set away from their initial (0, 1) so that a graph that dropped or
misplaced them would not agree with the checkpoint by chance.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import OmegaConf

from src.data.datamodule import VIMHDataModule
from tests.helpers.models import MODEL_DIR, checkpoint_of


def stir_norms(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def untrained_checkpoint(
    folder: Path, model: str, path: Path, representation: str = "image", **overrides
) -> Path:
    """Save an untrained `configs/model/<model>.yaml` built for the dataset `folder` as a
    checkpoint that eval, predict and export read (weights, hyperparameters, the datamodule's
    statistics and imaging config)."""
    dm = VIMHDataModule(folder, representation=representation, in_memory=True)
    dm.setup()
    cfg = OmegaConf.load(MODEL_DIR / f"{model}.yaml")
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg, **dm.spec.model_kwargs()).eval()
    stir_norms(module)
    ckpt = {**checkpoint_of(module), type(dm).__qualname__: dm.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
