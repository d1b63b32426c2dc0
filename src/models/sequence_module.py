"""Task 2, sequence prediction: the next spectrogram frames from the frames before them.

Batches are windows (B, L, H) of unit log-mel frames (`src/data/frames.py`), L = context +
horizon. The network (`src/models/components/sequence.py`) predicts, at every step t, frames
t+1..t+`ahead`; with `residual` its output is added to frame t, so an untrained network is
the repeat-last-frame predictor. Training is teacher forcing over the whole window (optionally
with scheduled sampling: inputs replaced by the model's own one-step predictions with a
probability ramped up over epochs, in parallel over the window), on L1 or MSE of log-mel plus
optional spectral terms.

Evaluation compares predictors on the horizon frames of every window (frames context..L-1):
- one step: each frame from the true frames before it (teacher forced), logged as
  `{stage}/{metric}`;
- rollout (test, and validation with `val_rollout`): primed with the context, the model feeds
  its own predictions back for `horizon` steps, logged as `{stage}/rollout_{metric}`; per
  horizon step in `horizon_curves()`;
with the baselines repeat-last-frame and the training set's mean frame (averaged in linear
power, where it is scored) on the same frames (`{stage}/repeat_last/...`,
`{stage}/mean_frame/...`). Metrics are on linear-scale mel power
(`src/metrics/spectral.py`). `{stage}/score` = 1 - MSE / repeat-last MSE (one step): above 0
beats repeat-last-frame.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.frames import frame_frequencies
from src.data.spec import FrameSpec
from src.errors import ConfigError
from src.metrics import metric_key
from src.metrics.spectral import (
    SpectralErrors,
    spectral_bandwidth,
    spectral_centroid,
    spectral_entropy,
    spectral_flatness,
    to_power,
)
from src.models.multihead_module import count_parameters, net_input_kind
from src.models.optim import configure_optimizers, factories
from src.utils.build import build_component
from src.utils.config import plain, target_config
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

LOSSES = ("mse", "l1")
SPECTRAL_TERMS = ("mse", "centroid", "bandwidth", "flatness", "entropy")
PREDICTORS = ("model", "repeat_last", "mean_frame")
MODES = ("step", "rollout", "direct")  # direct: the k-ahead outputs of one step (ahead > 1)
PREFIX = {"step": "", "rollout": "rollout_", "direct": "direct_"}


class SequenceModule(L.LightningModule):
    """A frame predictor (`net`) with its losses, rollouts, metrics and baselines.

    Args:
        net: config node of a network of `src.models.components.sequence` (`src.utils.build`).
        frames, context, horizon, frame_mean: the data's `FrameSpec.model_kwargs()`.
        ahead: frames predicted per step (k-frame-ahead; rollouts use the first).
        residual: predict the change from the last frame (the output starts at repeat-last).
        loss: "mse" or "l1" on unit log-mel.
        spectral_loss: weights of extra terms on linear power, each averaged over frames:
            `mse` (squared power error over the target's mean squared power), `centroid` and
            `bandwidth` (absolute error over f_max), `flatness`, `entropy` (absolute error).
        scheduled_sampling: {max_prob, start_epoch, ramp_epochs}: probability of replacing
            an input frame by the model's prediction, 0 before `start_epoch`, rising linearly
            to `max_prob` over `ramp_epochs`.
        val_rollout: also roll out on validation (the test always does).
    """

    def __init__(
        self,
        net: dict,
        frames: dict,
        context: int,
        horizon: int,
        frame_mean: list[float] | None = None,
        ahead: int = 1,
        residual: bool = True,
        loss: str = "mse",
        spectral_loss: dict | None = None,
        scheduled_sampling: dict | None = None,
        val_rollout: bool = False,
        optimizer: Any = None,
        scheduler: Any = None,
        scheduler_monitor: str = "val/score",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.task = "sequence"
        net = target_config(net, "model.net")
        if net_input_kind(net["_target_"]) != "frames":
            raise ConfigError(
                f"model.net ({net['_target_']}) does not take frame sequences; use a network of "
                f"src.models.components.sequence (e.g. model=seq_lstm_...)"
            )
        spec = FrameSpec.from_model_kwargs(
            {
                "frames": plain(frames),
                "context": context,
                "horizon": horizon,
                "frame_mean": plain(frame_mean),
            }
        )
        if loss not in LOSSES:
            raise ConfigError(f"model.loss must be one of {LOSSES}, got {loss!r}")
        weights = {k: float(v) for k, v in (plain(spectral_loss) or {}).items()}
        if set(weights) - set(SPECTRAL_TERMS):
            raise ConfigError(f"model.spectral_loss: terms must be among {SPECTRAL_TERMS}")
        sampling = dict(plain(scheduled_sampling) or {})
        if set(sampling) - {"max_prob", "start_epoch", "ramp_epochs"}:
            raise ConfigError("model.scheduled_sampling takes max_prob, start_epoch, ramp_epochs")
        if ahead < 1:
            raise ConfigError(f"model.ahead must be >= 1, got {ahead}")
        self.save_hyperparameters(
            {
                **spec.model_kwargs(),
                "net": net,
                "ahead": int(ahead),
                "residual": bool(residual),
                "loss": loss,
                "spectral_loss": weights,
                "scheduled_sampling": sampling,
                "val_rollout": bool(val_rollout),
                "scheduler_monitor": str(scheduler_monitor),
                "compile": bool(compile),
            }
        )
        self.spec = spec
        self.optimizer_factory, self.scheduler_factory = factories(
            optimizer, scheduler, str(scheduler_monitor)
        )
        self.net = build_component(net, "model.net", n_mels=spec.n_mels, ahead=int(ahead))
        self.db_range = (float(spec.frames["db_min"]), float(spec.frames["db_max"]))
        self.register_buffer("freqs", frame_frequencies(spec.frames), persistent=False)
        mean = torch.full((spec.n_mels,), float("nan"))
        if spec.frame_mean is not None:
            mean = torch.tensor(spec.frame_mean, dtype=torch.float32)
        self.register_buffer("frame_mean", mean, persistent=False)
        self.metrics = nn.ModuleDict()
        self.build_metrics(spec.context, spec.horizon)
        n = count_parameters(self.net)
        self.param_counts = {"backbone": n, "heads": 0, "total": n}
        log.info(f"{type(self.net).__name__} for {spec.describe()}: {n:,} parameters")

    def build_metrics(self, context: int, horizon: int) -> None:
        """One `SpectralErrors` per stage, mode and predictor, over the horizon's positions
        (direct k-ahead outputs: the first `ahead` of them)."""
        self.window = (int(context), int(horizon))
        direct = min(int(self.hparams.ahead), int(horizon))
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{mode}_{p}": SpectralErrors(
                    self.freqs, direct if mode == "direct" else horizon
                )
                for stage in ("val", "test")
                for mode in MODES
                for p in PREDICTORS
                if mode != "direct" or (p == "model" and self.hparams.ahead > 1)
            }
        ).to(self.freqs.device)

    def setup(self, stage: str) -> None:
        """Evaluate on the data's windows (eval may use other context and horizon)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        spec = getattr(dm, "spec", None)
        if isinstance(spec, FrameSpec) and (spec.context, spec.horizon) != self.window:
            log.info(f"Evaluating windows of {spec.context} + {spec.horizon} frames")
            self.build_metrics(spec.context, spec.horizon)
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    # --- prediction --------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """(B, T, H) frames -> (B, T, ahead, H) predictions of frames t+1..t+ahead."""
        y = self.net(x)
        return y + x[:, :, None, :] if self.hparams.residual else y

    @torch.no_grad()
    def rollout(self, context: Tensor, steps: int) -> Tensor:
        """Prime with (B, N, H) frames, then feed back `steps` predictions: (B, steps, H)."""
        y, state = self.net.step(context)
        last, out = context[:, -1], []
        for i in range(steps):
            nxt = y[:, -1, 0] + last if self.hparams.residual else y[:, -1, 0]
            last = nxt.clamp(0.0, 1.0)  # a frame a pixel can hold
            out.append(last)
            if i + 1 < steps:
                y, state = self.net.step(last[:, None], state)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def predict_record(self, frames: Tensor, context: int) -> dict[str, Tensor]:
        """Whole records (B, W, H): `one_step` (frame t from true frames < t; frame 0 kept)
        and `rollout` (the first `context` frames true, the rest generated)."""
        step = self(frames[:, :-1])[:, :, 0].clamp(0.0, 1.0)
        gen = self.rollout(frames[:, :context], frames.shape[1] - context)
        return {
            "target": frames,
            "one_step": torch.cat([frames[:, :1], step], dim=1),
            "rollout": torch.cat([frames[:, :context], gen], dim=1),
        }

    # --- losses ------------------------------------------------------------------------------
    def targets(self, w: Tensor) -> Tensor:
        """(B, L, H) window -> (B, L - ahead, ahead, H): frames t+1..t+ahead per step."""
        return w[:, 1:].unfold(1, self.hparams.ahead, 1).permute(0, 1, 3, 2)

    def compute_loss(self, pred: Tensor, w: Tensor) -> Tensor:
        """Loss of predictions `pred` made from w[:, :-1], on every step with targets."""
        target = self.targets(w)
        pred = pred[:, : target.shape[1]]
        base = F.mse_loss if self.hparams.loss == "mse" else F.l1_loss
        loss = base(pred, target)
        weights = {k: v for k, v in self.hparams.spectral_loss.items() if v}
        if weights:
            p, t = to_power(pred, *self.db_range), to_power(target, *self.db_range)
            f_max = float(self.hparams.frames["f_max"])
            terms = {
                "mse": lambda: (p - t).square().mean() / t.square().mean().clamp_min(1e-30),
                "centroid": lambda: (
                    (spectral_centroid(p, self.freqs) - spectral_centroid(t, self.freqs))
                    .abs()
                    .mean()
                    / f_max
                ),
                "bandwidth": lambda: (
                    (spectral_bandwidth(p, self.freqs) - spectral_bandwidth(t, self.freqs))
                    .abs()
                    .mean()
                    / f_max
                ),
                "flatness": lambda: (spectral_flatness(p) - spectral_flatness(t)).abs().mean(),
                "entropy": lambda: (spectral_entropy(p) - spectral_entropy(t)).abs().mean(),
            }
            for name, weight in weights.items():
                loss = loss + weight * terms[name]()
        return loss

    def sampling_prob(self) -> float:
        s = self.hparams.scheduled_sampling
        top = float(s.get("max_prob", 0.0))
        if top <= 0 or self._trainer is None:
            return 0.0
        ramp = max(int(s.get("ramp_epochs", 1)), 1)
        frac = (self.current_epoch - int(s.get("start_epoch", 0)) + 1) / ramp
        return top * min(max(frac, 0.0), 1.0)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        w = batch[0]
        inputs = w[:, :-1]
        prob = self.sampling_prob()
        if prob > 0:  # parallel scheduled sampling: frame t+1 replaced by its own prediction
            with torch.no_grad():
                guess = self(inputs)[:, :-1, 0].clamp(0.0, 1.0)
            swap = torch.rand(guess.shape[:2], device=w.device) < prob
            fed = torch.where(swap[..., None], guess, inputs[:, 1:])
            inputs = torch.cat([inputs[:, :1], fed], dim=1)
        loss = self.compute_loss(self(inputs), w)
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True)
        return loss

    # --- evaluation --------------------------------------------------------------------------
    def _eval_step(self, batch: Any, stage: str) -> Tensor:
        w = batch[0]
        c, m = self.window
        pred = self(w[:, :-1])
        loss = self.compute_loss(pred, w)
        self.log(metric_key(stage, "loss"), loss, on_step=False, on_epoch=True, sync_dist=True)
        target = to_power(w[:, c:], *self.db_range)
        last = w[:, c - 1 : c].expand(-1, m, -1)
        mean = self.frame_mean.expand_as(target)
        guesses = {
            "step": {"model": pred[:, c - 1 :, 0].clamp(0.0, 1.0), "repeat_last": w[:, c - 1 : -1]}
        }
        if stage == "test" or self.hparams.val_rollout:
            guesses["rollout"] = {"model": self.rollout(w[:, :c], m), "repeat_last": last}
        if self.hparams.ahead > 1:  # frames c..c+k-1, all from the step at frame c - 1
            k = min(self.hparams.ahead, m)
            guesses["direct"] = {"model": pred[:, c - 1, :k].clamp(0.0, 1.0)}
        for mode, preds in guesses.items():
            for name, x in preds.items():
                t = target[:, : x.shape[1]]
                self.metrics[f"{stage}_{mode}_{name}"].update(to_power(x, *self.db_range), t)
            if mode != "direct" and not torch.isnan(mean).any():
                self.metrics[f"{stage}_{mode}_mean_frame"].update(
                    to_power(mean, *self.db_range), target
                )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def _epoch_end(self, stage: str) -> None:
        values, curves = {}, {}
        for key, m in self.metrics.items():
            if not key.startswith(f"{stage}_") or not m.updated:
                continue
            _, mode, p = key.split("_", 2)
            for name, v in m.compute().items():
                values[metric_key(stage, PREFIX[mode] + name, None if p == "model" else p)] = v
            if mode != "step":
                curves[p if mode == "rollout" else f"{p} ({mode})"] = m.curves()
            m.reset()
        if not values:
            return
        base = values[metric_key(stage, "mse", "repeat_last")]
        score = 1.0 - values[metric_key(stage, "mse")] / base.clamp_min(1e-30)
        self.log(metric_key(stage, "score"), score, prog_bar=True, sync_dist=False)
        self.log_dict(values, sync_dist=False)  # torchmetrics synced them already
        if stage == "test":
            self.curves = curves

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def horizon_curves(self) -> dict[str, dict[str, Tensor]]:
        """The last test's errors per step of the horizon: {predictor: {metric: (steps,)}},
        rollouts under the predictor's name, direct k-ahead outputs as "model (direct)"."""
        return dict(getattr(self, "curves", {}))

    # --- optimisation and checkpoints ------------------------------------------------------
    def configure_optimizers(self) -> Any:
        return configure_optimizers(
            self,
            self.optimizer_factory,
            self.scheduler_factory,
            self.parameters(),
            self.hparams.scheduler_monitor,
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the task, so eval rebuilds this class from the checkpoint (src/models/tasks.py)."""
        checkpoint["task"] = self.task

    @staticmethod
    def data_differences(hparams: dict, datamodule) -> list[str]:
        """How `datamodule`'s frames differ from the checkpoint's (tasks.check_data_matches);
        read from its frame facts alone, before any split is opened."""
        frames = getattr(datamodule, "frames", None)
        if not isinstance(frames, dict) or not frames:
            return [f"input: frame sequences vs {type(datamodule).__name__} (use data=phrase)"]
        trained = FrameSpec.from_model_kwargs(hparams)
        return trained.differences(FrameSpec(frames, trained.context, trained.horizon))
