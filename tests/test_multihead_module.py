"""MultiheadModule: code lookup tables, the four target modes, metrics and checkpoints."""

from __future__ import annotations

import functools
import math

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from src.data.vimh import ParamSpec
from src.models.heads import (
    MODES,
    RegressionHead,
    build_head,
    gaussian_soft_targets,
    ordinal_targets,
    resolve_head_modes,
)
from src.models.multihead_module import MultiheadModule
from src.models.tasks import module_from_checkpoint, read_checkpoint

SPECS = (
    ParamSpec("pitch", 45, 69, 3, unit="midi"),  # 9 classes
    ParamSpec("level", -21, 0, 3, unit="dB"),  # 8 classes
    ParamSpec("cutoff", 100, 6400, 0.5, scale="log", unit="Hz"),  # 13 half-octave classes
)
NET = {"_target_": "src.models.components.cnn.ConvNet", "channels": [8, 16]}
CODES = np.arange(256)


def make_module(head_modes="classification", specs=SPECS, **kwargs) -> MultiheadModule:
    args = {
        "net": NET,
        "heads": [s.to_dict() for s in specs],
        "input_shape": [len(specs), 8, 8],
        "head_modes": head_modes,
        "optimizer": functools.partial(torch.optim.Adam, lr=1e-2),
    }
    return MultiheadModule(**(args | kwargs))


def learnable_batch(n: int = 64, seed: int = 0, specs=SPECS):
    """Channel p's brightness encodes head p's class: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    codes, channels = [], []
    for spec in specs:
        k = torch.randint(0, spec.num_classes, (n,), generator=g)
        codes.append(torch.from_numpy(spec.class_code(k.numpy()).astype(np.int64)))
        level = k.float() / (spec.num_classes - 1)
        channels.append(level[:, None, None] + 0.05 * torch.randn(n, 8, 8, generator=g))
    return torch.stack(channels, dim=1), torch.stack(codes, dim=1)


# --- lookup tables and targets ----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_lookup_tables_match_paramspec(mode):
    for spec in SPECS:
        head = build_head(spec, mode, in_features=4)
        values = spec.decode(CODES)
        assert torch.equal(head.code_values, torch.from_numpy(values).float())
        assert torch.equal(head.code_classes, torch.from_numpy(spec.class_index(values)))
        assert torch.allclose(head.code_units.double(), torch.from_numpy(spec.to_unit(values)))
        codes = torch.tensor([[0, 17, 255], [128, 3, 64]])
        assert torch.equal(head.true_classes(codes), head.code_classes[codes])


def test_module_targets_use_each_column():
    module = make_module()
    _, codes = learnable_batch(16)
    targets = module.targets(codes)
    for p, spec in enumerate(SPECS):
        values, classes = targets[spec.name]
        expected = spec.decode(codes[:, p].numpy())
        assert torch.equal(values, torch.from_numpy(expected).float())
        assert torch.equal(classes, torch.from_numpy(spec.class_index(expected)))


def test_ordinal_targets_and_decoding():
    t = ordinal_targets(torch.tensor([0, 2, 3]), 4)
    assert torch.equal(t, torch.tensor([[0.0, 0, 0], [1, 1, 0], [1, 1, 1]]))
    head = build_head(SPECS[0], "ordinal", in_features=4)
    assert head.num_outputs == SPECS[0].num_classes - 1
    logits = torch.tensor([[-1.0] * 8, [3, 2, 1, -1, -2, -3, -4, -5], [1.0] * 8])
    values, classes = head.decode(logits)
    assert classes.tolist() == [0, 3, 8]
    assert values.tolist() == [45.0, 54.0, 69.0]


def test_soft_targets_are_gaussians_over_classes():
    q = gaussian_soft_targets(torch.tensor([0, 2]), 5, sigma=1.0)
    assert torch.allclose(q.sum(1), torch.ones(2))
    w = [math.exp(-0.5 * (j - 2) ** 2) for j in range(5)]
    assert torch.allclose(q[1], torch.tensor(w) / sum(w))
    assert q[0].argmax() == 0 and torch.all(q[0][:-1] >= q[0][1:])
    narrow = gaussian_soft_targets(torch.tensor([3]), 5, sigma=0.05)
    assert torch.allclose(narrow, torch.nn.functional.one_hot(torch.tensor([3]), 5).float())
    with pytest.raises(ValueError):
        gaussian_soft_targets(torch.tensor([0]), 5, sigma=0.0)


def test_regression_honours_log_scale():
    spec = SPECS[2]
    head = build_head(spec, "regression", in_features=4)
    assert isinstance(head, RegressionHead) and head.num_outputs == 1
    codes = torch.tensor([0, 40, 100, 255])
    values = spec.decode(codes.numpy())
    units = torch.from_numpy(spec.to_unit(values)).float()
    # The geometric mid-range sits at unit 0.5 on a log scale, not the arithmetic one.
    assert np.isclose(spec.to_unit(np.sqrt(spec.min * spec.max)), 0.5)
    assert torch.allclose(head.code_units[codes], units)
    assert head.loss(units[:, None], codes).item() < 1e-12
    decoded, classes = head.decode(units[:, None])
    assert torch.allclose(decoded.double(), torch.from_numpy(values), rtol=1e-5)
    assert torch.equal(classes, torch.from_numpy(spec.class_index(values)))
    clamped, _ = head.decode(torch.tensor([[-0.5], [1.5]]))
    assert torch.allclose(clamped, torch.tensor([float(spec.min), float(spec.max)]))


def test_resolve_head_modes():
    names = ["a", "b"]
    assert resolve_head_modes("soft", names) == {"a": "soft", "b": "soft"}
    assert resolve_head_modes({"b": "ordinal"}, names) == {"a": "classification", "b": "ordinal"}
    # `other` covers the unnamed heads, may name a head the data lacks, spares nominal heads
    default = {"pitch": "offset", "other": "regression"}
    assert resolve_head_modes(default, names) == {"a": "regression", "b": "regression"}
    assert resolve_head_modes(default, ["pitch", "b"], nominal=["b"]) == {
        "pitch": "offset",
        "b": "classification",
    }
    assert resolve_head_modes({"b": "expectation", "other": "regression"}, names, ["b"]) == {
        "a": "regression",
        "b": "expectation",
    }
    with pytest.raises(ValueError):
        resolve_head_modes("cumulative", names)
    with pytest.raises(ValueError):
        resolve_head_modes({"c": "soft"}, names)


# --- learning ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_learns(mode):
    torch.manual_seed(0)
    module = make_module(mode)
    x, codes = learnable_batch(64)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss, _ = module.compute_loss(x, codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses


# --- metrics ----------------------------------------------------------------------------------
def test_score_is_the_mean_skill_over_heads():
    module = make_module(train_means={"pitch": 57.0, "level": -10.0, "cutoff": 800.0})
    true = {
        "pitch": (torch.tensor([50.0, 60.0]), torch.tensor([1, 4])),
        "level": (torch.tensor([-6.0, -12.0]), torch.tensor([5, 3])),
        "cutoff": (torch.tensor([400.0, 1600.0]), torch.tensor([4, 8])),
    }
    pred = {
        "pitch": (torch.tensor([50.0, 60.0]), torch.tensor([1, 4])),  # perfect
        "level": (torch.tensor([-7.0, -12.0]), torch.tensor([4, 3])),  # MAE 0.5
        "cutoff": (torch.tensor([800.0, 800.0]), torch.tensor([6, 6])),  # the train mean
    }
    m = module.val_metrics
    m.update(pred, true, torch.tensor(2.0))
    out = module.epoch_metrics("val")
    # level: MAE 0.5 against the train-mean guess's (4 + 2) / 2 = 3
    skills = [1.0, 1 - 0.5 / 3.0, 0.0]
    assert out["val/pitch/skill"].item() == pytest.approx(1.0)
    assert out["val/cutoff/skill"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["val/score"].item() == pytest.approx(np.mean(skills), rel=1e-6)
    assert out["val/level/mae"].item() == pytest.approx(0.5)
    assert out["val/pitch/mae_cents"].item() == pytest.approx(0.0)  # a MIDI head
    assert "val/level/mae_cents" not in out
    assert out["val/level/acc"].item() == pytest.approx(0.5)
    assert out["val/level/acc_within1"].item() == pytest.approx(1.0)
    assert out["val/cutoff/acc_within1"].item() == pytest.approx(0.0)
    assert out["val/acc_mean"].item() == pytest.approx(np.mean([1.0, 0.5, 0.0]))
    assert out["val/loss"].item() == pytest.approx(2.0)


def test_predict_values_and_predict_step():
    module = make_module({"level": "regression", "cutoff": "ordinal"}).eval()
    x, codes = learnable_batch(5)
    values = module.predict_values(x)
    assert list(values) == [s.name for s in SPECS]
    for spec in SPECS:
        assert values[spec.name].shape == (5,)
        assert (values[spec.name] >= spec.min).all() and (values[spec.name] <= spec.max).all()
    out = module.predict_step((x, codes), 0)
    assert torch.equal(out["pred"]["pitch"], values["pitch"])
    assert torch.equal(out["true"]["level"], module.targets(codes)["level"][0])
    assert set(out) == {"pred", "pred_class", "true", "true_class"}
    assert set(module.predict_step(x, 0)) == {"pred", "pred_class"}


# --- construction, optimizers, checkpoints ----------------------------------------------------
def _assert_plain(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str
            _assert_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_plain(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), type(obj)


def test_hparams_are_plain_containers_from_omegaconf_input():
    cfg = OmegaConf.create(
        {
            "net": NET,
            "heads": [s.to_dict() for s in SPECS],
            "input_shape": [3, 8, 8],
            "head_modes": {"pitch": "soft"},
        }
    )
    module = MultiheadModule(**cfg)
    _assert_plain(dict(module.hparams))
    assert module.modes == {"pitch": "soft", "level": "classification", "cutoff": "classification"}


def test_param_groups_and_plateau_scheduler():
    module = make_module(
        scheduler=OmegaConf.create(
            {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True}
        )
    )
    module.net.param_groups = lambda lr: [{"params": list(module.net.parameters()), "lr": lr / 10}]
    config = module.configure_optimizers()
    groups = config["optimizer"].param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == module.param_counts["total"]
    sched = config["lr_scheduler"]
    assert sched["monitor"] == "val/score" and sched["scheduler"].mode == "max"


def test_compile_keeps_state_dict_keys():
    module = make_module(compile=True)
    keys = list(module.state_dict())
    module.setup("fit")
    assert list(module.state_dict()) == keys


def test_rejects_bad_configuration():
    with pytest.raises(ValueError):
        make_module(specs=(ParamSpec("fixed", 1.0, 1.0, 0.0),))
    with pytest.raises(TypeError):
        make_module(net={"channels": [4]})
    with pytest.raises(ValueError):
        make_module(specs=(SPECS[0], SPECS[0]))


def test_fit_checkpoint_roundtrip_weights_only(tmp_path):
    L.seed_everything(0)
    modes = dict(zip([s.name for s in SPECS], ("soft", "regression", "ordinal")))
    cosine = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "_partial_": True}
    module = make_module(modes, scheduler=OmegaConf.create(cosine), label_smoothing=0.1)
    x, codes = learnable_batch(96)
    loader = DataLoader(TensorDataset(x, codes), batch_size=32)
    ckpt_cb = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=tmp_path, monitor="val/score", mode="max", save_last=True
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        callbacks=[ckpt_cb],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=2,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, loader, loader)
    assert "val/score" in trainer.callback_metrics
    assert {"train/loss", "train/loss_step", "train/score"} <= set(trainer.callback_metrics)
    assert {"val/pitch/acc", "val/level/mae", "val/acc_mean"} <= set(trainer.callback_metrics)
    results = trainer.test(module, loader, verbose=False)[0]
    # The logged score is the mean skill over heads, recomputed here by hand (no train means
    # were given, so each range's midpoint is the reference guess).
    module.eval()
    with torch.no_grad():
        decoded, true = module.decode(module(x)), module.targets(codes)

    def skill(s):
        mae = (decoded[s.name][0] - true[s.name][0]).abs().mean().item()
        return 1 - mae / (true[s.name][0] - 0.5 * (s.min + s.max)).abs().mean().item()

    by_hand = np.mean([skill(s) for s in SPECS])
    assert results["test/score"] == pytest.approx(by_hand, abs=1e-5)

    raw = torch.load(ckpt_cb.last_model_path, weights_only=True)
    assert raw["hyper_parameters"]["head_modes"] == modes and raw["task"] == "multihead"
    restored = module_from_checkpoint(read_checkpoint(ckpt_cb.last_model_path))
    assert not restored.training
    module.eval()
    expected, got = module.predict_values(x), restored.predict_values(x)
    for name in expected:
        assert torch.equal(expected[name], got[name])


def test_a_net_without_target_is_a_type_error_naming_it():
    from src.models.codec_module import CodecModule
    from src.models.sequence_module import SequenceModule

    rest = {
        MultiheadModule: {"heads": [], "input_shape": [1, 8, 8]},
        SequenceModule: {"frames": {}, "context": 4, "horizon": 1},
        CodecModule: {"input_shape": [1, 160]},
    }
    for module, kwargs in rest.items():
        with pytest.raises(TypeError, match=r"model\.net must be a config mapping with _target_"):
            module(net={"channels": 8}, **kwargs)
