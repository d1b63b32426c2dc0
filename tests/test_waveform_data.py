"""Waveform training end to end: the datamodule's audio path and train() with the front-ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src.data.batching import MemmapBatches
from src.data.datamodule import VIMHDataModule
from src.data.vimh import VIMHDataset
from src.train import train
from tests.helpers.runs import QUIET, assert_complete_metrics, on
from tests.helpers.vimh import make_vimh

N_SAMPLES = 2000
MODELS = {"bcresnet": "stft_bcresnet_81k", "cnn": "stft_cnn_77k", "linear": "stft_linear_301k"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def carved_ds(tmp_path_factory) -> Path:
    """No val file (val is carved out of train), odd sizes."""
    return make_vimh(
        tmp_path_factory.mktemp("carved"), n_train=101, n_test=23, with_val=False, audio_samples=300
    )


def collect(loader, epoch=0):
    loader.sampler.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


# --- the datamodule's audio path ------------------------------------------------------------
def test_audio_batches_are_the_stored_waveforms(carved_ds):
    dm = VIMHDataModule(carved_ds, representation="audio", batch_size=16, in_memory=True)
    assert dm.input_shape == (1, 300)  # known before setup, from the .npy header
    ds = VIMHDataset(carved_ds)
    (x, y), *_ = collect(dm.loader("train", shuffle=False))
    assert x.dtype == torch.float32 and x.shape == (16, 1, 300)
    assert y.dtype == torch.int64 and y.shape == (16, 2)
    rows = dm.rows["train"][:16]  # val was carved out of train
    np.testing.assert_array_equal(x[:, 0].numpy(), ds.audio("train")[rows])
    np.testing.assert_array_equal(y.numpy(), ds["train"].codes[rows])
    # No normalisation, no masking: the transfer hook leaves waveforms as they are.
    dm.trainer = None
    out, codes = dm.on_after_batch_transfer((x, y))
    assert torch.equal(out, x) and torch.equal(codes, y)
    # Statistics for a checkpoint: one identity "channel"; a round trip loads.
    state = dm.state_dict()
    assert state["mean"] == [0.0] and state["std"] == [1.0]
    dm.load_state_dict(state)


@pytest.mark.parametrize(
    ("workers", "group_bytes", "order"), [(0, 1, "uniform"), (0, 5000, "block"), (2, 3000, "block")]
)
def test_audio_fast_and_streaming_paths_give_equal_batches(
    carved_ds, monkeypatch, workers, group_bytes, order
):
    monkeypatch.setattr(MemmapBatches, "GROUP_BYTES", group_bytes)
    kw = dict(representation="audio", batch_size=16, shuffle_seed=3, shuffle_order=order)
    fast = VIMHDataModule(carved_ds, in_memory=True, **kw)
    slow = VIMHDataModule(carved_ds, in_memory=False, num_workers=workers, **kw)
    for split in ("train", "val", "test"):
        a = getattr(fast, f"{split}_dataloader")()
        b = getattr(slow, f"{split}_dataloader")()
        assert a.in_memory and not b.in_memory
        for epoch in (0, 1):
            ba, bb = collect(a, epoch), collect(b, epoch)
            assert len(ba) == len(bb) == len(a)
            for (xa, ya), (xb, yb) in zip(ba, bb):
                assert xa.dtype == xb.dtype == torch.float32 and xa.shape[1:] == (1, 300)
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert sum(len(x) for x, _ in collect(fast.train_dataloader())) == fast.num_records("train")


def test_audio_shuffles_per_epoch_and_auto_memory(carved_ds):
    dm = VIMHDataModule(carved_ds, representation="audio", batch_size=8, max_memory_gb=1e-9)
    dm.setup()
    assert dm.use_memory is False  # 124 x 300 float32 is more than ~1 byte
    train = dm.train_dataloader()
    e0 = torch.cat([x for x, _ in collect(train, 0)])
    e1 = torch.cat([x for x, _ in collect(train, 1)])
    assert not torch.equal(e0, e1)
    # Each epoch serves every training record exactly once, in its own order.
    stored = np.asarray(VIMHDataset(carved_ds).audio("train")[dm.rows["train"]])
    as_set = sorted(r.tobytes() for r in stored)
    assert sorted(r.numpy().tobytes() for r in e0[:, 0]) == as_set
    assert sorted(r.numpy().tobytes() for r in e1[:, 0]) == as_set


def test_missing_audio_is_a_clear_error(tmp_path):
    folder = make_vimh(tmp_path, name="images-only")
    with pytest.raises(FileNotFoundError, match=r"images-only.*dataset\.store_audio=true"):
        VIMHDataModule(folder, representation="audio")
    folder = make_vimh(tmp_path, name="no-test-audio", audio_samples=64)
    (folder / "test_audio.npy").unlink()
    dm = VIMHDataModule(folder, representation="audio")
    with pytest.raises(FileNotFoundError, match=r"test_audio\.npy.*store_audio=true"):
        dm.setup()
    with pytest.raises(ValueError, match="augment"):
        VIMHDataModule(folder, representation="audio", augment={"freq_mask": 2})


# --- train() with the front-end models --------------------------------------------------------
@pytest.mark.parametrize("trainable_stft", [False, True])
@pytest.mark.parametrize("trainable_mel", [False, True])
def test_four_frontend_settings_run(compose_cfg, toy, trainable_stft, trainable_mel):
    cfg = compose_cfg(
        "train",
        [
            "experiment=saw_stft_bcresnet",
            *on(toy),
            f"model.net.frontend.trainable_stft={str(trainable_stft).lower()}",
            f"model.net.frontend.trainable_mel={str(trainable_mel).lower()}",
            "debug=fdr",
        ],
    )
    metrics, objects = train(cfg)
    assert_complete_metrics(metrics, objects["datamodule"].heads)
    frontend = objects["model"].net.frontend
    assert frontend.stft.requires_grad == trainable_stft
    assert frontend.mel_sqrt.requires_grad == trainable_mel
    assert objects["model"].net.feature_shape == (1, 40, N_SAMPLES // 128 + 1)


@pytest.mark.parametrize("backend", sorted(MODELS))
@pytest.mark.parametrize("n_mels", [10, 40])
def test_n_mels_sweep_runs_with_every_backend(compose_cfg, toy, backend, n_mels):
    cfg = compose_cfg(
        "train",
        [
            "data=saw_audio",
            f"model={MODELS[backend]}",
            *on(toy),
            f"model.net.frontend.n_mels={n_mels}",
            "debug=fdr",
        ],
    )
    metrics, objects = train(cfg)
    assert_complete_metrics(metrics, objects["datamodule"].heads)
    assert objects["model"].net.feature_shape[1] == n_mels


def test_short_run_beats_chance_and_plots_the_filterbank(compose_cfg, toy):
    cfg = compose_cfg(
        "train",
        [
            "experiment=saw_stft_bcresnet",
            *on(toy),
            "model.net.frontend.trainable_mel=true",
            "trainer.max_epochs=8",
            "data.batch_size=32",
            "logger=tensorboard",
            *QUIET,
        ],
    )
    metrics, objects = train(cfg)
    # Chance is 1/9 (pitch) and 1/5 (level).
    assert float(metrics["test/note_number/acc"]) > 0.8  # 1.0 measured
    assert float(metrics["test/note_velocity/acc"]) > 0.45  # 0.64 measured
    out = Path(cfg.paths.output_dir)
    pngs = sorted((out / "filterbank").glob("epoch_*.png"))
    assert [p.name for p in pngs][:2] == ["epoch_000.png", "epoch_001.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "tensorboard").rglob("events.out.tfevents*"))
    assert (objects["model"].net.frontend.filterbank >= 0).all()
