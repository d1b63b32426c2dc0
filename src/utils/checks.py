"""Argument checks shared by constructors, so every one fails with the same kind of message."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


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
