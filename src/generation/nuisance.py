"""Unlabelled per-record randomness: what makes two records with the same labels differ.

A model must learn the labels through these, as it would on recordings: the note starts a
little late, its attack is softer or harder, a noise floor sits under it, it is slightly out of
tune. Each is drawn per record from the batch's generator (so generation stays seeded and
exact), configured under `nuisance:` in configs/generate.yaml and stored in the dataset's JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from src.errors import ConfigError
from src.synth.base import Randomness


def _range(cfg: Mapping, key: str, positive: bool = False) -> tuple[float, float] | None:
    value = cfg.get(key)
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"nuisance.{key} must be [low, high] or null, got {value!r}") from None
    if lo > hi:
        raise ConfigError(f"nuisance.{key}: low ({lo}) is above high ({hi})")
    if (positive and lo <= 0) or (key != "noise_db" and lo < 0):
        raise ConfigError(f"nuisance.{key}: low must be {'> 0' if positive else '>= 0'}, got {lo}")
    return (lo, hi)


@dataclass(frozen=True)
class Nuisance:
    """`onset_ms`: note start delay, uniform in [low, high] ms (the note's end is cut by as
    much). `attack_ms`: attack time, log-uniform, where attack is not a label. `noise_db`: a
    white noise floor, uniform in [low, high] dB relative to the note's peak. `detune_cents`:
    a pitch offset, uniform in +-cents, where the synth has a pitch."""

    onset_ms: tuple[float, float] | None = None
    attack_ms: tuple[float, float] | None = None
    noise_db: tuple[float, float] | None = None
    detune_cents: float = 0.0

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> Nuisance:
        cfg = dict(cfg or {})
        unknown = set(cfg) - {"onset_ms", "attack_ms", "noise_db", "detune_cents"}
        if unknown:
            raise ConfigError(f"nuisance: unknown keys {sorted(unknown)}")
        detune = float(cfg.get("detune_cents") or 0.0)
        if detune < 0:
            raise ConfigError(f"nuisance.detune_cents must be >= 0, got {detune}")
        return cls(
            onset_ms=_range(cfg, "onset_ms"),
            attack_ms=_range(cfg, "attack_ms", positive=True),
            noise_db=_range(cfg, "noise_db"),
            detune_cents=detune,
        )

    def describe(self) -> dict:
        return asdict(self)

    def adjust_values(
        self,
        values: dict[str, torch.Tensor],
        labelled: set[str],
        random: Randomness,
        record: dict | None = None,
    ) -> None:
        """Detune the pitch and draw the attack (unless it is a label), in place; `record`
        (if given) receives the draws: `detune_cents`, `attack_s`."""
        b = len(next(iter(values.values())))
        if self.detune_cents and "pitch" in values:
            cents = (2 * random.rand(b) - 1) * self.detune_cents
            values["pitch"] = values["pitch"] + cents / 100.0
            if record is not None:
                record["detune_cents"] = cents
        if self.attack_ms is not None and "attack" in values and "attack" not in labelled:
            lo, hi = (math.log(v) for v in self.attack_ms)
            values["attack"] = torch.exp(lo + (hi - lo) * random.rand(b)) / 1000.0
            if record is not None:
                record["attack_s"] = values["attack"]

    def adjust_audio(
        self, audio: torch.Tensor, sample_rate: int, random: Randomness, record: dict | None = None
    ) -> torch.Tensor:
        """Delay each note's onset and add its noise floor; (B, T) in, (B, T) out; `record`
        (if given) receives the draws: `onset_s`, `noise_db`."""
        b, t = audio.shape
        delay = factor = bank = starts = None
        if self.onset_ms is not None:
            lo, hi = (v * sample_rate / 1000.0 for v in self.onset_ms)
            delay = (lo + (hi - lo) * random.rand(b)).round().long()
            if record is not None:
                record["onset_s"] = delay.double() / sample_rate
        if self.noise_db is not None:
            lo, hi = self.noise_db
            db = lo + (hi - lo) * random.rand(b, dtype=torch.float64)
            if record is not None:
                record["noise_db"] = db
            factor = torch.pow(10.0, db / 20.0)
            bank, starts = noise_draws((b, t), random)
        if delay is None and factor is None:
            return audio
        from src.generation.nuisance_kernel import delay_and_noise_  # numba: not at startup

        shift = torch.zeros(b, dtype=torch.long) if delay is None else delay.clamp(0, t)
        threads = torch.get_num_threads()
        if delay_and_noise_(audio, shift, factor, bank, starts, threads):
            return audio  # the compiled pass; below, the same in torch
        if delay is not None:
            audio = delayed(audio, delay)
        if factor is not None:
            low, high = torch.aminmax(audio, dim=1)  # the peak without an abs() copy
            peak = torch.maximum(high, -low).double()
            gain = (peak * factor).float()[:, None]
            audio = audio.addcmul_(bank.unfold(0, t, 1)[starts], gain)
        return audio


def delayed(audio: torch.Tensor, delay: torch.Tensor) -> torch.Tensor:
    """Shift row b of (B, T) audio right by delay[b] samples (zeros before, the end cut).

    One left-padded copy, then each row's window picked from its sliding windows: two passes
    over the batch and no (B, T) index tensor.
    """
    b, t = audio.shape
    delay = delay.clamp(0, t)
    most = int(delay.max()) if b else 0
    padded = audio.new_zeros(b, most + t)
    padded[:, most:] = audio
    return padded.unfold(1, t, 1)[torch.arange(b), most - delay]


NOISE_BANK = 1 << 18


def noise_draws(shape: tuple[int, int], random: Randomness) -> tuple[torch.Tensor, torch.Tensor]:
    """White noise for (B, T) notes: a shared unit-variance Gaussian bank and each row's start
    in it (row b's noise is ``bank[starts[b]:][:T]``).

    Drawing B*T normals dominated the cost of a batch; B windows of a 256k-sample bank give
    every record its own noise realisation for the price of a gather.
    """
    b, t = shape
    bank = torch.randn(NOISE_BANK + t, generator=random.generator)
    return bank, random.randint(NOISE_BANK, b)


def noise_windows(shape: tuple[int, int], random: Randomness) -> torch.Tensor:
    """(B, T) unit-variance white noise, the windows of ``noise_draws``."""
    bank, starts = noise_draws(shape, random)
    return bank.unfold(0, shape[1], 1)[starts]
