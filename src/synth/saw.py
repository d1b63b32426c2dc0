"""Band-limited sawtooth with a decaying envelope.

The PolyBLEP correction is written in closed form on the signed distance to the nearest
phase wrap, so the whole oscillator is a handful of in-place float32 ops per sample and no
branches; the batch is processed in small chunks so the working set stays in cache.
"""

from __future__ import annotations

import torch

from src.synth.base import (
    Notes,
    Synth,
    apply_attack_,
    block_phase,
    db_to_amp,
    envelope_factors,
    midi_to_hz,
)

__all__ = ["SawSynth", "half_saw4_", "half_saw_", "half_saw_any_", "pick_block", "polyblep_saw"]


def half_saw_(x: torch.Tensor, inv_inc: torch.Tensor, c: torch.Tensor, a: torch.Tensor) -> None:
    """Turn a phase ramp ``x`` (cycles, any integer offset) into half a PolyBLEP saw, in place.

    With d = x - round(x) (distance to the nearest wrap, in cycles) and c = clamp(d / inc,
    -1, 1), the two-sample PolyBLEP saw is exactly ``2 d - c (2 - |c|)``: naive ``2 p - 1``
    with the polynomial step residual subtracted. This writes half of it (range [-0.5, 0.5])
    so callers can fold the factor 2 into a gain they apply anyway. ``inv_inc`` (1 / cycles
    per sample) broadcasts against ``x``; ``c`` and ``a`` are scratch tensors shaped like x.
    """
    torch.round(x, out=c)
    x.sub_(c)
    torch.mul(x, inv_inc, out=c).clamp_(-1.0, 1.0)
    torch.abs(c, out=a).sub_(2.0)
    x.addcmul_(c, a, value=0.5)


def pick_block(n_samples: int, preferred: int = 64) -> int:
    """Block length for the phase/envelope factorisation: a divisor of n_samples near 64.

    A divisor avoids a padded buffer and a copy; if none is near, fall back to padding.
    """
    for delta in range(0, preferred // 2):
        for cand in (preferred + delta, preferred - delta):
            if cand > 0 and n_samples % cand == 0:
                return cand
    return preferred


def half_saw4_(
    x: torch.Tensor, inv_inc: torch.Tensor, c: torch.Tensor, a: torch.Tensor, f: torch.Tensor
) -> None:
    """Like ``half_saw_`` but with a 4-sample cubic B-spline BLEP (about 9 dB less aliasing).

    The residual of the integrated cubic B-spline is ``sign(c) (1 - ((2-|c|)^4 - 4 (1-|c|)_+^4)
    / 12)`` with c the distance to the wrap in samples clamped to [-2, 2]; it costs ~2.5x the
    ops of the 2-sample version and rolls off the top octave a bit more. Needs f0 < sr / 4
    for the corrections of neighbouring wraps not to overlap.
    """
    torch.round(x, out=c)
    x.sub_(c)
    torch.mul(x, inv_inc, out=c).clamp_(-2.0, 2.0)
    torch.abs(c, out=a)
    torch.sub(a, 1.0, out=f).clamp_max_(0.0)
    a.sub_(2.0)
    a.square_().square_()
    f.square_().square_()
    a.sub_(f, alpha=4.0)
    c.sign_()
    x.sub_(c, alpha=0.5)
    x.addcmul_(c, a, value=1.0 / 24.0)


def half_saw_any_(
    x: torch.Tensor, inv_inc: torch.Tensor, scratch: list[torch.Tensor], points: int
) -> None:
    """Dispatch to the 2- or 4-point half saw; ``scratch`` holds 2 or 3 buffers shaped like x."""
    if points == 2:
        half_saw_(x, inv_inc, scratch[0], scratch[1])
    elif points == 4:
        half_saw4_(x, inv_inc, scratch[0], scratch[1], scratch[2])
    else:
        raise ValueError(f"blep_points must be 2 or 4, got {points}")


def polyblep_saw(
    freq: torch.Tensor,
    phase0: torch.Tensor,
    sample_rate: float,
    n_samples: int,
    *,
    start: int = 0,
    time_major: bool = False,
    blep_points: int = 2,
) -> torch.Tensor:
    """Unit-amplitude band-limited saw for samples ``start .. start + n_samples``.

    ``freq`` (Hz) and ``phase0`` (cycles at sample 0) are (B,) tensors. Returns float32 of
    shape (B, n) or, with ``time_major``, (n, B) as needed by sample-recursive filters.
    """
    freq = freq.to(torch.float64)
    ph = phase0.to(torch.float64) + start * (freq / sample_rate)
    inv_inc = (sample_rate / freq.clamp_min(1e-9)).to(torch.float32)
    block = pick_block(n_samples)
    n_blocks = -(-n_samples // block)
    start_ph, ramp = block_phase(freq, ph, sample_rate, n_blocks, block)
    if time_major:
        x = start_ph.t()[:, None, :] + ramp.t()[None, :, :]
        x = x.reshape(n_blocks * block, -1)[:n_samples]
        inv = inv_inc[None, :]
    else:
        x = start_ph[:, :, None] + ramp[:, None, :]
        x = x.reshape(-1, n_blocks * block)[:, :n_samples]
        inv = inv_inc[:, None]
    x = x.contiguous()
    scratch = [torch.empty_like(x) for _ in range(blep_points // 2 + 1)]
    half_saw_any_(x, inv, scratch, blep_points)
    return x.mul_(2.0)


class SawSynth(Synth):
    """PolyBLEP sawtooth with a dB level, a linear-in-dB decay and a raised-cosine attack.

    Args:
        chunk_size: records processed together; small chunks keep ~3 buffers of
            chunk_size * n_samples floats in L2 cache, which is ~2x faster than whole-batch ops.
        blep_points: 2 (PolyBLEP, fastest) or 4 (cubic B-spline BLEP, ~9 dB less aliasing
            at ~1.6x the render time).
    """

    param_names = ("pitch", "level", "decay", "attack")

    def __init__(self, *, chunk_size: int = 16, blep_points: int = 2) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if blep_points not in (2, 4):
            raise ValueError(f"blep_points must be 2 or 4, got {blep_points}")
        self.chunk_size = chunk_size
        self.blep_points = blep_points

    def _render(self, notes: Notes) -> torch.Tensor:
        p, sample_rate, n_samples, batch = notes.p, notes.sample_rate, notes.n_samples, notes.batch
        phase0 = notes.start_phases()[:, 0]
        freq = midi_to_hz(p["pitch"])
        block = pick_block(n_samples)
        n_blocks = -(-n_samples // block)
        padded = n_blocks * block
        start, ramp = block_phase(freq, phase0, sample_rate, n_blocks, block)
        inv_inc = (sample_rate / freq.clamp_min(1e-9)).to(torch.float32)[:, None]
        # Factor 2 of the half-saw folded into the envelope gain.
        gain, fine = envelope_factors(
            2.0 * db_to_amp(p["level"]), p["decay"], sample_rate, n_blocks, block
        )
        out = torch.empty(batch, padded, dtype=torch.float32, device=start.device)
        out3 = out.view(batch, n_blocks, block)
        chunk = max(1, min(self.chunk_size, batch))
        scratch = [
            torch.empty(chunk, padded, dtype=torch.float32, device=start.device)
            for _ in range(self.blep_points // 2 + 1)
        ]
        for s in range(0, batch, chunk):
            e = min(s + chunk, batch)
            x3 = out3[s:e]
            torch.add(start[s:e, :, None], ramp[s:e, None, :], out=x3)
            half_saw_any_(out[s:e], inv_inc[s:e], [b[: e - s] for b in scratch], self.blep_points)
            x3.mul_(gain[s:e, :, None]).mul_(fine[s:e, None, :])
        if padded != n_samples:
            out = out[:, :n_samples].contiguous()
        return apply_attack_(out, p["attack"], sample_rate)
