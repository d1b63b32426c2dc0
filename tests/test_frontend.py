"""STFTMelFrontend (parity with torchaudio, masking, gradients, non-negativity), FrontendNet
(shapes, parameter groups) and the filterbank plot."""

from __future__ import annotations

import math
from types import SimpleNamespace

import hydra
import pytest
import torch
import torchaudio
import torchaudio.functional as taf
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf

from src.callbacks import FilterbankPlot
from src.models.components import FrontendNet, STFTMelFrontend
from src.paths import CONFIG_DIR
from tests.helpers.models import MODEL_DIR, check_config_size

SR = 8000
FRONTEND = {"_target_": "src.models.components.frontend.STFTMelFrontend", "sample_rate": SR}
BACKENDS = {
    "bcresnet": {"_target_": "src.models.components.bcresnet.BCResNet"},
    "cnn": {"_target_": "src.models.components.cnn.ConvNet", "channels": [4, 8]},
    "linear": {"_target_": "src.models.components.linear.LinearBackend"},
}


pytestmark = pytest.mark.usefixtures("one_thread")


def signals(n: int = 8000, seed: int = 0) -> torch.Tensor:
    """(4, 1, n): decaying harmonic notes over a -70 dB noise floor, and loud white noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    f0 = torch.tensor([110.0, 440.0, 1500.0])[:, None]
    notes = sum((0.3 / k) * torch.sin(2 * math.pi * k * f0 * t) for k in range(1, 12))
    notes = notes * torch.exp(-3 * t) + 10 ** (-70 / 20) * torch.randn(3, n, generator=g)
    noise = 0.5 * torch.randn(1, n, generator=g)
    return torch.cat([notes, noise]).unsqueeze(1)


@pytest.mark.parametrize(
    ("n_fft", "hop", "n_mels", "f_min", "f_max"),
    [(256, 128, 40, 0.0, None), (512, 64, 10, 40.0, 3500.0), (128, None, 20, 0.0, None)],
)
def test_parity_with_torchaudio_melspectrogram(n_fft, hop, n_mels, f_min, f_max):
    x = signals()
    fe = STFTMelFrontend(SR, n_fft=n_fft, hop_length=hop, n_mels=n_mels, f_min=f_min, f_max=f_max)
    ref_mel = torchaudio.transforms.MelSpectrogram(
        SR,
        n_fft=n_fft,
        hop_length=fe.hop_length,
        f_min=f_min,
        f_max=f_max,
        n_mels=n_mels,
        power=2.0,
        center=True,
        pad_mode="reflect",
        window_fn=torch.hann_window,
    )
    ref_power = ref_mel(x)  # (B, 1, n_mels, frames)
    ref_db = torchaudio.transforms.AmplitudeToDB("power")(ref_power)
    out = fe(x)
    assert out.shape == ref_db.shape == (4, *fe.output_shape(x.shape[-1]))
    # dB: float32 agreement wherever the band is within 60 dB of the note's peak; everywhere
    # (down to about -100 dB below it) the difference stays a few thousandths of a dB.
    loud = ref_db > ref_db.amax(dim=(1, 2, 3), keepdim=True) - 60.0
    assert (out - ref_db)[loud].abs().max() < 1e-3
    assert (out - ref_db).abs().max() < 1e-2
    fe.log = None
    power = fe(x)
    rel = (power - ref_power).abs() / ref_power.clamp_min(1e-12)
    assert rel[loud].max() < 2e-4


def test_log_variants_and_top_db():
    x = signals()
    fe = STFTMelFrontend(SR, top_db=50.0)
    power = STFTMelFrontend(SR, log=None)(x)
    ref = torchaudio.transforms.AmplitudeToDB("power", top_db=50.0)(power)
    torch.testing.assert_close(fe(x), ref)
    peak, low = fe(x).amax(dim=(1, 2, 3)), fe(x).amin(dim=(1, 2, 3))
    assert torch.allclose(low[:3], peak[:3] - 50.0)  # the notes reach the clip, the noise not
    assert low[3] > peak[3] - 50.0
    torch.testing.assert_close(STFTMelFrontend(SR, log="log1p")(x), torch.log1p(power))


def test_rows_run_from_low_to_high_frequency():
    t = torch.arange(4000) / SR
    low = torch.sin(2 * math.pi * 200 * t)
    high = torch.sin(2 * math.pi * 3000 * t)
    out = STFTMelFrontend(SR, n_mels=20)(torch.stack([low, high]).unsqueeze(1))
    band = out.mean(dim=-1)[:, 0].argmax(dim=1)
    assert band[0] < 5 and band[1] > 15


def test_init_is_the_torchaudio_filterbank_exactly():
    fe = STFTMelFrontend(SR, n_fft=256, n_mels=40, f_min=20.0)
    mel = taf.melscale_fbanks(129, 20.0, SR / 2, 40, SR)
    torch.testing.assert_close(fe.filterbank, mel, rtol=1e-6, atol=0.0)
    assert torch.equal(fe.filterbank == 0, mel == 0)
    lin = STFTMelFrontend(SR, n_mels=12, mel_init="linear")
    torch.testing.assert_close(lin.filterbank, taf.linear_fbanks(129, 0.0, SR / 2, 12, SR))
    rnd = STFTMelFrontend(SR, n_mels=12, mel_init="random")
    assert (rnd.filterbank > 0).all()
    # Random filters keep the mel bank's mean area, so levels stay comparable.
    ref_area = taf.melscale_fbanks(129, 0.0, SR / 2, 12, SR).sum(0).mean()
    torch.testing.assert_close(rnd.filterbank.sum(0).mean(), ref_area)


def test_maskout_zeroes_bins_and_blocks_their_gradient():
    x = signals()
    fe = STFTMelFrontend(SR, n_fft=256, maskout=[10, 30], trainable_stft=True)
    power = fe.power_spectrogram(x)
    assert (power[:, 10:30] == 0).all() and (power[:, :10] > 0).all() and (power[:, 30:] > 0).all()
    fe(x).sum().backward()
    grad = fe.stft.grad.squeeze(1)  # (2 * 129, 256): real kernels then imaginary ones
    for part in (grad[:129], grad[129:]):
        assert (part[10:30] == 0).all()
        assert part[1:10].abs().sum(dim=1).gt(0).all() and part[31:128].abs().sum(1).gt(0).all()
    # Without the mask the same bins carry power (the mask did the zeroing).
    assert (STFTMelFrontend(SR).power_spectrogram(x)[:, 10:30] > 0).all()
    with pytest.raises(ValueError, match="maskout"):
        STFTMelFrontend(SR, maskout=[30, 10])


@pytest.mark.parametrize("trainable_mel", [False, True])
@pytest.mark.parametrize("trainable_stft", [False, True])
def test_gradients_follow_the_flags(trainable_stft, trainable_mel):
    fe = STFTMelFrontend(SR, trainable_stft=trainable_stft, trainable_mel=trainable_mel)
    out = fe(signals())
    assert out.requires_grad == (trainable_stft or trainable_mel)
    if out.requires_grad:
        out.mean().backward()
    for param, on in ((fe.mel_sqrt, trainable_mel), (fe.stft, trainable_stft)):
        assert param.requires_grad == on
        if on:
            assert param.grad is not None and param.grad.abs().sum() > 0
        else:
            assert param.grad is None


def test_filterbank_stays_non_negative_under_training():
    fe = STFTMelFrontend(SR, trainable_mel=True, mel_init="random")
    start = fe.filterbank.detach().clone()
    opt = torch.optim.Adam(fe.parameters(), lr=0.05)
    x = signals(2000)
    for _ in range(30):  # pushing every weight down, hard: only the parametrisation stops it
        opt.zero_grad()
        (fe(x).mean() + fe.filterbank.sum()).backward()
        opt.step()
    fb = fe.filterbank
    assert (fb >= 0).all()
    assert not torch.allclose(fb, start) and fb.sum() < start.sum()


def test_mel_floor_lets_zero_entries_learn():
    fixed = STFTMelFrontend(SR, trainable_mel=True)
    floored = STFTMelFrontend(SR, trainable_mel=True, mel_floor=1e-4)
    zero = taf.melscale_fbanks(129, 0.0, SR / 2, 40, SR) == 0
    for fe in (fixed, floored):
        fe(signals(2000)).mean().backward()
    assert (fixed.mel_sqrt.grad[zero] == 0).all()
    assert (floored.mel_sqrt.grad[zero] != 0).any()


def test_kernel_response_peaks_at_the_bin_frequency():
    fe = STFTMelFrontend(SR, n_fft=256)
    freqs, resp = fe.kernel_response(2048)
    for k in (5, 40, 100):
        assert abs(float(freqs[resp[k].argmax()]) - k * SR / 256) <= SR / 2048


# --- the composite net ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("n_mels", [10, 40])
def test_frontend_net_builds_any_backend(backend, n_mels):
    net = FrontendNet((1, 2000), {**FRONTEND, "n_mels": n_mels}, BACKENDS[backend])
    assert net.feature_shape == (1, n_mels, 2000 // 128 + 1)
    y = net(torch.randn(3, 1, 2000))
    assert y.shape == (3, net.out_features)
    counts = net.param_counts()
    assert counts["frontend"] == 2 * 129 * 256 + 129 * n_mels
    assert counts["frontend"] + counts["backend"] == sum(p.numel() for p in net.parameters())


def test_param_groups_give_the_frontend_its_own_lr():
    net = FrontendNet((1, 2000), {**FRONTEND, "lr": 1e-4}, BACKENDS["cnn"])
    groups = net.param_groups(1e-2)
    assert [g["lr"] for g in groups] == [1e-4, 1e-2]
    ids = [{id(p) for p in g["params"]} for g in groups]
    assert ids[0] == {id(p) for p in net.frontend.parameters()}
    assert ids[0].isdisjoint(ids[1]) and len(ids[0] | ids[1]) == len(list(net.parameters()))
    plain = FrontendNet((1, 2000), FRONTEND, BACKENDS["linear"])
    assert [g["lr"] for g in plain.param_groups(3e-3)] == [3e-3, 3e-3]
    assert all("lr" not in g for g in plain.param_groups(None))


def test_multihead_module_optimizer_uses_the_groups():
    cfg = OmegaConf.load(CONFIG_DIR / "model" / "stft_bcresnet_81k.yaml")
    cfg.scheduler = None
    heads = [{"name": "a", "min": 0.0, "max": 8.0, "step": 1.0}]
    model = hydra.utils.instantiate(cfg, heads=heads, input_shape=[1, 2000], sample_rate=SR)
    opt = model.configure_optimizers()
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == [cfg.net.frontend.lr, cfg.optimizer.lr, cfg.optimizer.lr]  # front, back, heads
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_input_shape_is_checked():
    with pytest.raises(ValueError, match="mono"):
        FrontendNet((2, 2000), FRONTEND, BACKENDS["linear"])
    with pytest.raises(TypeError, match="_target_"):
        FrontendNet((1, 2000), {"sample_rate": SR}, BACKENDS["linear"])


# --- the filterbank plot --------------------------------------------------------------------
def test_filterbank_plot_writes_png_and_tensorboard(tmp_path):
    net = FrontendNet((1, 2000), {**FRONTEND, "trainable_mel": True}, BACKENDS["linear"])
    module = SimpleNamespace(net=net)
    tb = TensorBoardLogger(tmp_path / "tb", name="")
    trainer = SimpleNamespace(
        sanity_checking=False, current_epoch=3, default_root_dir=str(tmp_path), loggers=[tb]
    )
    FilterbankPlot(every_n_epochs=1, n_kernels=3).on_validation_epoch_end(trainer, module)
    png = tmp_path / "filterbank" / "epoch_003.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tb.experiment.flush()
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))
    # Skipped: other epochs, the sanity check, and nets without a front-end.
    FilterbankPlot(every_n_epochs=2).on_validation_epoch_end(trainer, module)
    trainer.sanity_checking, trainer.current_epoch = True, 4
    FilterbankPlot().on_validation_epoch_end(trainer, module)
    trainer.sanity_checking = False
    FilterbankPlot().on_validation_epoch_end(trainer, SimpleNamespace(net=torch.nn.Linear(2, 2)))
    assert sorted(p.name for p in (tmp_path / "filterbank").iterdir()) == ["epoch_003.png"]


@pytest.mark.parametrize("path", sorted(MODEL_DIR.glob("stft_*.yaml")), ids=lambda p: p.stem)
def test_config_name_matches_count(path):
    model = check_config_size(path, FrontendNet)
    assert model.net.frontend.sample_rate == 8000  # from the data, not from the config
