"""Gradient statistics: the global gradient norm and the largest per-parameter norms."""

from __future__ import annotations

import lightning as L
import torch


class GradientStats(L.Callback):
    """Every `every_n_steps` optimizer steps, log the global L2 gradient norm and, per module
    group (first `depth` name parts), its norm: vanishing or exploding gradients show up early."""

    def __init__(self, every_n_steps: int = 50, depth: int = 2) -> None:
        self.every_n_steps = every_n_steps
        self.depth = depth

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        groups: dict[str, list[torch.Tensor]] = {}
        for name, p in pl_module.named_parameters():
            if p.grad is not None:
                key = ".".join(name.split(".")[: self.depth])
                groups.setdefault(key, []).append(p.grad.detach().pow(2).sum())
        if not groups:
            return
        norms = {k: torch.stack(v).sum().sqrt() for k, v in groups.items()}
        total = torch.stack(list(norms.values())).pow(2).sum().sqrt()
        pl_module.log("grad/norm_total", total, on_step=True, on_epoch=False)
        for k, v in norms.items():
            pl_module.log(f"grad/norm/{k}", v, on_step=True, on_epoch=False)
