"""Shared fixtures: composed train/eval configs writing under tmp_path, tiny datasets, threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.paths import CONFIG_DIR
from tests.helpers.vimh import make_vimh


def compose_config(name: str, out_dir: Path, overrides: list[str]) -> DictConfig:
    """Compose `configs/<name>.yaml` as Hydra would, with all output under `out_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir / "logs")
        cfg.paths.data_dir = str(out_dir / "data")
        if "extras" in cfg:
            cfg.extras.print_config = False
            cfg.extras.enforce_tags = False
    return cfg


@pytest.fixture
def compose_cfg(tmp_path):
    """compose_cfg(name, overrides, out=...) -> DictConfig writing under tmp_path."""

    def make(name: str, overrides: list[str], out: str = "run") -> DictConfig:
        return compose_config(name, tmp_path / out, overrides)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine spinning
    OpenMP workers can make a short training run many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """A learnable 8x8 dataset, 2 heads (note_number 9 and note_velocity 5 classes), with
    stored sines (2000 samples) for waveform models; shared read-only by every test."""
    return make_vimh(
        tmp_path_factory.mktemp("toy"), n_train=768, n_val=128, n_test=128, audio_samples=2000
    )


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory, toy) -> Path:
    """The best checkpoint of a 2-epoch run of the default model on the toy (read-only)."""
    from src.train import train
    from tests.helpers.runs import QUIET, on

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("trained")
    overrides = [*on(toy), "trainer.max_epochs=2", "callbacks.lr_monitor=null", *QUIET]
    try:
        _, objects = train(compose_config("train", out, overrides))
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
    return Path(objects["trainer"].checkpoint_callback.best_model_path)


@pytest.fixture(scope="session")
def words(tmp_path_factory) -> tuple[Path, list]:
    """A Speech-Commands-layout collection of synth "words" (tests/helpers/words.py) and its
    rows (file, word, pitch, speaker); shared read-only by the conversion and KWS tests."""
    from tests.helpers.words import write_words

    root = tmp_path_factory.mktemp("collection") / "words"
    return root, write_words(root)
