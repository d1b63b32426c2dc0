"""How far a reconstructed waveform is from the original, and what its codes cost.

Per record (B, T) -> (B,): SNR, SI-SDR, PSNR (full scale: peak-to-peak range 2 for audio in
[-1, 1]), MSE from torchmetrics, the multi-resolution STFT distance of `src/metrics/audio.py`,
the log-mel distance (`logmel_db`: per frame the RMS over `LOGMEL_BANDS` mel bands of the dB
difference, then the mean over frames; a `LOGMEL_FFT`-point STFT, hop a quarter of it, powers
calibrated and floored as in `src/metrics/audio.py`), and STOI through torchmetrics' wrapper
of pystoi where that optional package is installed.
The dB metrics are capped at `MAX_DB`: a reconstruction equal to its original to float
precision reads MAX_DB instead of infinity (or a value set by float rounding), so one exact
record cannot turn a mean into infinity. A silent original has no defined SNR: it is NaN and
left out of the means (counted in `n_undefined`).

Codes: `CodeStats` counts each stage's code histogram; from it come the empirical entropy
(bits a frame an order-0 entropy coder would reach, stage by stage), codebook usage (share of
entries used) and perplexity (2 ** entropy: the number of equally likely codes with that
entropy). A coder must fix its tables before it sees the clips it codes: `table_bits` is the
rate of a static table per stage fitted on other codes (the training split's), applied to
these (cross-entropy, the table add-one smoothed so an unseen code costs finite bits).
Bitrates are frames/s x bits a frame, never assumed.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.audio import (
    scale_invariant_signal_distortion_ratio,
    signal_noise_ratio,
)
from torchmetrics.functional.image import peak_signal_noise_ratio

from src.metrics.audio import FLOOR_DB, AudioComparison, stft_power
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

MAX_DB = 100.0  # what an exact reconstruction reads, in dB (SNR, SI-SDR, PSNR)
FULL_SCALE_RANGE = 2.0  # audio in [-1, 1]
WAVE_METRICS = ("snr_db", "si_sdr_db", "psnr_db", "mse", "mrstft", "logmel_db")
LOGMEL_FFT = 1024  # 64 ms at 16 kHz
LOGMEL_BANDS = 64
STOI_MIN_S = 0.4  # shorter records get NaN STOI (pystoi needs 30 frames of 25.6 ms)
HIGHER_IS_BETTER = {"snr_db", "si_sdr_db", "psnr_db", "stoi"}


def stoi_available() -> bool:
    return importlib.util.find_spec("pystoi") is not None


def _cap(db: Tensor, exact: Tensor, undefined: Tensor) -> Tensor:
    db = db.masked_fill(exact, MAX_DB).clamp_max(MAX_DB)
    return db.masked_fill(undefined, math.nan).float()


def waveform_metrics(
    pred: Tensor, target: Tensor, sample_rate: int, stoi: bool = False
) -> dict[str, Tensor]:
    """{name: (B,) values} of (B, T) or (B, 1, T) reconstructions against their originals.

    The dB metrics are computed in float64, where torchmetrics' guard epsilon is negligible;
    an error energy below 1e-10 of the signal's (100 dB) reads MAX_DB."""
    b = len(target)
    pred, target = pred.reshape(b, -1).double(), target.reshape(b, -1).double()
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}")
    silent = target.abs().amax(dim=1) == 0
    never = torch.zeros_like(silent)
    err = (pred - target).square().sum(dim=1)
    exact = err <= 10 ** (-MAX_DB / 10) * target.square().sum(dim=1)
    psnr = peak_signal_noise_ratio(
        pred, target, data_range=FULL_SCALE_RANGE, reduction="none", dim=1
    )
    psnr_exact = err <= 10 ** (-MAX_DB / 10) * FULL_SCALE_RANGE**2 * target.shape[1]
    out = {
        "snr_db": _cap(signal_noise_ratio(pred, target), exact, silent),
        "si_sdr_db": _cap(scale_invariant_signal_distortion_ratio(pred, target), exact, silent),
        "psnr_db": _cap(psnr, psnr_exact, never),
        "mse": mean_squared_error(pred.mT, target.mT, num_outputs=b).reshape(b).float(),
        "mrstft": AudioComparison(target.float(), sample_rate, metrics=("mrstft",))(pred.float())[
            "mrstft"
        ],
        "logmel_db": log_mel_distance(pred.float(), target.float(), sample_rate),
    }
    if stoi:
        out["stoi"] = stoi_values(pred.float(), target.float(), sample_rate)
    for name in ("mrstft", "logmel_db", "stoi"):  # relative to the original's spectrum
        if name in out:
            out[name] = out[name].masked_fill(silent, math.nan)
    return out


def log_mel_distance(pred: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """(B,) dB: per frame the RMS over mel bands of the dB difference, then the mean over
    frames (the log-spectral distance on a mel scale, what an ear-like spectrogram sees)."""
    n_fft = min(LOGMEL_FFT, 1 << (target.shape[-1].bit_length() - 1))
    fb = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, 0.0, sample_rate / 2, LOGMEL_BANDS, sample_rate, norm="slaney"
    ).to(target.device, target.dtype)
    floor = 10 ** (FLOOR_DB / 10)

    def mel_db(x: Tensor) -> Tensor:
        power = stft_power(x, n_fft)  # (B, F, T)
        return 10.0 * (power.transpose(1, 2) @ fb).clamp_min(floor).log10()  # (B, T, M)

    return (mel_db(pred) - mel_db(target)).square().mean(dim=-1).sqrt().mean(dim=-1)


def table_bits(counts: Tensor, table: Tensor, sizes: Sequence[int]) -> Tensor:
    """Bits a frame, per stage (S,), of coding the codes counted in `counts` (S, K) with static
    tables fitted on the histogram `table` (S, K): the cross-entropy of those codes under the
    table, add-one smoothed over each stage's `sizes[s]` possible codes."""
    valid = torch.arange(counts.shape[1], device=counts.device) < torch.tensor(
        sizes, device=counts.device
    ).reshape(-1, 1)
    p = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1)
    q = (table + valid) / (table + valid).sum(dim=-1, keepdim=True)
    return -(p * torch.log2(q.clamp_min(1e-30))).sum(dim=-1)


def stoi_values(pred: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """(B,) STOI (torchmetrics' wrapper of pystoi; it runs on the CPU, record by record); NaN
    for records shorter than STOI_MIN_S."""
    from torchmetrics.functional.audio import short_time_objective_intelligibility

    if target.shape[-1] < sample_rate * STOI_MIN_S:  # too few frames: pystoi returns junk
        return torch.full((len(target),), math.nan, device=pred.device)
    return short_time_objective_intelligibility(
        pred.cpu(), target.cpu(), sample_rate, extended=False
    ).to(pred.device, torch.float32)


def entropy_bits(counts: Tensor) -> Tensor:
    """Entropy in bits of each row of a histogram (S, K) -> (S,); 0 for an empty row."""
    p = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1)
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(dim=-1)


class CodeStats(Metric):
    """Histograms of the codes of every stage, summed over batches (and processes)."""

    full_state_update = False

    def __init__(self, codebook_sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = tuple(int(k) for k in codebook_sizes)
        self.add_state("counts", torch.zeros(len(self.sizes), max(self.sizes)), "sum")

    def update(self, codes: Tensor) -> None:
        """codes: (B, S, F) int64."""
        k = self.counts.shape[1]
        per_stage = codes.transpose(0, 1).reshape(len(self.sizes), -1)
        offsets = torch.arange(len(self.sizes), device=codes.device)[:, None] * k
        flat = torch.bincount((per_stage + offsets).reshape(-1), minlength=k * len(self.sizes))
        self.counts += flat.reshape(len(self.sizes), k).to(self.counts.dtype)

    def compute(self, table: Tensor | None = None) -> dict[str, Tensor]:
        """entropy_bits (per frame, summed over stages), usage and perplexity (stage means);
        with `table` (another CodeStats' counts, e.g. the training split's) also table_bits:
        bits a frame under static tables fitted there (`table_bits`, summed over stages)."""
        h = entropy_bits(self.counts)
        sizes = torch.tensor(self.sizes, device=self.counts.device, dtype=self.counts.dtype)
        used = (self.counts > 0).sum(dim=1) / sizes
        out = {
            "entropy_bits": h.sum(),
            "usage": used.mean(),
            "perplexity": torch.exp2(h).mean(),
        }
        if table is not None:
            out["table_bits"] = table_bits(self.counts, table.to(self.counts), self.sizes).sum()
        return out


class WaveformMetrics(Metric):
    """Sums of each per-record metric over the records where it is defined, overall and per
    group (e.g. the kind of sound), so epoch means are exact across batches and processes."""

    full_state_update = False

    def __init__(self, names: Sequence[str], n_groups: int = 1) -> None:
        super().__init__()
        self.names = tuple(names)
        shape = (len(self.names), max(1, int(n_groups)))
        self.add_state("sums", torch.zeros(shape, dtype=torch.float64), "sum")
        self.add_state("counts", torch.zeros(shape, dtype=torch.float64), "sum")

    def update(self, values: dict[str, Tensor], groups: Tensor | None = None) -> None:
        n_groups = self.sums.shape[1]
        first = values[self.names[0]]
        if groups is None:
            groups = torch.zeros(len(first), dtype=torch.long, device=first.device)
        groups = groups.long().reshape(-1)
        for i, name in enumerate(self.names):
            v = values[name].double().reshape(-1)
            ok = torch.isfinite(v)
            self.sums[i] += torch.bincount(groups[ok], v[ok], minlength=n_groups)
            self.counts[i] += torch.bincount(groups[ok], minlength=n_groups).double()

    def compute(
        self, include: Sequence[int] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """({name: mean over the records of the `include`d groups (default all)},
        {name: (n_groups,) means, NaN where a group has none})."""
        cols = slice(None) if include is None else list(include)
        overall = self.sums[:, cols].sum(1) / self.counts[:, cols].sum(1)
        per_group = self.sums / self.counts
        return (
            {n: overall[i].float() for i, n in enumerate(self.names)},
            {n: per_group[i].float() for i, n in enumerate(self.names)},
        )
