"""The one handoff from data to model: what a network must know about its inputs and labels.

A datamodule knows these facts from its dataset's JSON before reading a record; the model is
built from them (`train.py`: `instantiate(cfg.model, **datamodule.spec.model_kwargs())`), so no
model config restates a dataset fact such as the sample rate.
"""

from __future__ import annotations

from dataclasses import dataclass

from src.data.vimh.format import ParamSpec

INPUT_KINDS = ("image", "audio")


@dataclass(frozen=True)
class DataSpec:
    """Input kind and shape ((C, H, W) images or (1, T) waveforms), sample rate, label heads,
    and each head's mean label over the training records (the skill score's reference)."""

    input_kind: str
    input_shape: tuple[int, ...]
    sample_rate: int | None
    heads: tuple[ParamSpec, ...]
    train_means: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")

    @classmethod
    def from_model_kwargs(cls, kwargs: dict) -> DataSpec:
        """Inverse of `model_kwargs` (e.g. a checkpoint's hyperparameters)."""
        return cls(
            input_kind=kwargs.get("input_kind") or "image",
            input_shape=tuple(int(v) for v in kwargs["input_shape"]),
            sample_rate=kwargs.get("sample_rate"),
            heads=tuple(ParamSpec.from_dict(dict(h)) for h in kwargs["heads"]),
            train_means=kwargs.get("train_means"),
        )

    def differences(self, other: DataSpec) -> list[str]:
        """What a model built for `self` would get wrong on data of spec `other`, one phrase
        each ("<what>: <self> vs <other>"); descriptions and units do not count."""
        out = []
        if self.input_kind != other.input_kind:
            out.append(f"input kind: {self.input_kind} vs {other.input_kind}")
        if tuple(self.input_shape) != tuple(other.input_shape):
            out.append(f"input shape: {tuple(self.input_shape)} vs {tuple(other.input_shape)}")
        if None not in (self.sample_rate, other.sample_rate) and int(self.sample_rate) != int(
            other.sample_rate
        ):
            out.append(f"sample rate: {self.sample_rate} Hz vs {other.sample_rate} Hz")
        names, other_names = [h.name for h in self.heads], [h.name for h in other.heads]
        if names != other_names:
            out.append(f"heads: {names} vs {other_names}")
            return out
        for a, b in zip(self.heads, other.heads, strict=True):
            if a.num_classes != b.num_classes:
                out.append(f"head '{a.name}' classes: {a.num_classes} vs {b.num_classes}")
            for key in ("min", "max", "step", "scale"):
                if getattr(a, key) != getattr(b, key):
                    out.append(f"head '{a.name}' {key}: {getattr(a, key)} vs {getattr(b, key)}")
        return out

    def model_kwargs(self) -> dict:
        """Plain values for a task module's constructor (they end up in its checkpoints)."""
        return {
            "heads": [h.to_dict() for h in self.heads],
            "input_shape": list(self.input_shape),
            "input_kind": self.input_kind,
            "sample_rate": self.sample_rate,
            "train_means": None if self.train_means is None else dict(self.train_means),
        }

    def describe(self) -> str:
        """One line for the log: input kind and shape, and the heads."""
        heads = ", ".join(f"{p.name} ({p.num_classes} classes)" for p in self.heads)
        return f"{self.input_kind} input {tuple(self.input_shape)}, heads {heads}"


# What defines a frame of a sequence dataset: compared between a checkpoint and a dataset.
FRAME_FACTS = (
    "sample_rate",
    "hop_length",
    "height",
    "kind",
    "scale",
    "n_fft",
    "f_min",
    "f_max",
    "db_min",
    "db_max",
    "window",
)


@dataclass(frozen=True)
class FrameSpec:
    """The handoff of the sequence task: frames of one power channel as unit log-mel.

    `frames` holds `FRAME_FACTS` (how a frame was made: rate, hop, mel bands, dB range), so a
    model can be rebuilt, its metrics placed on frequencies and its frames heard again;
    `context` and `horizon` are the window the data serves (frames given, frames predicted);
    `frame_mean` is the mean training frame (the mean-frame baseline: the mean linear power,
    as unit log-mel), None without a train split. Frame sequences carry no heads.
    """

    frames: dict
    context: int
    horizon: int
    frame_mean: tuple[float, ...] | None = None
    input_kind = "frames"  # class attributes, not fields: what train.py reads of any spec
    heads = ()

    def __post_init__(self) -> None:
        missing = [k for k in FRAME_FACTS if k not in self.frames]
        if missing:
            raise ValueError(f"frames lacks {missing}")
        if self.context < 1 or self.horizon < 1:
            raise ValueError(
                f"context and horizon must be >= 1, got {self.context}, {self.horizon}"
            )
        if self.frame_mean is not None and len(self.frame_mean) != self.frames["height"]:
            raise ValueError(
                f"frame_mean has {len(self.frame_mean)} bins, frames have {self.frames['height']}"
            )

    @property
    def n_mels(self) -> int:
        return int(self.frames["height"])

    @property
    def sample_rate(self) -> int:
        return int(self.frames["sample_rate"])

    @property
    def input_shape(self) -> tuple[int, int]:
        """(window frames, bins)."""
        return (self.context + self.horizon, self.n_mels)

    @classmethod
    def from_model_kwargs(cls, kwargs: dict) -> FrameSpec:
        mean = kwargs.get("frame_mean")
        return cls(
            frames=dict(kwargs["frames"]),
            context=int(kwargs["context"]),
            horizon=int(kwargs["horizon"]),
            frame_mean=None if mean is None else tuple(float(v) for v in mean),
        )

    def model_kwargs(self) -> dict:
        return {
            "frames": dict(self.frames),
            "context": self.context,
            "horizon": self.horizon,
            "frame_mean": None if self.frame_mean is None else list(self.frame_mean),
        }

    def differences(self, other: FrameSpec) -> list[str]:
        """How frames of `other` differ from these ("<fact>: <self> vs <other>"); the window
        (context, horizon) may differ: a model runs on any length."""
        return [
            f"{k}: {self.frames[k]} vs {other.frames.get(k)}"
            for k in FRAME_FACTS
            if self.frames[k] != other.frames.get(k)
        ]

    def describe(self) -> str:
        f = self.frames
        return (
            f"frames of {f['height']} {f['scale']} bins every {f['hop_length']} samples at "
            f"{f['sample_rate']} Hz; windows of {self.context} + {self.horizon} frames"
        )
