"""Networks of the sequence task: frames in, the frames that follow out.

Every network maps (B, T, H) frames to (B, T, ahead, H): at step t its guess of frames
t+1..t+ahead from frames 0..t only (causal). `step(x, state)` runs the same network a few
frames at a time with a carried state (None to start), for free-running rollouts; fed a
sequence piece by piece it gives what `forward` gives on the whole (tested). The output layer
starts at zero, so a network whose output is added to the last frame (the task's residual
mode) starts as the repeat-last-frame predictor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.utils.checks import check_choice

CELLS = ("lstm", "gru")


def _zero_output(layer: nn.Linear) -> nn.Linear:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SequenceRNN(nn.Module):
    """Stacked LSTM or GRU over frames; an optional linear projection of each frame first.

    Args:
        n_mels: bins per frame (from the data).
        ahead: frames predicted at each step (t+1..t+ahead).
        cell: "lstm" or "gru".
        hidden_size, num_layers: width and depth of the stack.
        dropout: between stacked layers.
        input_proj: project each frame to this size before the stack (None: no projection).
    """

    input_kind = "frames"

    def __init__(
        self,
        n_mels: int,
        ahead: int = 1,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.0,
        input_proj: int | None = None,
    ) -> None:
        super().__init__()
        check_choice("cell", cell, CELLS)
        if min(n_mels, ahead, hidden_size, num_layers) < 1:
            raise ValueError("n_mels, ahead, hidden_size and num_layers must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_mels, self.ahead, self.cell = n_mels, ahead, cell
        self.proj = nn.Linear(n_mels, input_proj) if input_proj else None
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            input_size=input_proj or n_mels,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out = _zero_output(nn.Linear(hidden_size, ahead * n_mels))
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight_hh"):  # orthogonal per gate: norm-preserving at start
                for gate in p.data.chunk(4 if cell == "lstm" else 3, dim=0):
                    nn.init.orthogonal_(gate)
            elif name.startswith("bias"):
                nn.init.zeros_(p.data)
                if cell == "lstm" and name.startswith("bias_ih"):  # remember by default
                    p.data[hidden_size : 2 * hidden_size] = 1.0

    def step(self, x: Tensor, state=None) -> tuple[Tensor, tuple]:
        """(B, T, H) frames after `state` -> ((B, T, ahead, H), the state after them)."""
        h = self.proj(x) if self.proj is not None else x
        h, state = self.rnn(h, state)
        return self.out(h).unflatten(-1, (self.ahead, self.n_mels)), state

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x)[0]


def sinusoids(positions: Tensor, dim: int) -> Tensor:
    """(T, dim) fixed sinusoidal position codes (no parameters: any length works)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angle = positions.float()[:, None] * freq[None]
    code = torch.cat([angle.sin(), angle.cos()], dim=1)
    return F.pad(code, (0, dim - 2 * half))


class CausalBlock(nn.Module):
    """Pre-norm transformer block: causal self-attention (scaled_dot_product_attention) and
    a feed-forward layer, each added to the residual stream."""

    def __init__(self, dim: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None):
        """(B, T, D) -> (B, T, D) and this block's keys and values so far (past + these)."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        p = self.dropout if self.training else 0.0
        if past is None:
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        elif t == 1:  # one new frame sees every earlier one
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:  # several new frames after a past: causal, aligned to the end
            n = k.shape[2]
            mask = torch.ones(t, n, dtype=torch.bool, device=x.device).tril(n - t)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, (k, v)


class CausalTransformer(nn.Module):
    """A small decoder-only transformer over frames: each frame projected to `dim`, plus
    sinusoidal positions, through `num_layers` causal blocks; rollouts cache keys and values.

    Args:
        n_mels: bins per frame (from the data).
        ahead: frames predicted at each step.
        dim, n_heads, num_layers, ff_mult: width, heads, depth, feed-forward expansion.
        dropout: on the residual branches and the attention weights (training only).
    """

    input_kind = "frames"

    def __init__(
        self,
        n_mels: int,
        ahead: int = 1,
        dim: int = 64,
        n_heads: int = 4,
        num_layers: int = 2,
        ff_mult: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(n_mels, ahead, dim, n_heads, num_layers, ff_mult) < 1 or dim % n_heads:
            raise ValueError(f"need positive sizes and dim % n_heads == 0, got {dim}, {n_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_mels, self.ahead, self.dim = n_mels, ahead, dim
        self.inp = nn.Linear(n_mels, dim)
        self.blocks = nn.ModuleList(
            CausalBlock(dim, n_heads, ff_mult, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.out = _zero_output(nn.Linear(dim, ahead * n_mels))

    def step(self, x: Tensor, state=None) -> tuple[Tensor, tuple]:
        """(B, T, H) frames after `state` -> ((B, T, ahead, H), state): (frames so far,
        every block's keys and values)."""
        start = 0 if state is None else state[0]
        pos = torch.arange(start, start + x.shape[1], device=x.device)
        h = self.inp(x) + sinusoids(pos, self.dim)
        cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, None if state is None else state[1][i])
            cache.append(kv)
        y = self.out(self.norm(h)).unflatten(-1, (self.ahead, self.n_mels))
        return y, (start + x.shape[1], cache)

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x)[0]
