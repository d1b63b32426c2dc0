"""Lightning's ModelCheckpoint, except that a tie with the best score so far counts as better."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """Keep the best checkpoints by the monitored metric; on a tie keep the later one.

    Lightning keeps the first checkpoint that reached a score. A small validation split scores
    many epochs the same (a dozen records all classified right is 1.0 from the first good
    epoch on), so that rule would test a model from early in training, while the later ones
    scored as well on validation after more training. Ties are all but impossible on a large
    validation split, so there this is Lightning's rule.
    """

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        op = {"min": torch.le, "max": torch.ge}[self.mode]
        better = bool(op(current, self.best_k_models[self.kth_best_model_path]))
        # Every process takes the same decision.
        return trainer.strategy.reduce_boolean_decision(better)
