"""Common interface and shared building blocks for the batch synthesizers.

Every synth renders a whole batch of notes at once from a dict of per-record parameter
tensors, so that dataset generation is limited by arithmetic rather than Python overhead.
Per-record scalars are handled in float64 (cheap, shape (B,)); per-sample work is float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "Notes",
    "Randomness",
    "Synth",
    "apply_attack_",
    "block_phase",
    "db_to_amp",
    "decay_envelope_",
    "envelope_factors",
    "midi_to_hz",
    "soft_limit_",
]

_LN10_OVER_20 = math.log(10.0) / 20.0
# Exponent floor (natural log) for envelopes: far below audibility (-260 dB) but keeps
# float32 products out of the denormal range, where CPU arithmetic becomes very slow.
_MIN_LOG_GAIN = -30.0


@dataclass(frozen=True)
class Randomness:
    """Where a batch's per-record randomness comes from: a generator and, optionally, which
    records share one draw (`groups[b]` = the draw record b uses). Identifiability sweeps share
    draws across a parameter's classes, so their differences are the label's alone."""

    generator: torch.Generator
    groups: torch.Tensor | None = None

    def rand(self, batch: int, *tail: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(batch, *tail) uniform [0, 1) draws, one per record (or per group)."""
        n = batch if self.groups is None else int(self.groups.max()) + 1
        dev = self.generator.device
        x = torch.rand(n, *tail, generator=self.generator, dtype=dtype, device=dev)
        return x if self.groups is None else x[self.groups]

    def randint(self, high: int, batch: int) -> torch.Tensor:
        n = batch if self.groups is None else int(self.groups.max()) + 1
        x = torch.randint(0, high, (n,), generator=self.generator, device=self.generator.device)
        return x if self.groups is None else x[self.groups]


@dataclass(frozen=True)
class Notes:
    """One checked batch to render: (B,) float64 parameters in natural units (``p``), the
    output rate and length, and the render's only randomness."""

    p: dict[str, torch.Tensor]
    sample_rate: int
    n_samples: int
    random: Randomness

    @property
    def batch(self) -> int:
        return next(iter(self.p.values())).shape[0]

    def start_phases(self, n: int = 1) -> torch.Tensor:
        """(B, n) uniform start phases in cycles, float64."""
        return self.random.rand(self.batch, n, dtype=torch.float64)


class Synth:
    """Base class: a synth maps per-record parameters (natural units) to a batch of audio.

    Subclasses set ``param_names`` and implement ``_render``; ``render`` validates the
    parameters first, so every synth fails the same way on malformed input.
    """

    param_names: tuple[str, ...] = ()

    def render(
        self,
        values: dict[str, torch.Tensor],
        sample_rate: int,
        n_samples: int,
        generator: torch.Generator | Randomness,
    ) -> torch.Tensor:
        """Render float32 audio of shape (B, n_samples); ``generator`` is the only randomness.

        ``values`` maps every name in ``param_names`` to a (B,) tensor in natural units; they
        are checked here, once for all synths, then handed to ``_render`` as float64.
        """
        p = self._params(values, sample_rate, n_samples)
        if isinstance(generator, torch.Generator):
            generator = Randomness(generator)
        return self._render(Notes(p, int(sample_rate), int(n_samples), generator))

    def _render(self, notes: Notes) -> torch.Tensor:
        """The synth itself: checked notes -> (B, n_samples) float32 audio."""
        raise NotImplementedError

    def _params(
        self, values: dict[str, torch.Tensor], sample_rate: int, n_samples: int
    ) -> dict[str, torch.Tensor]:
        """Check presence and shapes of all parameters; return them as float64 (B,) tensors."""
        missing = [name for name in self.param_names if name not in values]
        if missing:
            raise KeyError(
                f"{type(self).__name__} is missing parameter(s) {missing}; "
                f"it requires {list(self.param_names)}"
            )
        if sample_rate <= 0 or n_samples <= 0:
            raise ValueError(
                f"sample_rate and n_samples must be positive, got {sample_rate}, {n_samples}"
            )
        out: dict[str, torch.Tensor] = {}
        batch: int | None = None
        for name in self.param_names:
            v = torch.as_tensor(values[name])
            if v.ndim != 1:
                raise ValueError(
                    f"{type(self).__name__}: parameter '{name}' must have shape (B,), "
                    f"got {tuple(v.shape)}"
                )
            if batch is None:
                batch = v.shape[0]
            elif v.shape[0] != batch:
                raise ValueError(
                    f"{type(self).__name__}: parameter '{name}' has batch size {v.shape[0]}, "
                    f"expected {batch}"
                )
            out[name] = v.to(torch.float64)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={list(self.param_names)})"


def midi_to_hz(note: torch.Tensor) -> torch.Tensor:
    """Equal-tempered MIDI note number (float) to frequency in Hz, A4 = 69 = 440 Hz."""
    return 440.0 * torch.exp2((note - 69.0) / 12.0)


def db_to_amp(db: torch.Tensor) -> torch.Tensor:
    """Level in dB re full scale to a linear amplitude factor."""
    return torch.exp(db * _LN10_OVER_20)


def block_phase(
    freq: torch.Tensor, phase0: torch.Tensor, sample_rate: float, n_blocks: int, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split an oscillator phase ramp into coarse block starts and a fine in-block ramp.

    Phase (in cycles) at sample ``k * block + j`` is ``start[:, k] + ramp[:, j]``. The block
    starts are reduced modulo 1 in float64, so the float32 sum stays small and exact to ~1e-6
    cycles for any note length (a plain float32 ``n * inc`` loses ~1e-4 cycles by n = 8000).
    Returns ``start`` (B, n_blocks) and ``ramp`` (B, block), both float32.
    """
    inc = freq.to(torch.float64) / sample_rate
    k = torch.arange(n_blocks, dtype=torch.float64, device=inc.device) * block
    start = torch.addcmul(phase0.to(torch.float64)[:, None], k[None, :], inc[:, None])
    start = start - torch.floor(start)
    j = torch.arange(block, dtype=torch.float32, device=inc.device)
    ramp = inc.to(torch.float32)[:, None] * j[None, :]
    return start.to(torch.float32), ramp


def envelope_factors(
    amp: torch.Tensor,
    decay_db_per_s: torch.Tensor,
    sample_rate: float,
    n_blocks: int,
    block: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor amp * 10**(-decay*t/20) into per-block gains (B, n_blocks) and an in-block decay.

    The envelope at sample ``k * block + j`` is ``gain[:, k] * fine[:, j]``: two broadcast
    multiplies instead of an exp per sample. Both are float32.
    """
    rate = decay_db_per_s.to(torch.float64).clamp_min(0.0) * _LN10_OVER_20 / sample_rate
    k = torch.arange(n_blocks, dtype=torch.float64, device=rate.device) * block
    log_block = (-rate[:, None] * k[None, :]).clamp_min(_MIN_LOG_GAIN)
    gain = (log_block.exp() * amp.to(torch.float64)[:, None]).to(torch.float32)
    j = torch.arange(block, dtype=torch.float64, device=rate.device)
    fine = torch.exp(-rate[:, None] * j[None, :]).to(torch.float32)
    return gain, fine


def decay_envelope_(
    audio: torch.Tensor,
    amp: torch.Tensor,
    decay_db_per_s: torch.Tensor,
    attack_s: torch.Tensor,
    sample_rate: float,
    block: int = 64,
) -> torch.Tensor:
    """Multiply ``audio`` (B, T) in place by amp * 10**(-decay*t/20) and an attack fade-in."""
    b, t = audio.shape
    n_blocks = -(-t // block)
    gain, fine = envelope_factors(amp, decay_db_per_s, sample_rate, n_blocks, block)
    head = (t // block) * block
    if head:
        view = audio[:, :head].view(b, head // block, block)
        view.mul_(gain[:, : head // block, None]).mul_(fine[:, None, :])
    if head < t:
        audio[:, head:].mul_(gain[:, -1:]).mul_(fine[:, : t - head])
    apply_attack_(audio, attack_s, sample_rate)
    return audio


def apply_attack_(audio: torch.Tensor, attack_s: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Raised-cosine fade-in over ``attack_s`` seconds per record (in place), to avoid clicks."""
    att = attack_s.to(torch.float64).clamp_min(0.0) * sample_rate
    n_att = min(math.ceil(float(att.max())) if att.numel() else 0, audio.shape[-1])
    if n_att <= 0:
        return audio
    n = torch.arange(n_att, dtype=torch.float64, device=audio.device)
    # Records without an attack get a unit ramp; the others start from silence at n = 0.
    x = torch.where(att[:, None] > 0, n[None, :] / att.clamp_min(1e-12)[:, None], 1.0)
    x = x.clamp_max(1.0)
    ramp = (0.5 - 0.5 * torch.cos(math.pi * x)).to(torch.float32)
    audio[:, :n_att].mul_(ramp)
    return audio


def soft_limit_(
    audio: torch.Tensor,
    threshold: float = 0.9,
    ceiling: float = 1.0,
    peak: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bound (B, T) audio to [-ceiling, ceiling] in place: identity below threshold * ceiling.

    Above the knee the excess is replaced by a tanh curve (C1, never reaching the ceiling).
    Only rows whose peak exceeds the knee are touched, so the usual case costs one
    reduction (none when the caller knows each row's largest magnitude, ``peak``); it exists
    for rare resonant/overshooting corner cases, not as a level control.
    """
    if not 0.0 < threshold < 1.0 or ceiling <= 0.0:
        raise ValueError(f"need 0 < threshold < 1 and ceiling > 0, got {threshold}, {ceiling}")
    knee_at = threshold * ceiling
    if peak is None:
        peak = audio.abs().amax(dim=1)
    rows = torch.nonzero(peak > knee_at).flatten()
    if rows.numel() == 0:
        return audio
    x = audio.index_select(0, rows)
    knee = ceiling - knee_at
    mag = x.abs()
    limited = torch.tanh((mag - knee_at) / knee).mul_(knee).add_(knee_at)
    x = torch.where(mag > knee_at, torch.copysign(limited, x), x).clamp_(-ceiling, ceiling)
    audio.index_copy_(0, rows, x)
    return audio
