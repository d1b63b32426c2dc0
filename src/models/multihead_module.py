"""One LightningModule for every backbone family: per-parameter heads, losses and metrics.

The backbone comes in as a config node (`net`, built here for the data's input by
`src.utils.build`: an allow-listed class and checked keyword values, never Hydra's
`instantiate`, since a checkpoint's values must be neither resolved nor built), the data facts
as the plain values of `DataSpec.model_kwargs()` (heads as `ParamSpec.to_dict()`, input kind
and shape, sample rate), so a checkpoint's hyperparameters alone rebuild the model and load
with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from src.data.spec import INPUT_KINDS
from src.data.vimh.classes import is_nominal
from src.data.vimh.format import ParamSpec
from src.errors import ConfigError
from src.metrics import metric_key
from src.metrics.estimation import EstimationMetrics
from src.models.heads import build_head, resolve_head_modes
from src.models.optim import configure_optimizers, factories
from src.utils.build import build_component, component_class
from src.utils.config import plain as _plain
from src.utils.config import target_config
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def _head_spec(head: Any) -> ParamSpec:
    """A head given as ParamSpec or as its `to_dict()` form -> ParamSpec."""
    return head if isinstance(head, ParamSpec) else ParamSpec.from_dict(_plain(head))


def net_input_kind(target: str) -> str:
    """What a backbone class takes: its `input_kind` attribute, "image" unless it says so."""
    return getattr(component_class(target, "model.net"), "input_kind", "image")


def _build_net(net: dict, input_shape: list[int], input_kind: str | None, sample_rate):
    """Build the backbone for the data: check it takes this kind of input and give
    waveform backbones the data's sample rate."""
    takes = net_input_kind(net["_target_"])
    if input_kind is not None and takes != input_kind:
        hint = (
            "a waveform data config (e.g. data=saw_audio)"
            if takes == "audio"
            else ("an image data config (e.g. data=saw)")
        )
        raise ConfigError(
            f"model.net ({net['_target_']}) takes {takes} input but the data serves "
            f"{input_kind}; use {hint} or another model"
        )
    extra = {}
    if takes == "audio":
        if sample_rate is None:
            raise ConfigError(f"{net['_target_']} needs the data's sample rate; none was given")
        extra["sample_rate"] = int(sample_rate)
    return build_component(net, "model.net", input_shape=tuple(input_shape), **extra)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class MultiheadModule(L.LightningModule):
    """Backbone + one head per VIMH parameter, each in its own target mode.

    Batches are `(x, codes)`: x float32 (B, C, H, W) (or waveforms), codes int64 (B, P) raw
    8-bit labels, column p for head p. Logged per stage (src/metrics/estimation.py): per head
    `acc`, `acc_within1`, `mae` (natural units; `mae_cents` for MIDI notes) and `skill` against
    the train-mean predictor (`train_means`, from the data); `{stage}/loss` (sum of head
    losses), `{stage}/acc_mean` and `{stage}/score` = mean skill, the checkpoint metric.
    """

    def __init__(
        self,
        net: dict,
        heads: list[dict],
        input_shape: list[int],
        input_kind: str | None = None,
        sample_rate: int | None = None,
        train_means: dict | None = None,
        head_modes: str | dict = "classification",
        label_smoothing: float = 0.0,
        soft_sigma: float = 1.0,
        optimizer: Any = None,
        scheduler: Any = None,
        scheduler_monitor: str = "val/score",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.task = "multihead"
        net = target_config(net, "model.net")
        specs = tuple(_head_spec(h) for h in _plain(heads))
        if not specs:
            raise ValueError("a MultiheadModule needs at least one head")
        if input_kind is not None and input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
        input_shape = [int(v) for v in _plain(input_shape)]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"head names must be unique, got {names}")
        head_modes = _plain(head_modes)
        modes = resolve_head_modes(head_modes, names, [s.name for s in specs if is_nominal(s)])
        self.save_hyperparameters(
            {
                "net": net,
                "heads": [s.to_dict() for s in specs],
                "input_shape": input_shape,
                "input_kind": input_kind,
                "sample_rate": None if sample_rate is None else int(sample_rate),
                "train_means": None if train_means is None else dict(_plain(train_means)),
                "head_modes": head_modes,
                "label_smoothing": float(label_smoothing),
                "soft_sigma": float(soft_sigma),
                "scheduler_monitor": str(scheduler_monitor),
                "compile": bool(compile),
            }
        )
        self.optimizer_factory, self.scheduler_factory = factories(
            optimizer, scheduler, str(scheduler_monitor)
        )

        self.specs = specs
        self.modes = modes
        self.net = _build_net(net, input_shape, input_kind, sample_rate)
        out_features = getattr(self.net, "out_features", None)
        if not isinstance(out_features, int):
            raise TypeError(f"backbone {type(self.net).__name__} must expose out_features: int")
        for name in names:
            if not name or "." in name:
                raise ValueError(f"head name {name!r} cannot be a module key (empty or has '.')")
        self.heads = nn.ModuleDict(
            {
                s.name: build_head(s, modes[s.name], out_features, label_smoothing, soft_sigma)
                for s in self.specs
            }
        )
        # Attribute names, not ModuleDict keys: "train" is an nn.Module method name.
        means = self.hparams.train_means
        self.train_metrics = EstimationMetrics(self.specs, means)
        self.val_metrics = EstimationMetrics(self.specs, means)
        self.test_metrics = EstimationMetrics(self.specs, means)

        n_net, n_heads = count_parameters(self.net), count_parameters(self.heads)
        self.param_counts = {"backbone": n_net, "heads": n_heads, "total": n_net + n_heads}
        log.info(
            f"{type(self.net).__name__} for input {tuple(input_shape)}: backbone {n_net:,} + "
            f"heads {n_heads:,} = {n_net + n_heads:,} parameters; "
            f"modes {', '.join(f'{n}={m}' for n, m in modes.items())}"
        )

    # --- inference ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Raw head outputs (logits or unit-interval regression), keyed by head name."""
        features = self.net(x)
        return {name: head(features) for name, head in self.heads.items()}

    def decode(self, outputs: Mapping[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Raw outputs -> {name: (values in natural units, class indices)}."""
        return {name: self.heads[name].decode(out) for name, out in outputs.items()}

    @torch.no_grad()
    def predict_values(self, x: Tensor) -> dict[str, Tensor]:
        """Natural-unit predictions per head (the module's current train/eval mode is kept)."""
        return {name: v for name, (v, _) in self.decode(self(x)).items()}

    def targets(self, codes: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """(B, P) codes -> {name: (true values, true classes)} via the lookup tables."""
        codes = codes.long()
        return {
            name: (head.true_values(codes[:, p]), head.true_classes(codes[:, p]))
            for p, (name, head) in enumerate(self.heads.items())
        }

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """{"pred", "pred_class"} per head, plus {"true", "true_class"} when codes are given."""
        x, codes = (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)
        decoded = self.decode(self(x))
        result = {
            "pred": {n: v for n, (v, _) in decoded.items()},
            "pred_class": {n: c for n, (_, c) in decoded.items()},
        }
        if codes is not None:
            true = self.targets(codes)
            result["true"] = {n: v for n, (v, _) in true.items()}
            result["true_class"] = {n: c for n, (_, c) in true.items()}
        return result

    # --- losses ------------------------------------------------------------------------------
    def head_losses(self, outputs: Mapping[str, Tensor], codes: Tensor) -> dict[str, Tensor]:
        codes = codes.long()
        return {
            name: head.loss(outputs[name], codes[:, p])
            for p, (name, head) in enumerate(self.heads.items())
        }

    def compute_loss(self, x: Tensor, codes: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Summed head losses (each head keeps its full gradient whatever the head count)."""
        outputs = self(x)
        loss = torch.stack(list(self.head_losses(outputs, codes).values())).sum()
        return loss, outputs

    def _metrics(self, stage: str) -> EstimationMetrics:
        return getattr(self, f"{stage}_metrics")

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x, codes = batch[0], batch[1]
        loss, outputs = self.compute_loss(x, codes)
        metrics = self._metrics(stage)
        with torch.no_grad():
            metrics.update(self.decode(outputs), self.targets(codes), loss)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "train")
        # Log the step loss only when Lightning will write logs, to keep steps cheap.
        every = self.trainer.log_every_n_steps if self._trainer is not None else 0
        if every > 0 and (self.global_step + 1) % every == 0:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def epoch_metrics(self, stage: str) -> dict[str, Tensor]:
        """Compute (synced across processes by torchmetrics) this stage's epoch metrics."""
        return self._metrics(stage).compute(stage)

    def _epoch_end(self, stage: str) -> None:
        m = self._metrics(stage)
        if not m.updated:  # e.g. an epoch with no batches
            return
        values = self.epoch_metrics(stage)
        main = {metric_key(stage, "score"), metric_key(stage, "loss")}
        self.log_dict(
            {k: v for k, v in values.items() if k in main},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            prog_bar=stage != "train",
        )
        self.log_dict(
            {k: v for k, v in values.items() if k not in main},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        m.reset()

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # --- setup and optimisation ------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # nn.Module.compile wraps forward in place: state_dict keys stay "net.*".
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def _param_groups(self, lr: float | None) -> list[dict] | Any:
        if hasattr(self.net, "param_groups"):
            return [*self.net.param_groups(lr), {"params": list(self.heads.parameters())}]
        return self.parameters()

    def configure_optimizers(self) -> Any:
        """The optimizer (and scheduler, if any) over this module's parameters, by the rules of
        `src/models/optim.py`. A backbone with `param_groups(lr)` (a list of param-group dicts
        covering all its parameters) sets its own groups; heads use the optimizer's lr."""
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        return configure_optimizers(
            self,
            self.optimizer_factory,
            self.scheduler_factory,
            self._param_groups(lr),
            self.hparams.scheduler_monitor,
        )

    # --- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the task, so eval rebuilds this class from the checkpoint (src/models/tasks.py)."""
        checkpoint["task"] = self.task

    @property
    def head_names(self) -> list[str]:
        return [s.name for s in self.specs]
