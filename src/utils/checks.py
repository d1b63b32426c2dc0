"""Argument checks shared by constructors, so every one fails with the same kind of message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from src.errors import ConfigError, DataError


def check_choice(name: str, value, options: Iterable):
    """`value` if it is one of `options`, else ValueError naming `name` and the options."""
    options = tuple(options)
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """A (C, H, W) input shape with positive sizes, as ints."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {shape}")
    return shape


def memory_budget(value, key: str = "data.max_memory_gb") -> float:
    """A memory budget in GiB: a finite number >= 0 (0: never hold the splits in memory)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"{key} must be a number of GiB >= 0, got {value!r}")
    if value == float("inf"):
        raise ConfigError(f"{key} must be a finite number of GiB, got {value!r}")
    return float(value)


def dataset_dir(path: str | Path, key: str = "data.data_dir") -> Path:
    """A dataset folder that exists as a folder: a regular file there is named as one (the
    folder is usually its parent)."""
    path = Path(path)
    if path.is_file():
        raise DataError(
            f"{key}={path} is a file, not a dataset folder; give the folder that holds the "
            f"dataset's JSON and split files (e.g. {path.parent})"
        )
    return path
