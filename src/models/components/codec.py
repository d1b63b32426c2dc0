"""A waveform codec: strided convolutional encoder -> quantizer -> transposed-conv decoder.

Time is the sequence axis everywhere: waveforms are (B, 1, T), latents (B, D, F) with
F = T / hop frames, and every layer is a convolution along time with weights shared over
time and no normalisation across the batch. So shifting the input by a multiple of the hop
shifts the output by the same amount (away from the edges), and an item's output depends on
that item alone (tests/test_codec.py proves both). Strides must be even: each downsampling
convolution has kernel 2s and padding s/2, so frame n covers samples [n s - s/2, n s + 3s/2),
and the decoder mirrors it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.models.components.quantizers import Quantized, Quantizer
from src.utils.build import build_component
from src.utils.config import target_config


class ResidualUnit(nn.Module):
    """x + 1x1(ELU(dilated 3-tap conv(ELU(x)))): context along time at the same rate."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(F.elu(self.conv(F.elu(x))))


def _units(channels: int, n: int) -> list[nn.Module]:
    return [ResidualUnit(channels, 3**i) for i in range(n)]


def _check_strides(strides: Sequence[int], channels: Sequence[int]) -> tuple[int, ...]:
    strides = tuple(int(s) for s in strides)
    if not strides or len(strides) != len(channels):
        raise ValueError(f"one stride per channel count, got {strides=} {list(channels)=}")
    if any(s < 2 or s % 2 for s in strides):
        raise ValueError(f"strides must be even and >= 2 (kernel 2s, padding s/2): {strides}")
    return strides


class ConvEncoder(nn.Module):
    """(B, 1, T) -> (B, latent_dim, T / prod(strides)): per stage, `res_blocks` residual
    units then a strided convolution to `channels[i]`."""

    def __init__(
        self, channels: Sequence[int], strides: Sequence[int], latent_dim: int, res_blocks: int = 0
    ) -> None:
        super().__init__()
        strides = _check_strides(strides, channels)
        layers: list[nn.Module] = []
        c_in = 1
        for c, s in zip(channels, strides):
            if c_in > 1:
                layers += _units(c_in, res_blocks)
            layers += [nn.Conv1d(c_in, c, 2 * s, stride=s, padding=s // 2), nn.ELU()]
            c_in = c
        layers += [*_units(c_in, res_blocks), nn.Conv1d(c_in, latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, latent_dim, F) -> (B, 1, F * prod(strides)): the encoder's mirror, transposed
    convolutions up from `channels[-1]` to `channels[0]`, then a 7-tap output convolution."""

    def __init__(
        self, channels: Sequence[int], strides: Sequence[int], latent_dim: int, res_blocks: int = 0
    ) -> None:
        super().__init__()
        strides = _check_strides(strides, channels)
        channels = [int(c) for c in channels]
        layers: list[nn.Module] = [nn.Conv1d(latent_dim, channels[-1], 3, padding=1), nn.ELU()]
        for i in reversed(range(len(strides))):
            c_in, c_out, s = channels[i], channels[max(i - 1, 0)], strides[i]
            layers += _units(c_in, res_blocks)
            layers += [nn.ConvTranspose1d(c_in, c_out, 2 * s, stride=s, padding=s // 2), nn.ELU()]
        layers.append(nn.Conv1d(channels[0], 1, 7, padding=3))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def _quantizer(node: Mapping | Quantizer, dim: int) -> Quantizer:
    """A quantizer module, or one built from its config for `dim` latent channels (an
    allow-listed class and checked values: `src.utils.build`)."""
    if isinstance(node, Quantizer):
        return node
    q = build_component(target_config(node, "quantizer"), "model.net.quantizer", dim=dim)
    if not isinstance(q, Quantizer):
        raise TypeError(f"{node['_target_']} is not a Quantizer")
    return q


class ConvCodec(nn.Module):
    """Encoder, quantizer, decoder. `forward(x)` gives the reconstruction (B, 1, T) and the
    `Quantized` frames; `encode`/`decode` are the two halves a sender and a receiver run.

    Any length works: the input is zero-padded on the right to a whole number of hops and the
    output cut back to T. The bitrate is computed from the architecture: `frame_rate` hops a
    second times `quantizer.bits_per_frame`.
    """

    input_kind = "audio"

    def __init__(
        self,
        input_shape: Sequence[int],
        sample_rate: int,
        channels: Sequence[int],
        strides: Sequence[int],
        latent_dim: int,
        quantizer: Mapping | Quantizer,
        res_blocks: int = 0,
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 2 or shape[0] != 1:
            raise ValueError(f"ConvCodec takes mono waveforms (1, T), got input_shape {shape}")
        self.sample_rate = int(sample_rate)
        self.strides = _check_strides(strides, channels)
        self.hop = math.prod(self.strides)
        self.encoder = ConvEncoder(channels, self.strides, latent_dim, res_blocks)
        self.quantizer = _quantizer(quantizer, int(latent_dim))
        if self.quantizer.dim != latent_dim:
            raise ValueError(f"quantizer dim {self.quantizer.dim} != latent_dim {latent_dim}")
        self.decoder = ConvDecoder(channels, self.strides, latent_dim, res_blocks)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def bitrate_kbps(self) -> float:
        """Nominal bitrate: frames/s x sum over stages of log2(codebook size), in kbit/s."""
        return self.frame_rate * self.quantizer.bits_per_frame / 1000.0

    def _pad(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, T) waveforms, got {tuple(x.shape)}")
        return F.pad(x, (0, -x.shape[-1] % self.hop))

    def forward(self, x: Tensor) -> tuple[Tensor, Quantized]:
        q = self.quantizer(self.encoder(self._pad(x)))
        return self.decoder(q.z)[..., : x.shape[-1]], q

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """(B, 1, T) -> (B, stages, F) int64 codes: everything a receiver needs (with T)."""
        return self.quantizer(self.encoder(self._pad(x))).codes

    @torch.no_grad()
    def decode(self, codes: Tensor, length: int | None = None) -> Tensor:
        """(B, stages, F) codes -> (B, 1, length) waveforms (default F x hop)."""
        y = self.decoder(self.quantizer.decode(codes))
        return y if length is None else y[..., :length]

    def weight_counts(self) -> dict[str, int]:
        """Trained parameters and codebook entries (EMA buffers): both are the codec's size."""
        params = sum(p.numel() for p in self.parameters())
        books = sum(b.numel() for n, b in self.named_buffers() if n.endswith("codebook"))
        return {"parameters": params, "codebooks": books, "total": params + books}
