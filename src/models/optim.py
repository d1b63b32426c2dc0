"""Optimizer and learning-rate schedule of a task module, from its configured partials.

Every task takes `optimizer` and `scheduler` as Hydra nodes (partials), so the same configs
and the same scheduling rules serve them all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import hydra
import lightning as L
import torch

from src.utils.config import plain


def as_partial(node: Any) -> Any:
    """An optimizer/scheduler given as a Hydra node (partial or not) or a callable -> callable."""
    if node is None or callable(node):
        return node
    cfg = plain(node)
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise TypeError(f"expected a callable or a config with _target_, got {node!r}")
    cfg = {**cfg, "_partial_": True}
    return hydra.utils.instantiate(cfg)


def total_steps(module: L.LightningModule) -> int:
    steps = module.trainer.estimated_stepping_batches
    if not math.isfinite(steps):
        raise ValueError(
            "the scheduler needs the total number of steps: set trainer.max_epochs or "
            "max_steps, or give the scheduler T_max/total_steps explicitly"
        )
    return int(steps)


def configure_optimizers(
    module: L.LightningModule,
    optimizer_factory: Any,
    scheduler_factory: Any,
    params: Iterable,
    monitor: str,
) -> Any:
    """The optimizer over `params` and, if configured, its scheduler, for Lightning.

    CosineAnnealingLR without T_max and OneCycleLR without total_steps/epochs get the
    trainer's total optimizer steps and step every batch; ReduceLROnPlateau monitors
    `monitor` (mode "max" for score/acc monitors unless given); anything else steps once
    per epoch.
    """
    if optimizer_factory is None:
        raise ValueError("no optimizer configured; pass optimizer=<partial> to train")
    optimizer = optimizer_factory(params)
    if scheduler_factory is None:
        return optimizer
    factory = scheduler_factory
    func = getattr(factory, "func", factory)
    kwargs = dict(getattr(factory, "keywords", {}))
    config: dict[str, Any] = {"interval": "epoch", "frequency": 1}
    rop = torch.optim.lr_scheduler.ReduceLROnPlateau
    if func is torch.optim.lr_scheduler.CosineAnnealingLR and "T_max" not in kwargs:
        kwargs["T_max"] = total_steps(module)
        config["interval"] = "step"
    elif func is torch.optim.lr_scheduler.OneCycleLR:
        if "total_steps" not in kwargs and "epochs" not in kwargs:
            kwargs["total_steps"] = total_steps(module)
        kwargs.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
        config["interval"] = "step"
    elif isinstance(func, type) and issubclass(func, rop):
        kwargs.setdefault("mode", "max" if monitor.endswith(("score", "acc")) else "min")
        config["monitor"] = monitor
    if isinstance(factory, functools.partial):
        scheduler = factory.func(optimizer, *factory.args, **kwargs)
    else:
        scheduler = factory(optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **config}}
