"""A waveform model: a trainable front-end (waveform -> log-mel) feeding any image back-end.

The back-end is built for the front-end's output shape, so every (C, H, W) backbone (ConvNet,
BC-ResNet, the linear baseline, ...) works unchanged on audio. The front-end keeps its own
learning rate through `param_groups`, which MultiheadModule.configure_optimizers uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from src.errors import ConfigError
from src.utils.build import build_component
from src.utils.config import target_config
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def _count(params) -> int:
    return sum(p.numel() for p in params)


class FrontendNet(nn.Module):
    """Waveform (B, 1, T) -> front-end -> [BatchNorm] -> back-end -> (B, out_features).

    `frontend` and `backend` are config nodes, built here by `src.utils.build` (the project's
    configs keep Hydra's `_recursive_: false` beside this net's `_target_`, from when Hydra
    built it); the front-end gets the data's `sample_rate` (a front-end config
    that states another rate is an error), the back-end gets `input_shape` = the front-end's
    output shape. `norm` puts a one-channel BatchNorm on
    the log-mel, standing in for the per-channel pixel normalisation of the image pipeline
    (dB values are far from unit scale, which a linear back-end cannot absorb).
    """

    input_kind = "audio"  # what MultiheadModule checks against the data

    def __init__(
        self,
        input_shape: Sequence[int],
        frontend: Mapping | nn.Module,
        backend: Mapping,
        norm: bool = True,
        sample_rate: int | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) != 2 or shape[0] != 1 or shape[1] < 1:
            raise ValueError(
                f"input_shape must be (1, n_samples) for a mono waveform, got {tuple(input_shape)}"
            )
        self.input_shape = shape
        if isinstance(frontend, nn.Module):
            self.frontend = frontend
        else:
            fcfg = target_config(frontend, "frontend")
            stated = fcfg.get("sample_rate")
            if sample_rate is not None:
                if stated is not None and int(stated) != int(sample_rate):
                    raise ConfigError(
                        f"model.net.frontend.sample_rate={stated} but the dataset is sampled at "
                        f"{sample_rate} Hz; leave it out (the rate comes from the data)"
                    )
                fcfg["sample_rate"] = int(sample_rate)
            elif stated is None:
                raise ConfigError("the front-end needs a sample_rate (from the data or its config)")
            self.frontend = build_component(fcfg, "model.net.frontend")
        if not hasattr(self.frontend, "output_shape"):
            raise TypeError(f"front-end {type(self.frontend).__name__} lacks output_shape()")
        self.feature_shape = tuple(self.frontend.output_shape(shape[1]))
        self.norm = nn.BatchNorm2d(self.feature_shape[0]) if norm else nn.Identity()
        self.backend = build_component(
            target_config(backend, "backend"), "model.net.backend", input_shape=self.feature_shape
        )
        out_features = getattr(self.backend, "out_features", None)
        if not isinstance(out_features, int):
            raise TypeError(f"back-end {type(self.backend).__name__} must expose out_features")
        self.out_features = out_features
        counts = self.param_counts()
        trainable = _count(p for p in self.frontend.parameters() if p.requires_grad)
        log.info(
            f"{type(self.frontend).__name__} {shape} -> {self.feature_shape}: "
            f"{counts['frontend']:,} parameters ({trainable:,} trainable); "
            f"{type(self.backend).__name__} back-end: {counts['backend']:,} parameters"
        )

    def backend_parameters(self) -> list[nn.Parameter]:
        """Everything after the front-end (the input norm included)."""
        return [*self.norm.parameters(), *self.backend.parameters()]

    def param_counts(self) -> dict[str, int]:
        return {
            "frontend": _count(self.frontend.parameters()),
            "backend": _count(self.backend_parameters()),
        }

    def param_groups(self, lr: float | None) -> list[dict]:
        """Optimizer groups: the front-end at its own lr (if set), the back-end at `lr`."""
        fe_lr = getattr(self.frontend, "lr", None)
        fe_lr = lr if fe_lr is None else fe_lr
        groups = [
            {"params": list(self.frontend.parameters())},
            {"params": self.backend_parameters()},
        ]
        for group, value in zip(groups, (fe_lr, lr)):
            if value is not None:
                group["lr"] = float(value)
        return [g for g in groups if g["params"]]

    def features(self, x: Tensor) -> Tensor:
        """The normalised front-end output the back-end sees, (B, 1, n_mels, frames)."""
        return self.norm(self.frontend(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.backend(self.features(x))
