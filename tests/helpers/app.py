"""A tiny trained estimation checkpoint and the app's config, shared by the page's tests."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.core.global_hydra import GlobalHydra

from tests.helpers.runs import QUIET, on
from tests.helpers.synth_data import make_saw_dataset


def train_tiny_saw(root: Path) -> tuple[Path, Path]:
    """(dataset folder, best checkpoint) of cnn_12k trained 3 epochs on 300 easy saw notes
    (seconds on one core)."""
    from src.train import train
    from tests.conftest import compose_config

    folder = make_saw_dataset(root / "data", size=300, batch_size=64, seed=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = compose_config(
            "train",
            root / "train",
            [
                *on(folder),
                "model=cnn_12k",
                "trainer.max_epochs=3",
                "data.batch_size=32",
                "callbacks.lr_monitor=null",
                "logger=none",
                *QUIET,
            ],
        )
        _, objects = train(cfg)
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
    return folder, Path(objects["trainer"].checkpoint_callback.best_model_path)


def app_overrides(folder: Path, ckpt: Path | None, *more: str) -> list[str]:
    """Overrides of configs/app.yaml: the page on `ckpt` and its dataset, not served."""
    return [*on(folder), *([f"ckpt_path={ckpt}"] if ckpt else []), "launch=false", *more]
