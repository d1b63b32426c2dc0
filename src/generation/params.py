"""Synth parameter configs -> label specs, and seeded, exact label sampling.

A parameter config entry reads `{min, max, step, scale, default, sampling, unit, description}`.
`sampling` is `grid` (uniform over the step classes), `continuous` (uniform over the 256 code
levels, which are spaced evenly along the parameter's axis: log-uniform for `scale: log`) or
`fixed` (always `default`). A parameter with
`min == max` is fixed too. Fixed parameters are not labels: they go to `fixed_parameters`.

Labels are exact: a record's audio is rendered from the value its 8-bit code decodes to, so
what the model is asked to predict is what made the sound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from src.data.vimh.format import CODE_LEVELS, ParamSpec
from src.errors import ConfigError

SAMPLING = ("grid", "continuous", "fixed")


@dataclass(frozen=True)
class SynthParam:
    spec: ParamSpec
    default: float
    sampling: str

    @property
    def varying(self) -> bool:
        return self.sampling != "fixed"


def parse_params(params: Mapping[str, Mapping]) -> list[SynthParam]:
    """Build SynthParams from a `synth.params` config mapping (order kept: it is the id order)."""
    out = []
    for name, p in params.items():
        where = f"synth.params.{name}"
        missing = [k for k in ("min", "max") if k not in p]
        if missing:
            raise ConfigError(f"{where}: missing {missing}")
        lo, hi = float(p["min"]), float(p["max"])
        if lo > hi:
            raise ConfigError(f"{where}: min ({lo}) is above max ({hi})")
        default = float(p.get("default", lo))
        sampling = str(p.get("sampling", "grid"))
        if sampling not in SAMPLING:
            raise ConfigError(f"{where}.sampling: expected one of {SAMPLING}, got {sampling!r}")
        if not lo <= default <= hi:
            raise ConfigError(f"{where}.default: {default} is outside [{lo}, {hi}]")
        if lo == hi:
            sampling = "fixed"
        try:
            spec = ParamSpec(
                name=name,
                min=lo,
                max=hi,
                step=float(p.get("step", 0.0)) if sampling != "fixed" else 0.0,
                scale=str(p.get("scale", "linear")),
                description=str(p.get("description", "")),
                unit=str(p.get("unit", "")),
            )
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from e
        if sampling != "fixed":
            try:
                spec.check_step_divides()
                spec.check_codes_exact()
            except ValueError as e:
                raise ConfigError(f"{where}: {e}") from e
        out.append(SynthParam(spec=spec, default=default, sampling=sampling))
    return out


def fixed_parameters(params: list[SynthParam]) -> dict[str, dict]:
    """The JSON `fixed_parameters` entry: value and description of every non-label parameter."""
    return {
        p.spec.name: {"value": p.default, "description": p.spec.description}
        for p in params
        if not p.varying
    }


def sample_codes(params: list[SynthParam], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, P) uint8 codes for the varying parameters, vectorized per parameter."""
    varying = [p for p in params if p.varying]
    codes = np.empty((n, len(varying)), dtype=np.uint8)
    for i, p in enumerate(varying):
        if p.sampling == "grid":
            codes[:, i] = p.spec.class_code(rng.integers(0, p.spec.num_classes, n))
        else:  # every code equally likely: uniform along the axis (log-uniform for log scale)
            codes[:, i] = rng.integers(0, CODE_LEVELS + 1, n, dtype=np.uint8)
    return codes


def values_from_codes(params: list[SynthParam], codes: np.ndarray) -> dict[str, np.ndarray]:
    """Natural values for every parameter (varying: decoded from codes; fixed: constant)."""
    n = len(codes)
    out, j = {}, 0
    for p in params:
        if p.varying:
            out[p.spec.name] = p.spec.decode(codes[:, j])
            j += 1
        else:
            out[p.spec.name] = np.full(n, p.default)
    return out


def synth_heads(name: str) -> tuple[ParamSpec, ...]:
    """The label heads of `configs/synth/<name>.yaml` (its varying parameters, in order): what a
    dataset of that synth is trained on, known without generating it."""
    from omegaconf import OmegaConf

    from src.paths import CONFIG_DIR

    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "synth" / f"{name}.yaml"))
    return tuple(p.spec for p in parse_params(cfg["params"]) if p.varying)
