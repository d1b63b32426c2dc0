"""FrameRNN: time frames (W) are the sequence, C*H their features; pools, cells, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from src.data.vimh import VIMHDataset
from src.models.components.rnn import AttentionPool, FrameRNN, frames
from tests.helpers.models import (
    MODEL_DIR,
    assert_size_ladder,
    build_config,
    check_config_size,
    train_toy,
)
from tests.helpers.runs import QUIET, assert_beats_chance, assert_complete_metrics
from tests.helpers.vimh import make_vimh

RNN_CONFIGS = sorted([*MODEL_DIR.glob("lstm_*.yaml"), *MODEL_DIR.glob("gru_*.yaml")])


pytestmark = pytest.mark.usefixtures("one_thread")


def test_frames_layout():
    x = torch.randn(2, 3, 5, 7)
    seq = frames(x)
    assert seq.shape == (2, 7, 15)
    b, t, c, h = 1, 4, 2, 3
    assert seq[b, t, c * 5 + h] == x[b, c, h, t]


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 16), (2, 16, 48), (1, 1, 1)])
@pytest.mark.parametrize("pool", ["last", "mean", "attention"])
def test_shapes_and_feature_size(shape, pool):
    c, h, w = shape
    net = FrameRNN(shape, hidden_size=12, pool=pool).eval()
    assert net.rnn.input_size == net.frame_features == c * h
    x = torch.randn(3, *shape, requires_grad=True)
    y = net(x)
    assert y.shape == (3, net.out_features) == (3, 12)
    assert net.sequence(x).shape == (3, w, 12)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "features"),
    [
        ({"cell": "gru"}, 10),
        ({"bidirectional": True}, 20),
        ({"cell": "gru", "bidirectional": True, "pool": "attention"}, 20),
        ({"num_layers": 2, "dropout": 0.1, "pool": "mean"}, 10),
        ({"input_proj": 6, "norm_input": True}, 10),
    ],
)
def test_cells_and_options(kwargs, features):
    net = FrameRNN((2, 8, 12), hidden_size=10, **kwargs)
    assert isinstance(net.rnn, torch.nn.GRU if kwargs.get("cell") == "gru" else torch.nn.LSTM)
    assert net.rnn.input_size == kwargs.get("input_proj", 16)
    assert net(torch.randn(4, 2, 8, 12)).shape == (4, features)
    assert net.out_features == features


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_axis_is_time(cell):
    """A unidirectional RNN is causal along W: changing the last frame moves only the last
    output step; reversing time or reordering one frame's frequency bins changes the output."""
    torch.manual_seed(0)
    net = FrameRNN((1, 6, 9), cell=cell, hidden_size=8, pool="last").eval()
    x = torch.randn(2, 1, 6, 9)
    late = x.clone()
    late[..., -1] += 1.0  # the last time frame
    seq, seq_late = net.sequence(x), net.sequence(late)
    assert torch.allclose(seq[:, :-1], seq_late[:, :-1])
    assert not torch.allclose(seq[:, -1], seq_late[:, -1])

    y = net(x)
    assert not torch.allclose(y, net(x.flip(-1)), atol=1e-5)  # time reversed
    shuffled = x.clone()
    shuffled[..., 4] = x[..., 4].flip(-1)  # frequency bins of frame 4 reversed
    assert not torch.allclose(y, net(shuffled), atol=1e-5)


def test_bidirectional_last_pool_reads_both_ends():
    torch.manual_seed(0)
    net = FrameRNN((1, 4, 7), hidden_size=5, bidirectional=True, pool="last").eval()
    x = torch.randn(3, 1, 4, 7)
    _, (h_n, _) = net.rnn(frames(x))
    # h_n[0]: forward after the last frame; h_n[1]: backward after the first frame.
    assert torch.allclose(net(x), torch.cat([h_n[0], h_n[1]], dim=1), atol=1e-6)


def test_attention_pool_starts_as_mean_and_weights_steps():
    x = torch.randn(2, 5, 4)
    pool = AttentionPool(4)
    assert torch.allclose(pool(x), x.mean(dim=1), atol=1e-6)
    with torch.no_grad():
        pool.score.copy_(torch.tensor([1.0, -2.0, 0.5, 0.0]))
    weights = torch.softmax(x @ pool.score, dim=1)
    assert torch.allclose(pool(x), (weights[..., None] * x).sum(1), atol=1e-6)
    net = FrameRNN((1, 4, 6), hidden_size=4, pool="attention").eval()
    assert torch.allclose(net(x[:, None, :4, :]), net.sequence(x[:, None, :4, :]).mean(1))


def test_norm_input_standardises_frequency_bins_not_frames():
    """BatchNorm per bin keeps a frame's loudness (a level head needs it); off by default."""
    net = FrameRNN((2, 3, 5), hidden_size=4, norm_input=True)
    assert isinstance(net.norm, torch.nn.BatchNorm1d) and net.norm.num_features == 6
    assert FrameRNN((2, 3, 5), hidden_size=4).norm is None
    assert net(torch.randn(4, 2, 3, 5)).shape == (4, 4)


def test_lstm_forget_gate_bias():
    net = FrameRNN((1, 4, 4), hidden_size=3)
    assert net.rnn.bias_ih_l0[3:6].eq(1.0).all() and net.rnn.bias_hh_l0.eq(0.0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (8, 8)},
        {"cell": "rnn"},
        {"pool": "max"},
        {"hidden_size": 0},
        {"num_layers": 0},
        {"input_proj": 0},
        {"dropout": 1.0},
    ],
)
def test_rejects_bad_arguments(kwargs):
    args = {"input_shape": (1, 8, 8), "hidden_size": 4} | kwargs
    with pytest.raises(ValueError):
        FrameRNN(**args)


# --- configs and training --------------------------------------------------------------------
def test_lstm_sizes_and_a_gru():
    assert_size_ladder([p for p in RNN_CONFIGS if p.stem.startswith("lstm_")], at_least=2)
    gru = [build_config(p) for p in RNN_CONFIGS if p.stem.startswith("gru_")]
    assert gru and all(m.net.cell == "gru" for m in gru)


@pytest.mark.parametrize("path", RNN_CONFIGS, ids=lambda p: p.stem)
def test_config_name_matches_count(path):
    model = check_config_size(path, FrameRNN)
    assert model.net.frame_features == 32


@pytest.fixture(scope="module")
def toy_rect(tmp_path_factory) -> Path:
    """A rectangular 2-channel toy set (16 bins x 12 frames): frames of 2*16 features."""
    return make_vimh(tmp_path_factory.mktemp("rect"), n_train=64, n_val=32, n_test=32,
                     height=16, width=12, channels=2)  # fmt: skip


@pytest.mark.parametrize("name", [p.stem for p in RNN_CONFIGS])
def test_config_trains_fast_dev_run(compose_cfg, toy_rect, name):
    metrics = train_toy(compose_cfg, toy_rect, name, ["debug=fdr"])
    assert_complete_metrics(metrics, VIMHDataset(toy_rect).params)


@pytest.mark.parametrize(
    ("model", "net"),
    [("lstm_23k", ["model.net.hidden_size=32"]), ("gru_33k", ["model.net.hidden_size=24"])],
)
def test_rnn_learns(compose_cfg, toy, model, net):
    overrides = [*net, "trainer.max_epochs=10", "data.batch_size=32", *QUIET]
    assert_beats_chance(train_toy(compose_cfg, toy, model, overrides))
