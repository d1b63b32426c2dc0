"""A search space as config: named parameters, each the config key it sets and its range.

    search:
      params:
        lr: {key: model.optimizer.lr, type: float, low: 1.0e-4, high: 3.0e-2, log: true}
        depth: {key: model.net.depth, type: int, low: 1, high: 4}
        modes: {key: model.head_modes, choices: [classification, ordinal]}
        model: {choices: [cnn_12k, cnn_50k]}      # key defaults to the name: a config group

Names are short (they label the study's parameters, the collector's columns and plots); keys
are dotted config paths or config groups. A trial's values become Hydra overrides
(`key=value`), so a choice may be any value an override can spell (lists included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, ListConfig, OmegaConf

from src.errors import ConfigError
from src.paths import CONFIG_DIR

TYPES = ("float", "int", "categorical")
SCALARS = (bool, int, float, str, type(None))


def override_value(value: Any) -> str:
    """`value` spelled as a Hydra override value (true/false, null, [a,b], quoted strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str) and any(c in value for c in " ,[]{}()='\"\\:"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Param:
    """One searched parameter: `name` in the study, `key` it overrides, and its distribution."""

    name: str
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def __post_init__(self) -> None:
        where = f"search.params.{self.name}"
        if self.type not in TYPES:
            raise ConfigError(f"{where}.type must be one of {TYPES}, got {self.type!r}")
        if self.type == "categorical":
            if not self.choices:
                raise ConfigError(f"{where}: a categorical parameter needs choices: [...]")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ConfigError(f"{where}: needs low < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: log: true needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ConfigError(f"{where}: give log or step, not both")

    @classmethod
    def from_config(cls, name: str, node: Any) -> Param:
        if isinstance(node, (DictConfig, ListConfig)):
            node = OmegaConf.to_container(node, resolve=True)
        if isinstance(node, list):  # shorthand: a list of choices for the key `name`
            node = {"choices": node}
        if not isinstance(node, dict):
            raise ConfigError(f"search.params.{name} must be a mapping, got {node!r}")
        unknown = set(node) - {"key", "type", "low", "high", "log", "step", "choices"}
        if unknown:
            raise ConfigError(f"search.params.{name}: unknown fields {sorted(unknown)}")
        kind = node.get("type", "categorical" if "choices" in node else None)
        if kind is None:
            raise ConfigError(f"search.params.{name}: give type (float, int) or choices")
        choices = tuple(
            c if isinstance(c, SCALARS) else override_value(c) for c in node.get("choices", ())
        )
        return cls(
            name=name,
            key=str(node.get("key", name)),
            type=kind,
            low=node.get("low"),
            high=node.get("high"),
            log=bool(node.get("log", False)),
            step=node.get("step"),
            choices=choices,
        )

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            low, high = int(self.low), int(self.high)
            return trial.suggest_int(self.name, low, high, step=step, log=self.log)
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def override(self, value: Any) -> str:
        return f"{self.key}={value if isinstance(value, str) else override_value(value)}"


def parse_space(params: Any) -> tuple[Param, ...]:
    """`search.params` -> Params, validated."""
    if not params:
        raise ConfigError("search.params is empty: name at least one parameter to search")
    if not isinstance(params, (Mapping, DictConfig)):
        raise ConfigError(f"search.params must be a mapping of named parameters, got {params!r}")
    space = tuple(Param.from_config(str(name), node) for name, node in params.items())
    keys = [p.key for p in space]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"search.params: two parameters set the same key: {sorted(keys)}")
    return space


def check_keys(space: tuple[Param, ...], cfg: DictConfig) -> None:
    """Every key is a config value of `cfg` or a config group with those options, so a typo
    fails before the first trial rather than in every one."""
    missing = object()
    for p in space:
        group = CONFIG_DIR / p.key.replace(".", "/")
        if group.is_dir():
            bad = [c for c in p.choices if not (group / f"{c}.yaml").is_file()]
            if p.type != "categorical" or bad:
                raise ConfigError(
                    f"search.params.{p.name}: config group {p.key} has no options {bad}; "
                    f"it has {sorted(f.stem for f in group.glob('*.yaml'))}"
                )
        elif OmegaConf.select(cfg, p.key, default=missing) is missing:
            raise ConfigError(f"search.params.{p.name}: {p.key} is not a key of the config")
