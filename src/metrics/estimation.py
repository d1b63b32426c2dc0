"""Metrics of parameter estimation, per head and aggregated, as torchmetrics states.

For each head: accuracy (`acc`), macro-averaged F1 over the classes present (`f1_macro`),
accuracy within one class (`acc_within1`), mean absolute error in natural units (`mae`; also in
cents, `mae_cents`, for MIDI-note heads) and the skill against the train-mean predictor,
`skill = 1 - MAE / MAE(train mean)` on the same records: 0 for a constant guess of the training
mean, 1 for a perfect model, negative for worse than the guess. A nominal head (class indices
with no order, `src/data/vimh/classes.py`: recordings' categorical labels) has no meaningful
MAE: its skill is `1 - error rate / error rate(train mode)`, against a constant guess of the
most frequent training class (which the data hands over as that head's `train_means` entry).
`score` is the mean skill over heads (it drives checkpointing, early stopping and sweeps),
`acc_mean` the mean accuracy. The same object scores models (MultiheadModule) and baselines
(src/metrics/baselines.py), so their numbers are comparable by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from src.data.vimh.classes import is_nominal
from src.data.vimh.format import ParamSpec
from src.metrics.keys import metric_key

Predictions = Mapping[str, tuple[Tensor, Tensor]]  # head -> (values, classes)
CENTS_UNITS = ("midi",)  # heads in semitones also report their MAE in cents


def reference_value(spec: ParamSpec, codes: np.ndarray) -> float:
    """The skill's reference guess from a head's training codes: their mean value, or for a
    nominal head the value (class index) of the most frequent class."""
    values = spec.decode(np.asarray(codes))
    if is_nominal(spec):
        counts = np.bincount(spec.class_index(values), minlength=spec.num_classes)
        return float(spec.class_value(np.argmax(counts)))
    return float(values.mean())


class EstimationMetrics(nn.Module):
    """One stage's metrics. Argument validation is off so updates never sync with the host.

    `train_means` (natural units, per head) define the reference predictor of the skill; a
    module built without data (unit tests) uses each range's midpoint instead.
    """

    def __init__(
        self, specs: Sequence[ParamSpec], train_means: Mapping[str, float] | None = None
    ) -> None:
        super().__init__()
        self.specs = tuple(specs)
        names = [s.name for s in self.specs]
        means = train_means or {s.name: 0.5 * (s.min + s.max) for s in self.specs}
        missing = set(names) - set(means)
        if missing:
            raise ValueError(f"train_means lacks heads {sorted(missing)}")
        self.register_buffer(
            "means", torch.tensor([float(means[n]) for n in names]), persistent=False
        )
        self.acc = nn.ModuleDict(
            {
                s.name: MulticlassAccuracy(s.num_classes, average="micro", validate_args=False)
                for s in self.specs
            }
        )
        self.f1 = nn.ModuleDict(
            {
                s.name: MulticlassF1Score(s.num_classes, average="macro", validate_args=False)
                for s in self.specs
            }
        )
        self.nominal = {s.name for s in self.specs if is_nominal(s)}
        self.base_err = nn.ModuleDict({n: MeanMetric(nan_strategy="disable") for n in self.nominal})
        self.within1 = nn.ModuleDict({n: MeanMetric(nan_strategy="disable") for n in names})
        self.mae = nn.ModuleDict({n: MeanAbsoluteError() for n in names})
        self.base_mae = nn.ModuleDict({n: MeanAbsoluteError() for n in names})
        self.loss = MeanMetric(nan_strategy="disable")

    @property
    def updated(self) -> bool:
        return any(m.update_count > 0 for m in self.mae.values())

    def update(self, pred: Predictions, true: Predictions, loss: Tensor | None = None) -> None:
        """Add a batch: predicted and true (values, classes) per head; optionally its loss."""
        for i, spec in enumerate(self.specs):
            values, classes = pred[spec.name]
            true_values, true_classes = true[spec.name]
            self.acc[spec.name].update(classes, true_classes)
            self.f1[spec.name].update(classes, true_classes)
            self.within1[spec.name].update(((classes - true_classes).abs() <= 1).float())
            self.mae[spec.name].update(values, true_values)
            self.base_mae[spec.name].update(self.means[i].expand_as(true_values), true_values)
            if spec.name in self.nominal:  # the train mode's class against the true ones
                self.base_err[spec.name].update((true_classes != self.means[i].round()).float())
        if loss is not None:
            self.loss.update(loss.detach(), weight=len(true_values))

    def compute(self, stage: str) -> dict[str, Tensor]:
        """Epoch metrics (synced across processes by torchmetrics), keyed by metric name."""
        out: dict[str, Tensor] = {}
        skills, accs = [], []
        for spec in self.specs:
            name = spec.name
            acc, mae = self.acc[name].compute(), self.mae[name].compute()
            if name in self.nominal:
                skill = 1.0 - (1.0 - acc) / self.base_err[name].compute().clamp_min(1e-12)
            else:
                skill = 1.0 - mae / self.base_mae[name].compute().clamp_min(1e-12)
            out[metric_key(stage, "acc", name)] = acc
            out[metric_key(stage, "f1_macro", name)] = self.f1[name].compute()
            out[metric_key(stage, "acc_within1", name)] = self.within1[name].compute()
            out[metric_key(stage, "mae", name)] = mae
            if spec.unit in CENTS_UNITS:
                out[metric_key(stage, "mae_cents", name)] = 100.0 * mae
            out[metric_key(stage, "skill", name)] = skill
            accs.append(acc)
            skills.append(skill)
        out[metric_key(stage, "acc_mean")] = torch.stack(accs).mean()
        out[metric_key(stage, "score")] = torch.stack(skills).mean()
        if self.loss.update_count:
            out[metric_key(stage, "loss")] = self.loss.compute()
        return out

    def reset(self) -> None:
        for group in (self.acc, self.f1, self.within1, self.mae, self.base_mae, self.base_err):
            for m in group.values():
                m.reset()
        self.loss.reset()
