"""Per-parameter output heads: target modes, losses and decoding to natural units.

Each head turns backbone features into predictions for one VIMH parameter. The head owns
its output layer and 256-entry lookup tables that map raw 8-bit label codes to natural
values, class indices and unit-interval targets, so targets are built by one gather per
batch instead of per-sample Python.

Modes (`MODES`):

- ``classification``: K logits, cross-entropy (optional label smoothing); argmax class.
- ``ordinal``: CORAL-style cumulative model: one shared score plus K-1 ordered biases give
  K-1 logits for P(y > k), trained with binary cross-entropy (summed over thresholds);
  the predicted class is the number of thresholds whose probability exceeds 0.5.
- ``regression``: one output regressed on ``ParamSpec.to_unit(value)`` (so log scales are
  regressed in log space) by a Huber loss on the error in class widths (see
  ``RegressionHead.loss`` for its scale); decoded like ``from_unit`` after clamping to [0, 1].
- ``soft``: K logits, KL divergence to a Gaussian over classes (width ``soft_sigma``
  classes) centred on the true class, so near misses cost less than far ones. (KL equals the
  soft cross-entropy minus the target entropy: same gradients, but 0 at a perfect fit.) Decoded by
  argmax (not the expectation) so predictions stay on the class grid like ``classification``.
- ``expectation``: trained as ``classification``; the value is the expectation of the class
  posterior along the parameter's axis (in octaves for log scales), so it leaves the grid.
- ``offset``: K logits plus K in-class offsets. Cross-entropy on the logits and an L1 loss on
  the true class's offset (where the value sits inside its class, in class widths, -0.5 to
  0.5); decoded as the argmax class moved by its offset, so the value leaves the grid while the
  class (and its accuracy) stays the classifier's.

Every mode yields (values, classes): values in natural units for MAE, classes for accuracy.
``classification``, ``soft`` and ``ordinal`` values are class grid values, so their MAE cannot
go below the grid's (a quarter of a class width for uniform labels); ``regression``,
``expectation`` and ``offset`` give continuous values.
The true value of a sample is the decoded code (``ParamSpec.decode``), the dataset's only
record of it; its class is ``class_index`` of that value.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.data.vimh.format import CODE_LEVELS, ParamSpec

MODES = ("classification", "ordinal", "regression", "soft", "expectation", "offset")
CONTINUOUS_MODES = ("regression", "expectation", "offset")


OTHER = "other"  # the key of a head_modes mapping for every head it does not name


def resolve_head_modes(
    head_modes: str | dict, names: list[str], nominal: Collection[str] = ()
) -> dict[str, str]:
    """One mode per head name: a single string for all, or a mapping {head: mode} whose
    `other` entry covers the heads it does not name (classification without one), except the
    `nominal` heads (class indices with no order, where a value between classes means
    nothing): `other` leaves them classifiers. A mapping with `other` may name heads the data
    lacks (a default meant for many datasets, e.g. a pitch head); without it, every name must
    be a head (a typo is an error)."""
    if isinstance(head_modes, str):
        modes = dict.fromkeys(names, head_modes)
    else:
        rest = str(head_modes.get(OTHER, "classification"))
        unknown = set(head_modes) - set(names) - {OTHER}
        if unknown and OTHER not in head_modes:
            raise ValueError(f"head_modes names unknown heads {sorted(unknown)}; heads are {names}")
        modes = {
            n: str(head_modes.get(n, "classification" if n in nominal else rest)) for n in names
        }
    for name, mode in modes.items():
        if mode not in MODES:
            raise ValueError(f"head '{name}': unknown mode {mode!r}; expected one of {MODES}")
    return modes


def ordinal_targets(classes: Tensor, num_classes: int) -> Tensor:
    """Binary targets [y > k] for k = 0..K-2, shape (B, K-1), float."""
    thresholds = torch.arange(num_classes - 1, device=classes.device)
    return (classes.unsqueeze(1) > thresholds).float()


def gaussian_soft_targets(classes: Tensor, num_classes: int, sigma: float) -> Tensor:
    """Gaussian distributions over classes centred on `classes`, shape (B, K), rows sum to 1."""
    if sigma <= 0:
        raise ValueError(f"soft_sigma must be > 0, got {sigma}")
    grid = torch.arange(num_classes, device=classes.device, dtype=torch.float32)
    dist = grid.unsqueeze(0) - classes.unsqueeze(1).float()
    return torch.softmax(-0.5 * (dist / sigma) ** 2, dim=1)


class Head(nn.Module):
    """Base head: output layer, code lookup tables, loss and decoding for one parameter."""

    mode = ""

    def __init__(self, spec: ParamSpec, in_features: int) -> None:
        super().__init__()
        if spec.fixed or spec.num_classes < 2:
            raise ValueError(f"parameter '{spec.name}' is fixed; only varying ones get heads")
        self.spec = spec
        self.num_classes = spec.num_classes
        codes = np.arange(CODE_LEVELS + 1)
        values = spec.decode(codes)
        k = np.arange(self.num_classes)
        # Lookup tables are derived from the spec (saved in hparams), so not in the state_dict.
        self.register_buffer("code_values", _f32(values), persistent=False)
        self.register_buffer(
            "code_classes", torch.from_numpy(spec.class_index(values)), persistent=False
        )
        self.register_buffer("code_units", _f32(spec.to_unit(values)), persistent=False)
        self.register_buffer("class_values", _f32(spec.class_value(k)), persistent=False)
        # Where each code's value sits inside its class, in class widths (-0.5 .. 0.5).
        offsets = spec.position(values) / spec.step - spec.class_index(values)
        self.register_buffer("code_offsets", _f32(offsets), persistent=False)
        self.layer = self.build_layer(in_features)

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def build_layer(self, in_features: int) -> nn.Module:
        return nn.Linear(in_features, self.num_outputs)

    def forward(self, features: Tensor) -> Tensor:
        return self.layer(features)

    def true_values(self, codes: Tensor) -> Tensor:
        """(B,) int64 codes -> natural values (float32)."""
        return self.code_values[codes]

    def true_classes(self, codes: Tensor) -> Tensor:
        """(B,) int64 codes -> class indices (int64)."""
        return self.code_classes[codes]

    def loss(self, output: Tensor, codes: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, output: Tensor) -> tuple[Tensor, Tensor]:
        """Raw outputs -> (values in natural units, class indices)."""
        classes = output.float().argmax(dim=1)
        return self.class_values[classes], classes

    def class_probabilities(self, output: Tensor) -> Tensor | None:
        """(B, K) class posterior, for heads that model one (None for the others)."""
        return None

    def value_at(self, position: Tensor) -> Tensor:
        """Position along the axis (clamped to the range) -> natural value (the torch twin of
        ParamSpec.at_position)."""
        s = self.spec
        position = position.clamp(0.0, s.extent)
        return s.min * torch.exp2(position) if s.scale == "log" else s.min + position


class ClassificationHead(Head):
    mode = "classification"

    def __init__(self, spec: ParamSpec, in_features: int, label_smoothing: float = 0.0) -> None:
        super().__init__(spec, in_features)
        self.label_smoothing = float(label_smoothing)

    def loss(self, output: Tensor, codes: Tensor) -> Tensor:
        return F.cross_entropy(
            output.float(), self.true_classes(codes), label_smoothing=self.label_smoothing
        )

    def class_probabilities(self, output: Tensor) -> Tensor:
        return torch.softmax(output.float(), dim=1)


class ExpectationHead(ClassificationHead):
    """A classifier whose value is the posterior mean position (the argmax stays its class)."""

    mode = "expectation"

    def decode(self, output: Tensor) -> tuple[Tensor, Tensor]:
        probs = self.class_probabilities(output)
        grid = torch.arange(self.num_classes, device=probs.device, dtype=probs.dtype)
        position = (probs * grid).sum(dim=1) * self.spec.step
        return self.value_at(position), probs.argmax(dim=1)


class OffsetHead(ClassificationHead):
    """K logits and K in-class offsets: the class of a classifier, the value of a regressor
    inside it (a bin-and-residual head, as in keypoint and box estimation)."""

    mode = "offset"

    @property
    def num_outputs(self) -> int:
        return 2 * self.num_classes

    def logits(self, output: Tensor) -> Tensor:
        return output[:, : self.num_classes].float()

    def loss(self, output: Tensor, codes: Tensor) -> Tensor:
        classes = self.true_classes(codes)
        ce = F.cross_entropy(self.logits(output), classes, label_smoothing=self.label_smoothing)
        offset = output[:, self.num_classes :].float().gather(1, classes[:, None])[:, 0]
        return ce + F.l1_loss(offset, self.code_offsets[codes])

    def decode(self, output: Tensor) -> tuple[Tensor, Tensor]:
        classes = self.logits(output).argmax(dim=1)
        offset = output[:, self.num_classes :].float().gather(1, classes[:, None])[:, 0]
        position = (classes + offset.clamp(-0.5, 0.5)) * self.spec.step
        return self.value_at(position), classes

    def class_probabilities(self, output: Tensor) -> Tensor:
        return torch.softmax(self.logits(output), dim=1)


class SoftHead(Head):
    mode = "soft"

    def __init__(self, spec: ParamSpec, in_features: int, sigma: float = 1.0) -> None:
        super().__init__(spec, in_features)
        if sigma <= 0:
            raise ValueError(f"soft_sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def loss(self, output: Tensor, codes: Tensor) -> Tensor:
        target = gaussian_soft_targets(self.true_classes(codes), self.num_classes, self.sigma)
        log_probs = F.log_softmax(output.float(), dim=1)
        return F.kl_div(log_probs, target, reduction="batchmean")

    def class_probabilities(self, output: Tensor) -> Tensor:
        return torch.softmax(output.float(), dim=1)


class CoralLayer(nn.Module):
    """Shared score w.x plus K-1 biases: logits share a slope, so P(y > k) falls with k."""

    def __init__(self, in_features: int, num_thresholds: int) -> None:
        super().__init__()
        self.score = nn.Linear(in_features, 1, bias=False)
        # Descending initial biases start the thresholds ordered and spread over the classes.
        self.bias = nn.Parameter(torch.linspace(1.0, -1.0, num_thresholds))

    def forward(self, features: Tensor) -> Tensor:
        return self.score(features) + self.bias


class OrdinalHead(Head):
    mode = "ordinal"

    @property
    def num_outputs(self) -> int:
        return self.num_classes - 1

    def build_layer(self, in_features: int) -> nn.Module:
        return CoralLayer(in_features, self.num_outputs)

    def loss(self, output: Tensor, codes: Tensor) -> Tensor:
        target = ordinal_targets(self.true_classes(codes), self.num_classes)
        bce = F.binary_cross_entropy_with_logits(output.float(), target, reduction="none")
        return bce.sum(dim=1).mean()

    def decode(self, output: Tensor) -> tuple[Tensor, Tensor]:
        classes = (output.float() > 0).sum(dim=1)
        return self.class_values[classes], classes


class RegressionHead(Head):
    mode = "regression"

    @property
    def num_outputs(self) -> int:
        return 1

    def build_layer(self, in_features: int) -> nn.Module:
        layer = nn.Linear(in_features, 1)
        nn.init.constant_(layer.bias, 0.5)  # start mid-range
        return layer

    def loss(self, output: Tensor, codes: Tensor) -> Tensor:
        """Huber loss on the error in class widths (quadratic within one class), scaled by
        1 / sqrt(class widths): its gradient is sqrt(K - 1) times the error in class widths,
        capped there. Measured on the default task beside classifiers sharing the backbone
        (docs/models.md): a plain MSE on the unit interval hardly trains, the gradient of the
        error in class widths alone trains too little, and K - 1 times it drowns the
        classifiers."""
        widths = float(self.num_classes - 1)
        err = (output.float().squeeze(1) - self.code_units[codes]) * widths
        return F.smooth_l1_loss(err, torch.zeros_like(err), beta=1.0) / widths**0.5

    def decode(self, output: Tensor) -> tuple[Tensor, Tensor]:
        """Unit output -> position along the parameter's axis -> value and nearest class (torch
        twins of ParamSpec.from_unit and class_index)."""
        s = self.spec
        position = output.float().squeeze(1).clamp(0.0, 1.0) * s.extent
        classes = torch.round(position / s.step).long()
        return self.value_at(position), classes.clamp(0, self.num_classes - 1)


HEAD_TYPES: dict[str, type[Head]] = {
    "classification": ClassificationHead,
    "ordinal": OrdinalHead,
    "regression": RegressionHead,
    "soft": SoftHead,
    "expectation": ExpectationHead,
    "offset": OffsetHead,
}


def build_head(
    spec: ParamSpec,
    mode: str,
    in_features: int,
    label_smoothing: float = 0.0,
    soft_sigma: float = 1.0,
) -> Head:
    """The head for `spec` in `mode`, with only the options that mode uses."""
    if mode in ("classification", "expectation", "offset"):
        return HEAD_TYPES[mode](spec, in_features, label_smoothing=label_smoothing)
    if mode == "soft":
        return SoftHead(spec, in_features, sigma=soft_sigma)
    if mode in HEAD_TYPES:
        return HEAD_TYPES[mode](spec, in_features)
    raise ValueError(f"unknown head mode {mode!r}; expected one of {MODES}")


def _f32(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))
