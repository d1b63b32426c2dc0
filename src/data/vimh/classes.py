"""Nominal (categorical) labels in VIMH: class indices as 8-bit codes and a class-name table.

A VIMH label is a number on an axis. A categorical label (a word, a sound event, a speaker) is
stored as its class index k in 0..K-1: a parameter with `min: 0`, `max: K - 1`, `step: 1` and
`unit: "class"`, which marks it nominal (its order means nothing), and the names under the
JSON key `class_names` (`{head: [name of class 0, name of class 1, ...]}`, our addition; see
docs/vimh.md). An 8-bit code holds at most 256 classes: a head with more is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from src.data.vimh.format import CODE_LEVELS, ParamSpec, VIMHFormatError

CLASS_NAMES_KEY = "class_names"
NOMINAL_UNIT = "class"  # the unit that marks a head as nominal (class indices, no order)
MAX_CLASSES = CODE_LEVELS + 1  # one 8-bit code per class


def is_nominal(spec: ParamSpec) -> bool:
    """A head whose values are class indices with no order (metrics treat it as such)."""
    return spec.unit == NOMINAL_UNIT


def categorical_spec(name: str, n_classes: int, description: str = "") -> ParamSpec:
    """The parameter of a categorical label with `n_classes` classes (2..256)."""
    if not 2 <= n_classes <= MAX_CLASSES:
        raise ValueError(
            f"label '{name}': {n_classes} classes; a categorical head needs 2 to {MAX_CLASSES} "
            f"(one 8-bit code per class)"
        )
    return ParamSpec(
        name=name,
        min=0.0,
        max=float(n_classes - 1),
        step=1.0,
        description=description or f"class index into {CLASS_NAMES_KEY}['{name}']",
        unit=NOMINAL_UNIT,
    )


def nearest_codes(spec: ParamSpec, values: np.ndarray) -> np.ndarray:
    """uint8 codes nearest to `values` (natural units, within [min, max]).

    Rounding, not the format's floor: a reader decodes either the same way, and the nearest
    code is half a level from the value at most. For a categorical head (K <= 256 classes, step
    1) that error is below half a class, so every class index decodes back to itself."""
    position = spec.position(values) / spec.extent
    return np.clip(np.rint(CODE_LEVELS * position), 0, CODE_LEVELS).astype(np.uint8)


def parse_class_names(
    raw: Mapping, params: Sequence[ParamSpec], path: Path | str
) -> dict[str, tuple[str, ...]]:
    """The validated `class_names` table of a dataset JSON ({} when it has none): each entry
    names a head of the dataset whose classes are 0..K-1, with K distinct strings."""
    table = raw.get(CLASS_NAMES_KEY)
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise VIMHFormatError(f"{path}: key '{CLASS_NAMES_KEY}' must be an object {{head: [names]}}")
    specs = {p.name: p for p in params}
    out = {}
    for head, names in table.items():
        where = f"{path}: {CLASS_NAMES_KEY}['{head}']"
        spec = specs.get(head)
        if spec is None:
            raise VIMHFormatError(f"{where}: no such labelled parameter ({sorted(specs)})")
        if (spec.min, spec.step) != (0.0, 1.0) or spec.scale != "linear":
            raise VIMHFormatError(
                f"{where}: a class-name table needs a parameter of class indices (min 0, step "
                f"1, linear), got min {spec.min}, step {spec.step}, scale {spec.scale}"
            )
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise VIMHFormatError(f"{where}: must be a list of strings")
        if len(names) != spec.num_classes or len(set(names)) != len(names):
            raise VIMHFormatError(
                f"{where}: expected {spec.num_classes} distinct names (one per class), got "
                f"{len(names)} ({len(set(names))} distinct)"
            )
        out[head] = tuple(names)
    return out
