"""A Vision Transformer backbone for spectrogram images of any (C, H, W) shape.

Patches come from a strided Conv2d, so they may overlap as in the Audio Spectrogram
Transformer (e.g. 16x16 patches every 10 pixels) and be rectangular (tall patches cover more
frequency bins). The input is zero-padded at the bottom/right so the last patch fits, and a
patch larger than the input is shrunk to it, so tiny inputs still work. Attention goes through
`F.scaled_dot_product_attention`, which picks fused kernels on GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.utils.checks import check_choice, image_shape
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

POS_EMBEDS = ("learned", "sincos")
POOLS = ("cls", "mean")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what} must be a positive int or (h, w) pair, got {value!r}")
    return pair


def grid_size(size: int, patch: int, stride: int, pad: bool) -> int:
    """Patches along one axis: with `pad` the last partial patch is kept (input padded)."""
    if size <= patch:
        return 1
    steps = (size - patch) / stride
    return (math.ceil(steps) if pad else math.floor(steps)) + 1


def sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """(grid_h * grid_w, dim) fixed embedding: half the channels encode the row, half the column.

    Rows (frequency) and columns (time) get separate codes so attention can tell a shift in
    pitch from a shift in time.
    """
    if dim % 4:
        raise ValueError(f"sincos position embedding needs embed_dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )
    r = rows.reshape(-1, 1) * omega
    c = cols.reshape(-1, 1) * omega
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1).float()


def _trunc_normal(t: Tensor, std: float) -> None:
    """Normal cut at 2 std (torch's default bounds are +-2 absolute, no cut at small std)."""
    nn.init.trunc_normal_(t, std=std, a=-2.0 * std, b=2.0 * std)


class SelfAttention(nn.Module):
    """Multi-head self-attention through SDPA (fused/flash kernels where available)."""

    def __init__(
        self, dim: int, num_heads: int, attn_dropout: float = 0.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.attn_dropout = float(attn_dropout)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        p = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.drop(self.proj(out.transpose(1, 2).reshape(b, n, d)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x)); pre-norm keeps the
    residual path clean, so training stays stable at the high learning rates small ViTs like."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = max(1, round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SpectrogramViT(nn.Module):
    """Patch embedding + position embedding + pre-norm encoder, pooled to `embed_dim` features.

    `patch_stride` defaults to the patch size (no overlap). `pos_embed="learned"` learns one
    vector per position of the grid computed from `input_shape` (starting from the sinusoid,
    interpolated if a different size comes in); `"sincos"` is a fixed 2-D sinusoidal code.
    `pool="cls"` reads a class token, `"mean"` averages the patch tokens.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        patch_size: int | Sequence[int] = 8,
        patch_stride: int | Sequence[int] | None = None,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        pos_embed: str = "learned",
        pool: str = "cls",
        pad: bool = True,
    ) -> None:
        super().__init__()
        shape = image_shape(input_shape)
        check_choice("pos_embed", pos_embed, POS_EMBEDS)
        check_choice("pool", pool, POOLS)
        if embed_dim < 1 or depth < 0 or num_heads < 1 or mlp_ratio <= 0:
            raise ValueError("embed_dim, num_heads and mlp_ratio must be positive, depth >= 0")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if pos_embed == "sincos" and embed_dim % 4:
            raise ValueError(f"pos_embed='sincos' needs embed_dim divisible by 4, got {embed_dim}")
        c, h, w = shape
        ph, pw = _pair(patch_size, "patch_size")
        stride = _pair(patch_stride if patch_stride is not None else (ph, pw), "patch_stride")
        if ph > h or pw > w:
            log.info(
                f"patch {ph}x{pw} is larger than the {h}x{w} input: using {min(ph, h)}x{min(pw, w)}"
            )
            ph, pw = min(ph, h), min(pw, w)

        self.input_shape = shape
        self.patch_size = (ph, pw)
        self.patch_stride = stride
        self.pad = bool(pad)
        self.grid = (grid_size(h, ph, stride[0], pad), grid_size(w, pw, stride[1], pad))
        self.num_patches = self.grid[0] * self.grid[1]
        self.pool = pool
        self.pos_kind = pos_embed
        self.out_features = embed_dim

        self.patch_embed = nn.Conv2d(c, embed_dim, kernel_size=(ph, pw), stride=stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
        else:
            # Not saved: it is a function of the grid, rebuilt identically on load.
            self.register_buffer(
                "pos_embed", sincos_2d(*self.grid, embed_dim)[None], persistent=False
            )
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *(
                EncoderBlock(embed_dim, num_heads, mlp_ratio, dropout, attn_dropout)
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal(m.weight, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The patch projection is a linear map of a flattened patch: LeCun-style scale keeps
        # token magnitudes near 1 whatever the patch size.
        fan_in = self.patch_embed.weight[0].numel()
        _trunc_normal(self.patch_embed.weight, 1.0 / math.sqrt(fan_in))
        nn.init.zeros_(self.patch_embed.bias)
        if isinstance(self.pos_embed, nn.Parameter):
            # Start learned positions from the 2-D sinusoid: with the usual N(0, 0.02) start,
            # position is nearly invisible next to unit-scale tokens and short runs never
            # learn which frequency row a patch came from (toy pitch accuracy stayed near chance).
            if self.out_features % 4 == 0:
                with torch.no_grad():
                    self.pos_embed.copy_(sincos_2d(*self.grid, self.out_features)[None])
            else:
                _trunc_normal(self.pos_embed, 0.02)
        if self.cls_token is not None:
            _trunc_normal(self.cls_token, 0.02)

    def param_groups(self, lr: float | None = None) -> list[dict]:
        """Weight decay only on matrices: biases, norms, position and class embeddings keep 0,
        the usual transformer recipe (decaying them only pulls them toward zero)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.ndim < 2 or name in ("pos_embed", "cls_token"):
                no_decay.append(p)
            else:
                decay.append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _grid_for(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(grid_h, grid_w, pad_h, pad_w) for an h x w input."""
        (ph, pw), (sh, sw) = self.patch_size, self.patch_stride
        if h < ph or w < pw:
            raise ValueError(f"input {h}x{w} is smaller than the {ph}x{pw} patch")
        gh, gw = grid_size(h, ph, sh, self.pad), grid_size(w, pw, sw, self.pad)
        pad_h = max(0, (gh - 1) * sh + ph - h) if self.pad else 0
        pad_w = max(0, (gw - 1) * sw + pw - w) if self.pad else 0
        return gh, gw, pad_h, pad_w

    def _position(self, gh: int, gw: int) -> Tensor:
        if (gh, gw) == self.grid:
            return self.pos_embed
        if self.pos_kind == "sincos":
            return sincos_2d(gh, gw, self.out_features)[None].to(self.pos_embed)
        pos = self.pos_embed.reshape(1, *self.grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=False)
        return pos.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)

    def tokens(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, [1 +] N, D) encoded tokens (before pooling)."""
        gh, gw, pad_h, pad_w = self._grid_for(x.shape[-2], x.shape[-1])
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        t = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major grid
        t = t + self._position(gh, gw)
        if self.cls_token is not None:
            t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return self.norm(self.blocks(self.pos_drop(t)))

    def forward(self, x: Tensor) -> Tensor:
        t = self.tokens(x)
        return t[:, 0] if self.pool == "cls" else t.mean(dim=1)
