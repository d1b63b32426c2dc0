"""Spectral images back to audio: hear what a network saw.

A power channel of a VIMH image is undone step by step, with the imager's own conventions
(`src/imaging/imager.py`): pixels -> dB over the fixed range -> calibrated band power ->
raw filterbank power (the sine calibration divided out), on a frame grid fine enough to
overlap-add (the image's columns interpolated in dB) -> STFT bin power (torchaudio's
`InverseMelScale` for mel rows, the same least squares on the imager's bank for linear and
log rows; its clipped solution then refined by non-negative multiplicative updates, which
match the band powers far better) -> a waveform by Griffin-Lim (torchaudio). Only the
magnitude survives imaging, so the result has the right spectral envelope over time but its
own phase; structure finer than a row is gone too (a mel row above 1 kHz spans several
harmonics of a low note).

Batched throughout; later tasks (sequence prediction) reuse it for predicted frames.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from src.imaging import filters
from src.imaging.imager import SpectrogramImager


class SpectrogramInverter(nn.Module):
    """uint8 images (B, C, H, W) of `imager` -> (B, n_samples) audio.

    Args:
        imager: the imager that made the images (rebuilt from the dataset JSON).
        channel: which channel to invert; None = the first power channel.
        n_iter: Griffin-Lim iterations.
        nnls_iter: multiplicative non-negative least-squares refinements of the bin power.
        momentum: fast Griffin-Lim momentum (0 = the original algorithm).
        hop: Griffin-Lim hop in samples; None = n_fft // 4 (images often have coarser hops,
            even hops longer than the window, which overlap-add cannot invert).
    """

    def __init__(
        self,
        imager: SpectrogramImager,
        channel: int | None = None,
        n_iter: int = 32,
        nnls_iter: int = 30,
        momentum: float = 0.99,
        hop: int | None = None,
    ) -> None:
        super().__init__()
        kinds = [s.kind for s in imager.specs]
        if channel is None:
            if "power" not in kinds:
                raise ValueError(f"no power channel to invert among {imager.channel_labels}")
            channel = kinds.index("power")
        if not 0 <= channel < len(kinds) or kinds[channel] != "power":
            raise ValueError(
                f"channel {channel} cannot be inverted: only power channels can "
                f"({dict(enumerate(imager.channel_labels))})"
            )
        if n_iter < 0 or nnls_iter < 0:
            raise ValueError(f"n_iter and nnls_iter must be >= 0, got {n_iter}, {nnls_iter}")
        self.nnls_iter = nnls_iter
        spec = imager.specs[channel]
        self.channel = channel
        self.n_fft = spec.n_fft
        self.n_samples = imager.n_samples
        self.image_hop = imager.hop_length
        self.hop = hop or self.n_fft // 4
        if not 0 < self.hop <= self.n_fft // 2:
            raise ValueError(f"hop must be in 1..n_fft/2 = {self.n_fft // 2}, got {self.hop}")
        self.db_min, self.db_max = imager.value_ranges[channel]
        sr, h = imager.sample_rate, imager.height
        fb = filters.image_filterbank(spec.scale, self.n_fft, imager.f_min, imager.f_max, h, sr)
        centres = filters.filter_centres(spec.scale, imager.f_min, imager.f_max, h)
        win = filters.window(self.n_fft, imager.window, torch.float64)
        cal = filters.sine_calibration(fb, centres, win, sr)
        # The imager reads band power through fb * scale (per row); undo the scale first.
        self.register_buffer("row_scale", (cal.sum(0) / fb.sum(0)).float(), persistent=False)
        self.register_buffer("fb", fb.float(), persistent=False)  # (bins, rows)
        self.unbank: nn.Module | None = None
        if spec.scale == "mel":  # torchaudio's bank is the imager's mel bank (filters.filterbank)
            self.unbank = torchaudio.transforms.InverseMelScale(
                n_stft=self.n_fft // 2 + 1,
                n_mels=h,
                sample_rate=sr,
                f_min=imager.f_min,
                f_max=imager.f_max,
                norm=None,
                mel_scale="htk",
                driver="gels",
            )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=self.n_fft,
            n_iter=n_iter,
            win_length=self.n_fft,
            hop_length=self.hop,
            window_fn=filters.window,
            power=2.0,
            wkwargs={"kind": imager.window},
            momentum=momentum,
            length=self.n_samples,
            rand_init=False,  # deterministic: the same image always sounds the same
        )

    def to_db(self, images: Tensor) -> Tensor:
        """(B, C, H, W) uint8 images -> (B, H, W) dB of the inverted channel (the imager's
        `to_float` values, quantised)."""
        pixels = images[..., self.channel, :, :].float()
        return self.db_min + pixels * ((self.db_max - self.db_min) / 255.0)

    def fine_frames(self, db: Tensor) -> Tensor:
        """(B, H, W) image columns -> (B, H, T) at the Griffin-Lim frame centres, linear in dB
        (exact for the exponential decays of a note)."""
        n_frames = 1 + self.n_samples // self.hop
        pos = torch.arange(n_frames, dtype=torch.float64) * (self.hop / self.image_hop)
        pos = pos.clamp(0, db.shape[-1] - 1)
        left = pos.floor().long().clamp(max=db.shape[-1] - 2)
        frac = (pos - left).float().to(db.device)
        left = left.to(db.device)
        return db[..., left] * (1 - frac) + db[..., left + 1] * frac

    def stft_power(self, db: Tensor) -> Tensor:
        """(B, H, W) channel dB -> (B, n_fft/2 + 1, T) STFT power (torch.stft units) on the
        Griffin-Lim frame grid."""
        # Raw filterbank power: the imager reads band power through fb * row_scale.
        band = 10.0 ** (self.fine_frames(db) / 10.0) / self.row_scale[:, None]
        b, h, t = band.shape
        rows = band.permute(1, 0, 2).reshape(h, b * t)  # one solve for every frame of the batch
        # gelsd copes with rank-deficient banks (coinciding low log rows); CUDA has only gels.
        driver = "gels" if rows.is_cuda else "gelsd"
        if self.unbank is not None:
            self.unbank.driver = driver
            power = self.unbank(rows)
        else:
            power = torch.linalg.lstsq(self.fb.T, rows, driver=driver).solution
        # Multiplicative updates keep every bin non-negative and move fb^T power towards the
        # band powers; the floor lets bins the clipped solution zeroed take power back.
        power = power.clamp_min(1e-4 * power.amax(dim=0, keepdim=True).clamp_min(1e-30))
        target = self.fb @ rows
        for _ in range(self.nnls_iter):
            power = power * target / (self.fb @ (self.fb.T @ power)).clamp_min(1e-30)
        return power.reshape(-1, b, t).permute(1, 0, 2)

    @torch.no_grad()
    def invert_db(self, db: Tensor) -> Tensor:
        """(B, H, W) dB of the inverted channel (e.g. unquantised `to_float` values) -> audio."""
        return self.griffin_lim(self.stft_power(db))

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) or (C, H, W) uint8 images -> (B, n_samples) or (n_samples,) audio."""
        single = images.dim() == 3
        audio = self.invert_db(self.to_db(images[None] if single else images))
        return audio[0] if single else audio
