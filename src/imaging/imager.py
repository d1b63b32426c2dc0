"""Turn batches of audio into fixed-size uint8 spectrogram images.

Image layout is ``(B, C, H, W)``: height is frequency, width is time, channels are alternate
representations of the same note (power, instantaneous frequency, group delay, modulation),
possibly at several time-frequency resolutions (one ``n_fft`` per channel, shared hop).

Conventions every consumer must know:

* Row 0 is the LOWEST frequency (row index grows with frequency, as filterbank outputs do;
  plot with ``origin='lower'`` to put low notes at the bottom).
  ``frequencies(c)`` gives each row's filter centre in Hz, in row order.
* Column ``t`` is the STFT frame centred on sample ``t * hop_length`` (its window starts at
  ``t * hop_length - n_fft // 2``; zero padding outside the note), so the ``W`` frames span
  the whole note. ``hop_length = n_samples // (W - 1)``; widths for which no integer hop
  spans the note are rejected (see ``choose_hop``).
* Pixel values use fixed, dataset-wide ranges (never per-image min-max), so absolute level is
  preserved. ``to_float`` returns the physical values before quantisation:

  ============  =====================================  ===========================  =========
  kind          value (``to_float`` unit)              range mapped to pixels       neutral
  ============  =====================================  ===========================  =========
  power         dB re. a full-scale sine               [db_min, db_max] -> [0, 255]  -
  ifreq         IF minus nearest bin centre, in bins   [-0.5, +0.5] -> [0, 255]      128
  group_delay   delay re. frame centre, in windows     [-0.5, +0.5] -> [0, 255]      128
  modulation    dB of modulation amplitude             [-60, 0] -> [0, 255]          -
  ============  =====================================  ===========================  =========

  Power/modulation: ``pixel = round(clip((v - lo) / (hi - lo), 0, 1) * 255)``.
  Signed kinds: ``pixel = clip(round(128 + 128 * v / R), 0, 255)`` so 0 maps exactly to 128.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torchaudio
from torch import nn

from src.imaging import filters
from src.imaging.channels import (
    GROUP_DELAY_RANGE,
    IFREQ_RANGE_BINS,
    MOD_DB_RANGE,
    NEUTRAL,
    ChannelSpec,
    as_channel_spec,
    check_int,
    choose_hop,
)
from src.imaging.filters import WINDOWS, filter_centres, image_filterbank, sine_calibration

CPU_CHUNK = 256  # records per pass on CPU: keeps the STFT working set in cache


class SpectrogramImager(nn.Module):
    """Batched audio -> uint8 images with fixed, documented value ranges (see module doc)."""

    def __init__(
        self,
        *,
        height: int,
        width: int,
        sample_rate: int,
        n_samples: int,
        channels: list[ChannelSpec | dict],
        f_min: float = 0.0,
        f_max: float | None = None,
        db_min: float = -80.0,
        db_max: float = 0.0,
        window: str = "hann",
    ) -> None:
        super().__init__()
        self.height = check_int("height", height, 1)
        self.width = check_int("width", width, 2)
        self.sample_rate = check_int("sample_rate", sample_rate, 1)
        self.n_samples = check_int("n_samples", n_samples, 1)
        if not isinstance(channels, (list, tuple)) or not channels:
            raise ValueError(f"channels must be a non-empty list, got {channels!r}")
        specs = [as_channel_spec(c, i) for i, c in enumerate(channels)]
        labels = [s.label for s in specs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"channel labels must be unique, got {labels}")
        nyquist = sample_rate / 2
        f_max = nyquist if f_max is None else float(f_max)
        f_min = float(f_min)
        if f_max > nyquist or f_max <= 0:
            raise ValueError(f"f_max must be in (0, sample_rate/2 = {nyquist}], got {f_max}")
        if not 0 <= f_min < f_max:
            raise ValueError(f"f_min must satisfy 0 <= f_min < f_max = {f_max}, got {f_min}")
        if any(s.scale == "log" for s in specs) and f_min <= 0:
            raise ValueError(f"f_min must be > 0 when a channel uses scale='log', got {f_min}")
        db_min, db_max = float(db_min), float(db_max)
        if not db_min < db_max:
            raise ValueError(f"db_min must be < db_max, got db_min={db_min}, db_max={db_max}")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")

        self.specs = specs
        self.channel_labels = labels
        self.f_min, self.f_max = f_min, f_max
        self.db_min, self.db_max = db_min, db_max
        self.spec_min, self.spec_max = db_min, db_max
        self.window = window
        self.hop_length = choose_hop(n_samples, width)
        # Power below this (normalised) level is treated as "no energy" by the phase channels.
        self._floor = 10.0 ** (db_min / 10.0)
        # Clamp level for the log: 20 dB under the floor, so silence lands at pixel 0.
        self._tiny = 10.0 ** ((db_min - 20.0) / 10.0)

        # Channels sharing an n_fft share one STFT; each (n_fft, scale) pair one filterbank.
        self._groups: dict[int, dict] = {}
        self.stfts = nn.ModuleDict()
        self._centres: dict[tuple[int, str], torch.Tensor] = {}
        for spec in specs:
            g = self._groups.setdefault(
                spec.n_fft, {"scales": [], "if_scales": [], "gd_scales": []}
            )
            if spec.scale not in g["scales"]:
                g["scales"].append(spec.scale)
            if spec.kind == "ifreq" and spec.scale not in g["if_scales"]:
                g["if_scales"].append(spec.scale)
            if spec.kind == "group_delay" and spec.scale not in g["gd_scales"]:
                g["gd_scales"].append(spec.scale)
        for n_fft, g in self._groups.items():
            stft = torchaudio.transforms.Spectrogram(
                n_fft=n_fft,
                hop_length=self.hop_length,
                window_fn=filters.window,
                wkwargs={"kind": window},
                power=None,
                center=False,  # framing/padding is done in _stft to avoid copying the signal
            )
            self.stfts[str(n_fft)] = stft
            self._build_group(n_fft, g, stft.window)
            g["segments"] = self._segments(n_fft, n_fft // 2 if g["if_scales"] else 0)

        self._value_ranges = [self._range_of(s) for s in specs]
        # Records per CPU pass (see _chunks); 0 or None processes the batch in one pass.
        self.cpu_chunk: int | None = CPU_CHUNK

    # ------------------------------------------------------------------ construction helpers
    def _build_group(self, n_fft: int, g: dict, window: torch.Tensor) -> None:
        """Register the filterbank matrices of one n_fft group as (non-persistent) buffers."""
        n_freqs = n_fft // 2 + 1
        raw, cal = {}, {}
        for scale in g["scales"]:
            fb = image_filterbank(
                scale, n_fft, self.f_min, self.f_max, self.height, self.sample_rate
            )
            centres = filter_centres(scale, self.f_min, self.f_max, self.height)
            cal[scale] = sine_calibration(fb, centres, window, self.sample_rate)
            raw[scale] = fb  # ascending columns: row 0 = lowest frequency
            self._centres[(n_fft, scale)] = centres.to(torch.float32)
        # Power of all scales in one matmul: rows interleave (re, im) so the matmul also sums
        # re^2 + im^2 of the squared complex STFT.
        pfb = torch.cat([cal[s] for s in g["scales"]], dim=1).repeat_interleave(2, dim=0)
        self.register_buffer(f"pfb_{n_fft}", pfb.to(torch.float32), persistent=False)
        if g["if_scales"]:
            # Weighted complex sum of the lag-n_fft phasors (their angle is already the wrapped
            # deviation, the expected advance 2*pi*k being a whole number of turns).
            ones = torch.ones(n_freqs, dtype=torch.float64)
            blocks = [self._complex_block(raw[s], ones, 0 * ones) for s in g["if_scales"]]
            self.register_buffer(
                f"ifb_{n_fft}", torch.cat(blocks, 1).to(torch.float32), persistent=False
            )
        if g["gd_scales"]:
            # Bin pairs (k, k+1) weigh by the mean of their filter weights; the -1 moves the
            # phase reference from the frame start to the frame centre ((-1)^k per bin).
            blocks = []
            for s in g["gd_scales"]:
                fbg = 0.5 * (raw[s][:-1] + raw[s][1:])
                ones = torch.ones(n_freqs - 1, dtype=torch.float64)
                blocks.append(self._complex_block(fbg, -ones, 0 * ones))
            self.register_buffer(
                f"gfb_{n_fft}", torch.cat(blocks, 1).to(torch.float32), persistent=False
            )

    @staticmethod
    def _complex_block(fb: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Real matrix computing ``sum_k fb[k, m] * c_k * (cos_k + i sin_k)`` on interleaved
        (re, im) input rows, giving interleaved (re, im) output columns."""
        n_in, n_out = fb.shape
        block = torch.zeros(n_in, 2, n_out, 2, dtype=torch.float64)
        a, b = fb * cos[:, None], fb * sin[:, None]
        block[:, 0, :, 0] = a
        block[:, 0, :, 1] = b
        block[:, 1, :, 0] = -b
        block[:, 1, :, 1] = a
        return block.reshape(2 * n_in, 2 * n_out)

    def _segments(self, n_fft: int, margin: int) -> list[tuple[int, int]]:
        """Split frames into left-edge, interior and right-edge runs.

        Only edge frames reach outside the note; the interior run is analysed straight from
        the input, so the signal is never copied into a padded buffer (the dominant cost).
        ``margin`` widens the interior test for the lagged STFTs of ``ifreq``.
        """
        half, hop, w = n_fft // 2, self.hop_length, self.width
        first = math.ceil((half + margin) / hop)  # first frame starting at sample >= 0
        last = (self.n_samples - (n_fft - half) - margin) // hop  # last frame ending inside
        first, last = min(first, w), max(min(last, w - 1), -1)
        if first > last:
            return [(0, w)]
        runs = [(0, first), (first, last + 1), (last + 1, w)]
        return [(a, b) for a, b in runs if b > a]

    def _range_of(self, spec: ChannelSpec) -> tuple[float, float]:
        if spec.kind == "power":
            return (self.db_min, self.db_max)
        if spec.kind == "ifreq":
            return (-IFREQ_RANGE_BINS, IFREQ_RANGE_BINS)
        if spec.kind == "group_delay":
            return (-GROUP_DELAY_RANGE, GROUP_DELAY_RANGE)
        return MOD_DB_RANGE

    # ------------------------------------------------------------------ public helpers
    @property
    def value_ranges(self) -> list[tuple[float, float]]:
        """Per channel, the ``to_float`` values that map to pixels 0 and 255."""
        return list(self._value_ranges)

    def frequencies(self, channel: int = 0) -> torch.Tensor:
        """Filter centre (Hz) of each image row of ``channel``, row 0 first (descending)."""
        spec = self.specs[channel]
        return self._centres[(spec.n_fft, spec.scale)].clone()

    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable: ``SpectrogramImager(**cfg)`` rebuilds it."""
        return {
            "height": self.height,
            "width": self.width,
            "sample_rate": self.sample_rate,
            "n_samples": self.n_samples,
            "channels": [asdict(s) for s in self.specs],
            "f_min": self.f_min,
            "f_max": self.f_max,
            "db_min": self.db_min,
            "db_max": self.db_max,
            "window": self.window,
        }

    @classmethod
    def from_config(cls, cfg: dict) -> SpectrogramImager:
        return cls(**cfg)

    # ------------------------------------------------------------------ computation
    def _stft(self, x: torch.Tensor, n_fft: int, t0: int, t1: int, lag: int) -> torch.Tensor:
        """Complex STFT of frames ``t0..t1-1`` shifted ``lag`` samples later, ``(B, T, F)``."""
        hop, half = self.hop_length, n_fft // 2
        start = t0 * hop - half + lag
        stop = (t1 - 1) * hop - half + lag + n_fft
        lo = min(max(start, 0), self.n_samples)
        hi = max(min(stop, self.n_samples), lo)
        seg = x[:, lo:hi]
        if lo != start or hi != stop:  # edge frames only: zero-pad the short piece
            seg = torch.nn.functional.pad(seg, (lo - start, stop - hi))
        z = self.stfts[str(n_fft)](seg)  # (B, F, T), memory laid out as (B, T, F)
        z = z.transpose(1, 2)
        return z if z.stride(-1) == 1 else z.contiguous()

    def _group_features(self, x: torch.Tensor, n_fft: int) -> dict[str, torch.Tensor]:
        """Filterbank outputs of one n_fft group over all frames, each ``(B, W, K)``."""
        g = self._groups[n_fft]
        b = x.shape[0]
        parts: dict[str, list[torch.Tensor]] = {"p": [], "if": [], "gd": []}
        for t0, t1 in g["segments"]:
            z = self._stft(x, n_fft, t0, t1, 0)
            t = t1 - t0
            if g["if_scales"]:
                # Frames n_fft/2 before and after this one: for a partial at bin k + d the
                # phase advances 2*pi*(k + d) over n_fft samples, i.e. 2*pi*d modulo a turn.
                c = self._stft(x, n_fft, t0, t1, n_fft // 2)
                c = c.mul_(self._stft(x, n_fft, t0, t1, -(n_fft // 2)).conj())
                parts["if"].append(
                    torch.view_as_real(c).reshape(b, t, -1) @ getattr(self, f"ifb_{n_fft}")
                )
            if g["gd_scales"]:
                c = z[..., 1:] * z[..., :-1].conj()  # bin-to-bin phasor: angle = -delay
                parts["gd"].append(
                    torch.view_as_real(c).reshape(b, t, -1) @ getattr(self, f"gfb_{n_fft}")
                )
            sq = torch.view_as_real(z).square_()  # z is not needed any more
            parts["p"].append(sq.reshape(b, t, -1) @ getattr(self, f"pfb_{n_fft}"))
        return {k: torch.cat(v, dim=1) if len(v) > 1 else v[0] for k, v in parts.items() if v}

    def _angles(self, out: torch.Tensor, index: int) -> torch.Tensor:
        h = self.height
        pair = out[..., 2 * h * index : 2 * h * (index + 1)].unflatten(-1, (h, 2))
        return torch.atan2(pair[..., 1], pair[..., 0])

    def _flatten(self, audio: torch.Tensor) -> torch.Tensor:
        """``(..., n_samples)`` -> contiguous-batch ``(B, n_samples)`` in the buffers' dtype."""
        if audio.dim() < 1 or audio.shape[-1] != self.n_samples:
            raise ValueError(
                f"audio must have n_samples={self.n_samples} samples in its last dimension, "
                f"got shape {tuple(audio.shape)}"
            )
        dtype = getattr(self, f"pfb_{self.specs[0].n_fft}").dtype
        return audio.reshape(-1, self.n_samples).to(dtype)

    def _channel_values(self, x: torch.Tensor):
        """Yield ``(channel index, values (B, W, H))`` in physical units (see module doc)."""
        h = self.height
        for n_fft, g in self._groups.items():
            feats = self._group_features(x, n_fft)
            power = {s: feats["p"][..., i * h : (i + 1) * h] for i, s in enumerate(g["scales"])}
            for c, spec in enumerate(self.specs):
                if spec.n_fft != n_fft:
                    continue
                p = power[spec.scale]
                if spec.kind == "power":
                    yield c, self._to_db(p)
                elif spec.kind == "modulation":
                    yield c, self._modulation(self._to_db(p))
                else:
                    if spec.kind == "ifreq":
                        idx = g["if_scales"].index(spec.scale)
                        v = self._angles(feats["if"], idx) * (1.0 / (2 * math.pi))
                    else:
                        idx = g["gd_scales"].index(spec.scale)
                        v = self._angles(feats["gd"], idx) * (-1.0 / (2 * math.pi))
                    yield c, v.masked_fill_(p < self._floor, 0.0)

    def _to_db(self, p: torch.Tensor) -> torch.Tensor:
        return torchaudio.functional.amplitude_to_DB(
            p, multiplier=10.0, amin=self._tiny, db_multiplier=0.0
        )

    def _modulation(self, db: torch.Tensor) -> torch.Tensor:
        """Modulation spectrum per row: one-sided amplitude spectrum over time of the [0, 1]
        power envelope, linearly resampled from ``W // 2 + 1`` modulation bins (0 to half the
        frame rate) to ``W`` columns, in dB."""
        env = ((db - self.db_min) / (self.db_max - self.db_min)).clamp_(0.0, 1.0)
        n_frames = env.shape[1]
        amp = torch.fft.rfft(env, dim=1).abs() * (2.0 / n_frames)
        amp[:, 0] *= 0.5  # DC is not doubled
        if n_frames % 2 == 0:
            amp[:, -1] *= 0.5  # nor is the Nyquist bin
        amp = torch.nn.functional.interpolate(
            amp.transpose(1, 2), size=self.width, mode="linear", align_corners=True
        ).transpose(1, 2)
        return torchaudio.functional.amplitude_to_DB(
            amp, multiplier=20.0, amin=1e-6, db_multiplier=0.0
        )

    def _pixel_affine(self, c: int) -> tuple[float, float]:
        """``(offset, scale)`` with ``pixel = clip(round(offset + scale * value), 0, 255)``."""
        lo, hi = self._value_ranges[c]
        if self.specs[c].kind in ("ifreq", "group_delay"):
            return float(NEUTRAL), NEUTRAL / hi
        return -lo * 255.0 / (hi - lo), 255.0 / (hi - lo)

    def _chunks(self, x: torch.Tensor):
        """Split a CPU batch so each piece's STFT stays cache-resident (about 2x faster than
        one 4096-record pass); accelerators get the whole batch at once."""
        step = self.cpu_chunk if x.device.type == "cpu" and self.cpu_chunk else x.shape[0]
        for start in range(0, x.shape[0], max(step, 1)):
            yield start, x[start : start + step]

    def to_float(self, audio: torch.Tensor) -> torch.Tensor:
        """Physical values before quantisation, ``(B, C, H, W)`` float32."""
        x = self._flatten(audio)
        out = torch.empty(
            x.shape[0], len(self.specs), self.width, self.height, dtype=x.dtype, device=x.device
        )
        for start, piece in self._chunks(x):
            for c, v in self._channel_values(piece):
                out[start : start + piece.shape[0], c] = v
        out = out.transpose(-1, -2).contiguous()
        return out.reshape(*audio.shape[:-1], len(self.specs), self.height, self.width)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, n_samples)`` float audio -> ``(B, C, H, W)`` uint8 images."""
        x = self._flatten(audio)
        out = torch.empty(
            x.shape[0], len(self.specs), self.width, self.height, dtype=torch.uint8, device=x.device
        )
        affine = [self._pixel_affine(c) for c in range(len(self.specs))]
        for start, piece in self._chunks(x):
            for c, v in self._channel_values(piece):
                offset, scale = affine[c]
                # +0.5 then truncation (the float -> uint8 cast) = round half up, fused with clip.
                v = v.mul_(scale).add_(offset + 0.5).clamp_(0.0, 255.5)
                out[start : start + piece.shape[0], c] = v
        out = out.transpose(-1, -2).contiguous()
        return out.reshape(*audio.shape[:-1], len(self.specs), self.height, self.width)
