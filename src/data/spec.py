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

    def model_kwargs(self) -> dict:
        """Plain values for a task module's constructor (they end up in its checkpoints)."""
        return {
            "heads": [h.to_dict() for h in self.heads],
            "input_shape": list(self.input_shape),
            "input_kind": self.input_kind,
            "sample_rate": self.sample_rate,
            "train_means": None if self.train_means is None else dict(self.train_means),
        }
