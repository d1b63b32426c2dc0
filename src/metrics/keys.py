"""Names of logged metrics: `{stage}/{name}` or, per head, `{stage}/{head}/{name}`.

Every place that builds or reads such a key goes through these functions, so the layout is
stated once (callbacks, reports and scripts parse what the modules log).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

STAGES = ("train", "val", "test")


@dataclass(frozen=True)
class MetricKey:
    stage: str
    name: str
    head: str | None = None

    def __str__(self) -> str:
        return metric_key(self.stage, self.name, self.head)


def metric_key(stage: str, name: str, head: str | None = None) -> str:
    """`metric_key("test", "acc", "pitch")` -> "test/pitch/acc"; without a head "test/acc"."""
    return f"{stage}/{name}" if head is None else f"{stage}/{head}/{name}"


def parse_metric_key(key: str) -> MetricKey | None:
    """Inverse of `metric_key`; None for keys of another shape (e.g. "grad/norm/net")."""
    parts = key.split("/")
    if parts[0] not in STAGES or not 2 <= len(parts) <= 3:
        return None
    if len(parts) == 2:
        return MetricKey(parts[0], parts[1])
    return MetricKey(parts[0], parts[2], parts[1])


def head_metrics(metrics: Mapping[str, object], stage: str) -> dict[str, dict[str, float]]:
    """`{head: {name: value}}` of one stage's per-head metrics, in logging order."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        k = parse_metric_key(key)
        if k is not None and k.stage == stage and k.head is not None:
            out.setdefault(k.head, {})[k.name] = float(value)
    return out
