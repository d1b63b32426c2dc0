"""BC-ResNet: broadcasted residual learning for small spectrogram classifiers.

Each block does its frequency modelling with a 2-D feature map (a frequency-wise depthwise
conv + sub-spectral normalisation) and its temporal modelling on a 1-D one (the map averaged
over frequency: temporal depthwise conv, BN, swish, pointwise conv, dropout), then broadcasts
the 1-D result back over frequency. Temporal layers therefore cost 1/F of a 2-D conv, which is
what lets BC-ResNet-1 fit in about 9k parameters. Widths scale with `tau`.

Sub-spectral normalisation splits the frequency axis into S bands with a BatchNorm each.
Inputs of any height are accepted: S is the largest divisor of the block's frequency size that
is at most `sub_bands` (40 mels: 5, 5, 5 bands; 10 mels: 5, 3, 2; a size of 1 is a plain BN).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from src.utils.checks import image_shape

# (width factor, blocks, frequency stride, temporal dilation) per stage, as in BC-ResNet.
STAGES = ((8, 2, 1, 1), (12, 2, 2, 2), (16, 4, 2, 4), (20, 4, 1, 8))
STEM, HEAD = 16, 32


def fitting_sub_bands(freq: int, wanted: int) -> int:
    """The largest divisor of `freq` that is at most `wanted` (1 for freq 1)."""
    return max(d for d in range(1, max(1, min(wanted, freq)) + 1) if freq % d == 0)


class SubSpectralNorm(nn.Module):
    """BatchNorm with separate statistics for each of S frequency sub-bands of (B, C, F, T)."""

    def __init__(self, channels: int, freq: int, sub_bands: int = 5) -> None:
        super().__init__()
        self.freq = int(freq)
        self.sub_bands = fitting_sub_bands(self.freq, int(sub_bands))
        self.bn = nn.BatchNorm2d(channels * self.sub_bands)

    def forward(self, x: Tensor) -> Tensor:
        b, c, f, t = x.shape
        if f % self.sub_bands:
            raise ValueError(
                f"SubSpectralNorm built for {self.freq} frequency bins ({self.sub_bands} bands) "
                f"got {f}"
            )
        s = self.sub_bands
        return self.bn(x.reshape(b, c * s, f // s, t)).reshape(b, c, f, t)


class BCResBlock(nn.Module):
    """One broadcasted residual block; a transition block (new width or stride) has no identity
    path and first maps channels with a 1x1 conv + BN + ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        freq: int,
        stride: int = 1,
        dilation: int = 1,
        sub_bands: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.transition = in_ch != out_ch or stride != 1
        self.expand = (
            nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()
            )
            if self.transition
            else nn.Identity()
        )
        self.freq_dw = nn.Conv2d(
            out_ch, out_ch, (3, 1), stride=(stride, 1), padding=(1, 0), groups=out_ch, bias=False
        )
        self.out_freq = (freq - 1) // stride + 1
        self.ssn = SubSpectralNorm(out_ch, self.out_freq, sub_bands)
        self.temporal = nn.Sequential(
            nn.Conv2d(
                out_ch,
                out_ch,
                (1, 3),
                padding=(0, dilation),
                dilation=(1, dilation),
                groups=out_ch,
                bias=False,
            ),
            nn.BatchNorm2d(out_ch),
            nn.SiLU(),
            nn.Conv2d(out_ch, out_ch, 1, bias=False),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.ssn(self.freq_dw(self.expand(x)))
        out = y + self.temporal(y.mean(dim=2, keepdim=True))  # broadcast over frequency
        if not self.transition:
            out = out + x
        return self.act(out)


class BCResNet(nn.Module):
    """BC-ResNet-tau on (C, n_mels, frames) inputs -> (B, 32·tau) features.

    Stem 5x5 conv (frequency stride 2) of 16τ, four stages of 8τ/12τ/16τ/20τ (2, 2, 4, 4
    blocks; frequency strides 1, 2, 2, 1; temporal dilations 1, 2, 4, 8), then a depthwise
    conv spanning the remaining frequency (up to 5 bins), a 1x1 conv to 32τ and global average
    pooling. The per-parameter heads live in the LightningModule.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        tau: float = 1.0,
        sub_bands: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        shape = image_shape(input_shape)  # (C, F, T): channels, mel bands, frames
        if tau <= 0 or sub_bands < 1:
            raise ValueError(f"need tau > 0 and sub_bands >= 1, got {tau}, {sub_bands}")
        self.input_shape = shape
        width = lambda k: max(1, round(k * tau))  # noqa: E731
        c, freq, _ = shape
        stem = width(STEM)
        self.stem = nn.Sequential(
            nn.Conv2d(c, stem, 5, stride=(2, 1), padding=2, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(),
        )
        freq = (freq - 1) // 2 + 1
        blocks: list[nn.Module] = []
        in_ch = stem
        for k, n, stride, dilation in STAGES:
            out_ch = width(k)
            for i in range(n):
                block = BCResBlock(
                    in_ch,
                    out_ch,
                    freq,
                    stride=stride if i == 0 else 1,
                    dilation=dilation,
                    sub_bands=sub_bands,
                    dropout=dropout,
                )
                blocks.append(block)
                freq, in_ch = block.out_freq, out_ch
        self.blocks = nn.Sequential(*blocks)
        self.sub_band_counts = [b.ssn.sub_bands for b in blocks]
        head = width(HEAD)
        self.head = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, (min(5, freq), 5), padding=(0, 2), groups=in_ch, bias=False),
            nn.Conv2d(in_ch, head, 1, bias=False),
            nn.BatchNorm2d(head),
            nn.ReLU(),
        )
        self.out_features = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))
