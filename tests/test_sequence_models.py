"""The sequence task's networks and module: causality, rollouts, sizes, losses, checkpoints."""

from __future__ import annotations

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from src.models.components.sequence import CausalTransformer, SequenceRNN
from src.models.sequence_module import SequenceModule
from src.models.tasks import checked_hyper_parameters
from tests.helpers.models import DEFAULT_DATA, MODEL_DIR, assert_size_ladder, stated_size

SEQ_CONFIGS = sorted(MODEL_DIR.glob("seq_*.yaml"))
H = 12


def nets(ahead: int = 1):
    torch.manual_seed(0)
    out = {
        "lstm": SequenceRNN(H, ahead, cell="lstm", hidden_size=16, num_layers=2),
        "gru": SequenceRNN(H, ahead, cell="gru", hidden_size=16, input_proj=8),
        "transformer": CausalTransformer(H, ahead, dim=16, n_heads=2, num_layers=2),
    }
    for net in out.values():  # a trained-looking output layer (it starts at zero)
        torch.nn.init.normal_(net.out.weight, std=0.3)
    return out


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer"])
@pytest.mark.parametrize("ahead", [1, 3])
def test_changing_a_later_frame_never_changes_an_earlier_prediction(one_thread, name, ahead):
    net = nets(ahead)[name].eval()
    x = torch.rand(3, 10, H)
    y = net(x)
    assert y.shape == (3, 10, ahead, H)
    for t in (0, 4, 8):
        z = x.clone()
        z[:, t + 1] = torch.rand(3, H)
        y2 = net(z)
        assert torch.equal(y2[:, : t + 1], y[:, : t + 1]), f"{name}: output <= {t} changed"
        assert not torch.allclose(y2[:, t + 1], y[:, t + 1])


@pytest.mark.parametrize("name", ["lstm", "gru", "transformer"])
def test_stepping_with_a_state_gives_the_whole_sequence_outputs(one_thread, name):
    net = nets(2)[name].eval()
    x = torch.rand(2, 9, H)
    whole = net(x)
    y, state = net.step(x[:, :4])  # prime, then one frame and a few at a time
    parts = [y]
    for piece in (x[:, 4:5], x[:, 5:6], x[:, 6:9]):
        y, state = net.step(piece, state)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)


def module(net_cfg: dict, **kw) -> SequenceModule:
    spec = DEFAULT_DATA["frames"]
    return SequenceModule(net=net_cfg, **{**spec.model_kwargs(), "context": 6, "horizon": 3, **kw})


RNN = {"_target_": "src.models.components.sequence.SequenceRNN", "hidden_size": 16}


def test_an_untrained_residual_model_repeats_the_last_frame(one_thread):
    m = module(RNN).eval()
    x = torch.rand(4, 9, m.spec.n_mels)
    assert torch.equal(m(x)[:, :, 0], x)
    assert torch.equal(m.rollout(x[:, :6], 3), x[:, 5:6].expand(-1, 3, -1))
    pred = m.predict_record(x, context=6)
    assert torch.equal(pred["rollout"][:, 6:], x[:, 5:6].expand(-1, 3, -1))
    assert torch.equal(pred["one_step"][:, 1:], x[:, :-1])


def test_rollouts_stay_in_the_pixel_range_and_match_feeding_back_by_hand(one_thread):
    m = module(RNN).eval()
    torch.nn.init.normal_(m.net.out.weight, std=2.0)
    x = torch.rand(2, 6, m.spec.n_mels)
    gen = m.rollout(x, 4)
    assert gen.shape == (2, 4, m.spec.n_mels) and 0.0 <= float(gen.min()) <= float(gen.max()) <= 1
    seq = x
    for _ in range(4):  # the slow way: the whole sequence again at every step
        nxt = m(seq)[:, -1, 0].clamp(0.0, 1.0)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    assert torch.allclose(gen, seq[:, 6:], atol=1e-5)


def test_k_ahead_targets_and_spectral_loss_terms_have_gradients(one_thread):
    weights = {"mse": 0.1, "centroid": 0.1, "bandwidth": 0.1, "flatness": 0.1, "entropy": 0.1}
    m = module(RNN, ahead=3, loss="l1", spectral_loss=weights)
    torch.nn.init.normal_(m.net.out.weight, std=0.1)
    w = torch.rand(2, 9, m.spec.n_mels)
    targets = m.targets(w)
    assert targets.shape == (2, 6, 3, m.spec.n_mels)
    assert torch.equal(targets[:, 2, 1], w[:, 4]) and torch.equal(targets[:, 5, 2], w[:, 8])
    loss = m.compute_loss(m(w[:, :-1]), w)
    loss.backward()
    grads = [p.grad for p in m.net.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)


def test_scheduled_sampling_ramps_up(one_thread):
    m = module(RNN, scheduled_sampling={"max_prob": 0.4, "start_epoch": 2, "ramp_epochs": 4})
    m._trainer = type("T", (), {"current_epoch": 0})()  # only the epoch is read

    def prob_at(epoch):
        m._trainer.current_epoch = epoch
        return m.sampling_prob()

    assert [prob_at(e) for e in (0, 1, 2, 3, 5, 9)] == pytest.approx([0, 0, 0.1, 0.2, 0.4, 0.4])


def test_hyper_parameters_pass_the_checkpoint_allow_list():
    m = module(RNN, spectral_loss={"mse": 0.01}, scheduled_sampling={"max_prob": 0.2})
    ckpt = {"task": "sequence", "hyper_parameters": dict(m.hparams), "state_dict": {}}
    assert checked_hyper_parameters(ckpt) == dict(m.hparams)
    rebuilt = SequenceModule(**dict(m.hparams))
    assert rebuilt.hparams == m.hparams


@pytest.mark.parametrize("path", SEQ_CONFIGS, ids=lambda p: p.stem)
def test_config_names_state_the_measured_size(one_thread, path):
    cfg = OmegaConf.load(path)
    model = hydra.utils.instantiate(cfg, **DEFAULT_DATA["frames"].model_kwargs())
    total = sum(p.numel() for p in model.parameters())
    assert total == model.param_counts["total"]
    stated = stated_size(path)
    assert abs(total - stated) <= 0.1 * stated, f"{path.name}: measured {total:,}"
    assert f"{total:,}" in path.read_text(), f"{path.name}: comment should say {total:,}"


@pytest.mark.parametrize("family", ["seq_lstm_", "seq_gru_", "seq_transformer_"])
def test_each_family_has_two_sizes(one_thread, family):
    assert_size_ladder([p for p in SEQ_CONFIGS if p.stem.startswith(family)], at_least=2)
