"""Sawtooth through a nonlinear 4-pole Moog-style ladder with an ADSR on the cutoff.

The ladder is a zero-delay-feedback (topology-preserving transform) cascade of four one-pole
low-passes. Each sample the linear feedback equation is solved in closed form and the
filter input is then saturated with tanh; the trapezoidal one-poles are stable for any
positive cutoff and tanh bounds the drive, so the filter is stable for every cutoff and
resonance at 8 kHz without oversampling. Everything that does not depend on the filter
state (oscillator, envelopes, coefficients) is computed vectorised over time blocks; only the
sample loop is sequential. It has two implementations that agree to float rounding
(tests/test_ladder_kernel.py): the numba kernel of ``src.synth.ladder_kernel`` serves every
CPU render (generation, evaluation by resynthesis, CMA-ES refinement); the torch loop
``ladder_loop`` (13 in-place batch-wide ops per step, several times slower on a CPU) serves
GPU tensors and machines without numba. Neither is differentiable (the synth writes into
preallocated buffers), so refinement searches the Moog without gradients
(src/matching/diffsynth.py).
"""

from __future__ import annotations

import math

import torch

from src.synth.base import (
    Notes,
    Synth,
    block_phase,
    db_to_amp,
    decay_envelope_,
    midi_to_hz,
    soft_limit_,
)
from src.synth.saw import half_saw_any_
from src.utils.threads import intra_op_threads

__all__ = ["MoogSynth", "ladder_loop"]

_LN2_OVER_12 = math.log(2.0) / 12.0
_MIN_CUTOFF_HZ = 10.0


def ladder_loop(
    g: torch.Tensor,
    x: torch.Tensor,
    ka: torch.Tensor,
    out: torch.Tensor,
    state: torch.Tensor,
    scratch: torch.Tensor,
) -> None:
    """Run the ladder recursion over the rows (time steps) of (T, B) coefficient tensors.

    ``g`` holds the one-pole gains G = tan(pi fc / sr) / (1 + tan(pi fc / sr)). Per step,
    with states s1..s4:
    ``w = ((s1 G + s2) G + s3) G + s4`` is the state part of the 4th output, the closed-form
    ZDF input is ``u = tanh(x - ka * w)`` (``x`` and ``ka`` already include the resonance
    gain, its compensation and the 1 / (1 + k G^4) solve), and each stage is the TPT
    one-pole ``y = s + G (in - s)``, ``s <- 2 y - s``. Writes the 4th-stage output to
    ``out`` and updates ``state`` (4, B) in place; ``scratch`` is (4, B).
    """
    s1, s2, s3, s4 = state.unbind(0)
    w, u, y, z = scratch.unbind(0)
    addcmul, lerp = torch.addcmul, torch.lerp
    for gt, xt, kt, ot in zip(g.unbind(0), x.unbind(0), ka.unbind(0), out.unbind(0)):
        addcmul(s2, s1, gt, out=w)
        addcmul(s3, w, gt, out=y)
        addcmul(s4, y, gt, out=w)
        addcmul(xt, kt, w, value=-1.0, out=u).tanh_()
        lerp(s1, u, gt, out=y)
        s1.lerp_(y, 2.0)
        lerp(s2, y, gt, out=z)
        s2.lerp_(z, 2.0)
        lerp(s3, z, gt, out=y)
        s3.lerp_(y, 2.0)
        lerp(s4, y, gt, out=ot)
        s4.lerp_(ot, 2.0)


class MoogSynth(Synth):
    """PolyBLEP saw -> nonlinear ZDF Moog ladder (cutoff ADSR) -> decaying amplitude envelope.

    Args:
        note_off: note-off time of the filter ADSR as a fraction of the note duration.
        drive: oscillator level into the ladder's tanh; higher values saturate more.
        block_size: time steps whose coefficients are precomputed together (memory/cache).
        max_batch: records run through one ladder pass; bigger batches amortise the per-step
            overhead of the sample loop, larger ones are split to bound memory.
        blep_points: band limiting of the oscillator, see ``SawSynth``.
        ladder: "auto" runs the compiled sample loop where it can (numba installed, CPU
            tensors; the environment variable ``NSM_LADDER=torch`` turns it off) and the
            torch loop otherwise; "torch" always runs the torch loop.
    """

    param_names = (
        "pitch",
        "level",
        "decay",
        "attack",
        "cutoff",
        "resonance",
        "env_amount",
        "env_attack",
        "env_decay",
        "env_sustain",
        "env_release",
    )
    # Resonance 1 maps to the linear self-oscillation threshold k = 4 of the ladder.
    max_feedback = 4.0
    max_cutoff_ratio = 0.45

    def __init__(
        self,
        *,
        note_off: float = 0.7,
        drive: float = 0.5,
        block_size: int = 64,
        max_batch: int = 8192,
        blep_points: int = 2,
        ladder: str = "auto",
    ) -> None:
        if not 0.0 <= note_off <= 1.0:
            raise ValueError(f"note_off must be in [0, 1], got {note_off}")
        if drive <= 0:
            raise ValueError(f"drive must be positive, got {drive}")
        if block_size < 1 or max_batch < 1:
            raise ValueError("block_size and max_batch must be >= 1")
        if blep_points not in (2, 4):
            raise ValueError(f"blep_points must be 2 or 4, got {blep_points}")
        if ladder not in ("auto", "torch"):
            raise ValueError(f"ladder must be 'auto' or 'torch', got {ladder!r}")
        self.note_off = note_off
        self.drive = drive
        self.block_size = block_size
        self.max_batch = max_batch
        self.blep_points = blep_points
        self.ladder = ladder

    def _render(self, notes: Notes) -> torch.Tensor:
        p, sample_rate, n_samples, batch = notes.p, notes.sample_rate, notes.n_samples, notes.batch
        phase0 = notes.start_phases()[:, 0]
        out = torch.empty(batch, n_samples, dtype=torch.float32, device=phase0.device)
        # The compiled loop leaves each note's largest magnitude here (for the soft limit).
        peak = torch.zeros(batch) if self._compiled(p) else None
        for s in range(0, batch, self.max_batch):
            e = min(s + self.max_batch, batch)
            chunk = {k: v[s:e] for k, v in p.items()}
            part = None if peak is None else peak[s:e]
            out[s:e].copy_(self._filtered_saw(chunk, phase0[s:e], sample_rate, n_samples, part).t())
        # The output gain is folded into the VCA. Rare resonant overshoots (fast cutoff
        # sweeps near self-oscillation) meet a soft knee at 0.9 of full scale before the VCA,
        # so a note's timbre does not depend on its level and level <= 0 dB stays in [-1, 1].
        gain = self._out_gain()
        soft_limit_(out, 0.9, ceiling=1.0 / gain, peak=peak)
        amp = db_to_amp(p["level"]) * gain
        return decay_envelope_(out, amp, p["decay"], p["attack"], sample_rate)

    def _out_gain(self) -> float:
        """Output scale: 99% of extreme-parameter notes peak below ~0.85 after it.

        The passband level of the ladder output is ~drive (peaks up to ~1.6x drive with
        resonance); tanh bounds the ladder input, so for high drive the peak is ~1.
        """
        return 1.0 / min(1.0, 1.6 * self.drive)

    def _filtered_saw(
        self,
        p: dict[str, torch.Tensor],
        phase0: torch.Tensor,
        sample_rate: int,
        n_samples: int,
        peak: torch.Tensor | None,
    ) -> torch.Tensor:
        """Ladder-filtered, unit-level saw for one batch chunk, time-major (T, B). With
        ``peak`` ((B,) zeros) the compiled loop runs and leaves each note's largest
        magnitude there; without it the torch loop runs."""
        dev = phase0.device
        batch = phase0.shape[0]
        f32 = torch.float32
        sr = float(sample_rate)
        freq = midi_to_hz(p["pitch"])
        inv_inc = (sr / freq.clamp_min(1e-9)).to(f32)[None, :]
        k = self.max_feedback * p["resonance"].clamp(0.0, 1.0)
        # Input gain (1 + k) restores the unit DC gain that the feedback takes away.
        in_gain = 2.0 * self.drive * (1.0 + k)
        # q = in_gain / (1 + k G^4) is computed as 1 / (1 / in_gain + (k / in_gain) G^4).
        den_c0 = (1.0 / in_gain).to(f32)[None, :]
        den_c4 = (k / in_gain).to(f32)[None, :]
        # log(pi fc / sr) = base + slope * env, clamped to [min cutoff, 0.45 sr].
        log_base = math.log(math.pi * 440.0 / sr) + _LN2_OVER_12 * (p["cutoff"] - 69.0)
        log_base32 = log_base.to(f32)[None, :]
        log_slope = (_LN2_OVER_12 * p["env_amount"]).to(f32)[None, :]
        log_lo = math.log(math.pi * _MIN_CUTOFF_HZ / sr)
        log_hi = math.log(math.pi * self.max_cutoff_ratio)
        adsr = _AdsrCoefs(p, sr, n_samples, self.note_off)
        compiled = peak is not None
        if compiled:
            from src.synth.ladder_kernel import ladder_numba
        threads = torch.get_num_threads()

        tb = min(self.block_size, n_samples)
        n_scratch = self.blep_points // 2 + 1
        bufs = torch.empty(4 + n_scratch, tb, batch, dtype=f32, device=dev)
        g, x, ka, tmp = bufs[0], bufs[1], bufs[2], bufs[3]
        saw_scratch = list(bufs[4:].unbind(0))
        state = torch.zeros(4, batch, dtype=f32, device=dev)
        scratch = torch.empty(4, batch, dtype=f32, device=dev)
        y = torch.empty(n_samples, batch, dtype=f32, device=dev)
        n_blk = -(-n_samples // tb)
        # Oscillator phase at each block start (float64-exact), plus an in-block ramp.
        starts, ramp = block_phase(freq, phase0, sr, n_blk, tb)
        starts, ramp = starts.t().contiguous(), ramp.t().contiguous()
        t_col = torch.arange(tb, dtype=torch.float64, device=dev)[:, None] / sr
        for i in range(n_blk):
            n0 = i * tb
            m = min(tb, n_samples - n0)
            gb, xb, kab, tb_ = g[:m], x[:m], ka[:m], tmp[:m]
            sc = [b[:m] for b in saw_scratch]
            # Oscillator: half saw (factor 2 goes into in_gain).
            torch.add(starts[i][None, :], ramp[:m], out=xb)
            half_saw_any_(xb, inv_inc, sc, self.blep_points)
            # Cutoff envelope -> pi fc / sr -> g = tan(.) -> G = g / (1 + g).
            adsr.fill(gb, (t_col[:m] + n0 / sr).to(f32), n0, tb_)
            torch.addcmul(log_base32, gb, log_slope, out=gb)
            gb.clamp_(log_lo, log_hi).exp_().tan_()
            torch.add(gb, 1.0, out=tb_)
            gb.div_(tb_)
            # q = in_gain / (1 + k G^4); x <- q x; ka <- k (1 - G) / (1 + k G^4).
            torch.mul(gb, gb, out=kab).square_()
            torch.addcmul(den_c0, kab, den_c4, out=tb_).reciprocal_()
            xb.mul_(tb_)
            torch.addcmul(tb_, gb, tb_, value=-1.0, out=kab).mul_(den_c4)
            if compiled:
                ladder_numba(gb, xb, kab, y[n0 : n0 + m], state, peak, threads)
                continue
            with intra_op_threads(1):
                ladder_loop(gb, xb, kab, y[n0 : n0 + m], state, scratch)
        return y

    def _compiled(self, p: dict[str, torch.Tensor]) -> bool:
        """Whether the numba sample loop can serve this render (see the class docstring)."""
        from src.synth import ladder_kernel  # here, not at import: numba adds to startup

        if self.ladder != "auto" or not ladder_kernel.available():
            return False
        return all(v.device.type == "cpu" for v in p.values())


class _AdsrCoefs:
    """Per-record constants of the linear-segment filter ADSR, for block-wise evaluation.

    Before note-off: ``min(t / A, max(S, 1 - (1 - S)(t - A) / D))`` (rise, fall to sustain,
    hold); after note-off: a linear ramp from the level reached at note-off down to 0 in R
    seconds. Both pieces are affine in t followed by clamps, i.e. a few batch-wide ops.
    """

    def __init__(self, p: dict[str, torch.Tensor], sr: float, n_samples: int, note_off: float):
        f32 = torch.float32
        min_t = 1.0 / sr
        a = p["env_attack"].clamp_min(min_t)
        d = p["env_decay"].clamp_min(min_t)
        r = p["env_release"].clamp_min(min_t)
        sus = p["env_sustain"].clamp(0.0, 1.0)
        self.n_off = round(note_off * n_samples)
        t_off = self.n_off / sr
        dslope = (1.0 - sus) / d
        level_off = torch.minimum(t_off / a, torch.maximum(sus, 1.0 - dslope * (t_off - a)))
        self.att_rate = (1.0 / a).to(f32)[None, :]
        self.dec_offset = (1.0 + dslope * a).to(f32)[None, :]
        self.dec_slope = (-dslope).to(f32)[None, :]
        self.sus = sus.to(f32)[None, :]
        self.rel_offset = (level_off * (1.0 + t_off / r)).to(f32)[None, :]
        self.rel_slope = (-level_off / r).to(f32)[None, :]

    def fill(self, env: torch.Tensor, t: torch.Tensor, n0: int, tmp: torch.Tensor) -> None:
        """Write the envelope for times ``t`` (rows, (m, 1)) starting at sample n0 into env."""
        m = env.shape[0]
        split = min(max(self.n_off - n0, 0), m)
        if split > 0:
            e, w, tt = env[:split], tmp[:split], t[:split]
            torch.mul(tt, self.att_rate, out=e)
            torch.addcmul(self.dec_offset, tt, self.dec_slope, out=w)
            torch.maximum(w, self.sus, out=w)
            torch.minimum(e, w, out=e)
        if split < m:
            e = env[split:]
            torch.addcmul(self.rel_offset, t[split:], self.rel_slope, out=e).clamp_min_(0.0)
