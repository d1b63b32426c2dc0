"""Optimizer and learning-rate schedule of a task module, from its configured partials.

Every task takes `optimizer` and `scheduler` as Hydra nodes (partials) of its own run's config
(never a checkpoint's: no task saves them), so the same configs and the same scheduling rules
serve them all. `factories` tries both once on a stand-in parameter when the module is built,
so a bad value (a negative lr, an unknown argument) is one line naming the key before any
training starts, not a traceback from inside the Trainer.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import hydra
import lightning as L
import torch

from src.errors import ConfigError
from src.utils.config import plain


def as_partial(node: Any, what: str = "model.optimizer") -> Any:
    """An optimizer/scheduler given as a Hydra node (partial or not) or a callable -> callable."""
    if node is None or callable(node):
        return node
    cfg = plain(node)
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise TypeError(f"expected a callable or a config with _target_, got {node!r}")
    cfg = {**cfg, "_partial_": True}
    try:
        return hydra.utils.instantiate(cfg)
    except Exception as e:  # e.g. a _target_ that does not import
        raise ConfigError(f"{what}: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    line = lines[-1] if lines else type(e).__name__
    return re.sub(r",? *set env var HYDRA_FULL_ERROR=1.*$", "", line)  # said below the error


def _name(factory: Any) -> str:
    func = getattr(factory, "func", factory)
    return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', func)}"


def factories(optimizer: Any, scheduler: Any, monitor: str = "val/score") -> tuple[Any, Any]:
    """(optimizer factory, scheduler factory) of a task's config nodes, each built once on a
    stand-in parameter: any value it refuses is a ConfigError naming `model.optimizer` or
    `model.scheduler`, at build time."""
    opt_factory = as_partial(optimizer, "model.optimizer")
    sched_factory = as_partial(scheduler, "model.scheduler")
    if opt_factory is None:
        return opt_factory, sched_factory
    try:
        trial = opt_factory([torch.nn.Parameter(torch.zeros(1))])
    except Exception as e:  # torch.optim's own checks: ValueError, TypeError, ...
        raise ConfigError(f"model.optimizer ({_name(opt_factory)}): {_first_line(e)}") from e
    if sched_factory is not None:
        try:
            make_scheduler(sched_factory, trial, monitor, lambda: 100)
        except Exception as e:
            raise ConfigError(f"model.scheduler ({_name(sched_factory)}): {_first_line(e)}") from e
    return opt_factory, sched_factory


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
    scheduler, config = make_scheduler(
        scheduler_factory, optimizer, monitor, lambda: total_steps(module)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **config}}


def make_scheduler(
    factory: Any, optimizer: torch.optim.Optimizer, monitor: str, steps: Callable[[], int]
) -> tuple[Any, dict]:
    """(scheduler, its Lightning config) by the rules of `configure_optimizers`; `steps()` is
    the run's total optimizer steps."""
    func = getattr(factory, "func", factory)
    kwargs = dict(getattr(factory, "keywords", {}))
    config: dict[str, Any] = {"interval": "epoch", "frequency": 1}
    rop = torch.optim.lr_scheduler.ReduceLROnPlateau
    if func is torch.optim.lr_scheduler.CosineAnnealingLR and "T_max" not in kwargs:
        kwargs["T_max"] = steps()
        config["interval"] = "step"
    elif func is torch.optim.lr_scheduler.OneCycleLR:
        if "total_steps" not in kwargs and "epochs" not in kwargs:
            kwargs["total_steps"] = steps()
        kwargs.setdefault("max_lr", [g["lr"] for g in optimizer.param_groups])
        config["interval"] = "step"
    elif isinstance(func, type) and issubclass(func, rop):
        kwargs.setdefault("mode", "max" if monitor.endswith(("score", "acc")) else "min")
        config["monitor"] = monitor
    if isinstance(factory, functools.partial):
        return factory.func(optimizer, *factory.args, **kwargs), config
    return factory(optimizer), config
