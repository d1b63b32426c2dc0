"""Quantizers of a codec's latent frames: vector quantization with EMA codebooks, residual VQ
and finite scalar quantization (FSQ).

Every quantizer takes (B, D, F) latent frames (D channels, F frames: time stays the last axis)
and returns a `Quantized`: the quantized frames with a straight-through gradient (the decoder's
gradient reaches the encoder as if quantization were the identity), the integer codes
(B, stages, F), and the loss it adds to training (the commitment loss; 0 for FSQ). Each frame is
quantized on its own, so an item's codes never depend on the other items of its batch; only
the EMA codebook update of a training step reads the whole batch, after the step's codes are
chosen. The bitrate follows from `codebook_sizes`: each stage spends log2(size) bits a frame.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class Quantized(NamedTuple):
    z: Tensor  # (B, D, F) quantized latents, straight-through gradient to the input
    codes: Tensor  # (B, S, F) int64 code indices, one row per stage
    loss: Tensor  # scalar added to the training loss (commitment), 0 when there is none


class Quantizer(nn.Module):
    """Base: `dim` latent channels in, `codebook_sizes` (one per stage) out."""

    dim: int
    codebook_sizes: tuple[int, ...]

    @property
    def bits_per_frame(self) -> float:
        """Bits a frame costs without entropy coding: sum over stages of log2(codebook size)."""
        return float(sum(math.log2(k) for k in self.codebook_sizes))

    def decode(self, codes: Tensor) -> Tensor:
        """(B, S, F) codes -> (B, D, F) quantized latents (what a receiver reconstructs)."""
        raise NotImplementedError


def _frames(z: Tensor) -> Tensor:
    """(B, D, F) -> (B*F, D): one row per frame."""
    return z.transpose(1, 2).reshape(-1, z.shape[1])


def _unframes(rows: Tensor, b: int, f: int) -> Tensor:
    return rows.reshape(b, f, -1).transpose(1, 2)


def _all_reduce_(t: Tensor) -> Tensor:
    """Sum over processes (data-parallel training keeps one codebook for all ranks)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantization with a codebook learned by exponential moving
    averages (not by gradient) and a commitment loss that keeps the encoder near its codes.

    The codebook starts from the first training batch's frames (a random draw of them), and
    codes whose EMA count falls below `dead_threshold` are restarted at random frames of the
    current batch, so no entry stays unused for long. Codebook entries are buffers: they are
    part of the model's size (`src/models/codec_module.py` counts them) but not parameters.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int = 256,
        decay: float = 0.99,
        commitment: float = 0.25,
        eps: float = 1e-5,
        dead_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.dim, self.codebook_size = int(dim), int(codebook_size)
        self.codebook_sizes = (self.codebook_size,)
        self.decay, self.commitment, self.eps = float(decay), float(commitment), float(eps)
        self.dead_threshold = float(dead_threshold)
        self.register_buffer("codebook", torch.randn(codebook_size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, rows: Tensor) -> Tensor:
        """(N, D) -> (N,) index of the nearest codebook entry (squared Euclidean distance)."""
        c = self.codebook
        dist2 = rows.square().sum(1, keepdim=True) - 2 * rows @ c.t() + c.square().sum(1)[None]
        return dist2.argmin(dim=1)

    def quantize_rows(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, D) rows -> (quantized rows with straight-through gradient, codes, commitment)."""
        if self.training and not bool(self.initialised):
            self._initialise(rows.detach())
        codes = self.nearest(rows.detach())
        q = F.embedding(codes, self.codebook)
        loss = self.commitment * F.mse_loss(rows, q.detach())
        if self.training:
            self._update(rows.detach(), codes)
        return rows + (q - rows).detach(), codes, loss

    def forward(self, z: Tensor) -> Quantized:
        b, _, f = z.shape
        rows, codes, loss = self.quantize_rows(_frames(z))
        return Quantized(_unframes(rows, b, f), codes.reshape(b, 1, f), loss)

    def decode(self, codes: Tensor) -> Tensor:
        b, _, f = codes.shape
        return _unframes(F.embedding(codes.reshape(-1), self.codebook), b, f)

    @torch.no_grad()
    def _initialise(self, rows: Tensor) -> None:
        pick = torch.randint(0, len(rows), (self.codebook_size,), device=rows.device)
        self.codebook.copy_(rows[pick])
        self.embed_sum.copy_(rows[pick])
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, rows: Tensor, codes: Tensor) -> None:
        """EMA of each code's frame count and frame sum; the codebook is their ratio."""
        counts = torch.bincount(codes, minlength=self.codebook_size).to(rows.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, rows)
        _all_reduce_(counts), _all_reduce_(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        # Laplace smoothing keeps a rarely chosen code's division finite.
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold
        if dead.any():
            pick = torch.randint(0, len(rows), (int(dead.sum()),), device=rows.device)
            self.codebook[dead] = rows[pick]
            self.embed_sum[dead] = rows[pick]
            self.cluster_size[dead] = 1.0


class ResidualVQ(Quantizer):
    """`n_stages` vector quantizers in cascade: each quantizes what the previous ones left
    (the residual), so every stage adds log2(codebook_size) bits a frame and detail."""

    def __init__(self, dim: int, n_stages: int = 4, codebook_size: int = 256, **vq) -> None:
        super().__init__()
        if n_stages < 1:
            raise ValueError(f"n_stages must be >= 1, got {n_stages}")
        self.dim = int(dim)
        self.stages = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, **vq) for _ in range(n_stages)
        )
        self.codebook_sizes = tuple(s.codebook_size for s in self.stages)

    def forward(self, z: Tensor) -> Quantized:
        b, _, f = z.shape
        rows = _frames(z)
        residual, total = rows, torch.zeros_like(rows)
        codes, loss = [], rows.new_zeros(())
        for stage in self.stages:
            q, c, l_s = stage.quantize_rows(residual)
            q = q.detach()  # each stage's value; the gradient passes straight through below
            total = total + q
            residual = residual - q
            codes.append(c)
            loss = loss + l_s
        out = rows + (total - rows).detach()
        return Quantized(_unframes(out, b, f), torch.stack(codes, 1).reshape(b, f, -1).mT, loss)

    def decode(self, codes: Tensor) -> Tensor:
        return sum(s.decode(codes[:, i : i + 1]) for i, s in enumerate(self.stages))


class FiniteScalarQuantizer(Quantizer):
    """Finite scalar quantization: channel i is bounded (tanh) to `levels[i]` values and
    rounded, with a straight-through gradient. No codebook to learn and no commitment loss;
    the implicit codebook is every combination of levels, one code per frame."""

    def __init__(self, dim: int, levels: list[int]) -> None:
        super().__init__()
        levels = [int(v) for v in levels]
        if len(levels) != dim:
            raise ValueError(f"FSQ needs one level count per latent channel: dim={dim}, {levels=}")
        if min(levels) < 2:
            raise ValueError(f"FSQ levels must be >= 2, got {levels}")
        self.dim, self.levels = int(dim), levels
        self.codebook_sizes = (math.prod(levels),)
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("half_width", (lv - 1) / 2, persistent=False)
        self.register_buffer("offset", (1 - lv % 2) / 2, persistent=False)  # 0.5 for even
        radix = torch.cumprod(torch.tensor([1, *levels[:-1]]), 0)
        self.register_buffer("radix", radix, persistent=False)

    def forward(self, z: Tensor) -> Quantized:
        half, offset = self.half_width[None, :, None], self.offset[None, :, None]
        # Bound to (-half - offset, half - offset) so rounding gives exactly `levels` values.
        bounded = torch.tanh(z) * (half + offset - 1e-3) - offset
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        steps = (torch.round(bounded.detach()) + offset + half).long()  # 0 .. levels-1
        codes = (steps * self.radix[None, :, None]).sum(1, keepdim=True)
        return Quantized((rounded + offset) / (half + offset), codes, z.new_zeros(()))

    def decode(self, codes: Tensor) -> Tensor:
        lv = torch.tensor(self.levels, device=codes.device)[None, :, None]
        steps = (codes // self.radix[None, :, None]) % lv
        half, offset = self.half_width[None, :, None], self.offset[None, :, None]
        return (steps - half) / (half + offset)
