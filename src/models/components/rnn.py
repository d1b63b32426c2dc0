"""A recurrent backbone that reads a spectrogram frame by frame.

The image's W time frames are the sequence and each frame's C*H values (all channels of all
frequency bins) its features: (B, C, H, W) -> (B, W, C*H). An optional linear projection
shrinks wide frames before the LSTM/GRU, whose outputs are pooled over time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.utils.checks import check_choice, image_shape

CELLS = ("lstm", "gru")
POOLS = ("last", "mean", "attention")


def frames(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, W, C*H): one feature vector per time frame."""
    b, c, h, w = x.shape
    return x.permute(0, 3, 1, 2).reshape(b, w, c * h)


class AttentionPool(nn.Module):
    """Softmax over time of a learned score per step; starts as the mean (zero scores)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, D)
        weights = torch.softmax(x @ self.score, dim=1)
        return (weights.unsqueeze(-1) * x).sum(dim=1)


class FrameRNN(nn.Module):
    """LSTM/GRU over the time frames, pooled to `hidden_size * (2 if bidirectional else 1)`.

    `norm_input` standardises each frequency bin with BatchNorm (statistics over batch and
    time), not each frame with LayerNorm: a level head needs a frame's overall loudness, which
    a per-frame normalisation would remove. `pool="last"` takes the last step (bidirectional:
    the forward direction's last step and the backward direction's first, both having seen
    the whole sequence). `dropout` acts between stacked layers and on the pooled features.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pool: str = "last",
        input_proj: int | None = None,
        norm_input: bool = False,
    ) -> None:
        super().__init__()
        shape = image_shape(input_shape)
        check_choice("cell", cell, CELLS)
        check_choice("pool", pool, POOLS)
        if hidden_size < 1 or num_layers < 1:
            raise ValueError("hidden_size and num_layers must be >= 1")
        if input_proj is not None and input_proj < 1:
            raise ValueError(f"input_proj must be a positive int or None, got {input_proj}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        c, h, _ = shape
        self.input_shape = shape
        self.frame_features = c * h
        self.cell = cell
        self.hidden_size = hidden_size
        self.bidirectional = bool(bidirectional)
        self.pool_kind = pool
        self.out_features = hidden_size * (2 if bidirectional else 1)

        self.norm = nn.BatchNorm1d(self.frame_features) if norm_input else None
        self.proj = nn.Linear(self.frame_features, input_proj) if input_proj else None
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            input_size=input_proj or self.frame_features,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=self.bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attn = AttentionPool(self.out_features) if pool == "attention" else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.rnn.named_parameters():
            if name.startswith("weight_hh"):
                # Orthogonal per gate: keeps the recurrent map norm-preserving at the start.
                for gate in p.data.chunk(4 if self.cell == "lstm" else 3, dim=0):
                    nn.init.orthogonal_(gate)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p.data)
            elif name.startswith("bias"):
                nn.init.zeros_(p.data)
                if self.cell == "lstm" and name.startswith("bias_ih"):
                    # Forget-gate bias 1: remember by default, so gradients reach early frames.
                    n = self.hidden_size
                    p.data[n : 2 * n] = 1.0

    def sequence(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, W, out_features) RNN outputs, one per time frame."""
        seq = frames(x)
        if self.norm is not None:
            seq = self.norm(seq.transpose(1, 2)).transpose(1, 2)
        if self.proj is not None:
            seq = self.proj(seq)
        out, _ = self.rnn(seq)
        return out

    def forward(self, x: Tensor) -> Tensor:
        out = self.sequence(x)
        if self.pool_kind == "mean":
            pooled = out.mean(dim=1)
        elif self.pool_kind == "attention":
            pooled = self.attn(out)
        elif self.bidirectional:
            n = self.hidden_size
            pooled = torch.cat([out[:, -1, :n], out[:, 0, n:]], dim=1)
        else:
            pooled = out[:, -1]
        return self.dropout(pooled)
