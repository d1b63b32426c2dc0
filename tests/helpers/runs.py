"""Overrides and checks shared by the training tests."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import pytest
import torch

from src.errors import user_error

# Quiet runs: no progress bar, no model summary.
QUIET = ["callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]


def on(folder: str | Path) -> list[str]:
    """Overrides that train on an existing dataset folder instead of the data config's recipe."""
    return ["data.recipe=null", f"data.data_dir={folder}"]


def assert_beats_chance(metrics: dict, factor: float = 3.0) -> None:
    """Every toy head above `factor` x chance (note_number 9 classes, note_velocity 5).

    The toy's 9 pitch classes share 8 rows, so note_number tops out near 0.89."""
    for head, classes in (("note_number", 9), ("note_velocity", 5)):
        acc = float(metrics[f"test/{head}/acc"])
        assert acc > factor / classes, f"{head}: accuracy {acc:.3f} is not above {factor}x chance"


@contextmanager
def raises_user_error(kind: type, match: str):
    """Like pytest.raises for the project's errors, also when Hydra's instantiate wrapped them."""
    with pytest.raises(Exception) as info:
        yield
    err = user_error(info.value)
    assert isinstance(err, kind), f"expected {kind.__name__}, got {info.value!r}"
    assert re.search(match, str(err)), f"{match!r} not in {err}"


def assert_complete_metrics(metrics: dict, specs, stage: str = "test") -> None:
    """Every head has its metrics, and the logged score is the mean of the heads' skills."""
    import math

    skills = []
    for spec in specs:
        acc = float(metrics[f"{stage}/{spec.name}/acc"])
        within1 = float(metrics[f"{stage}/{spec.name}/acc_within1"])
        mae = float(metrics[f"{stage}/{spec.name}/mae"])
        assert 0.0 <= acc <= within1 <= 1.0 and 0.0 <= mae <= spec.span, (spec.name, acc, mae)
        skills.append(float(metrics[f"{stage}/{spec.name}/skill"]))
    assert math.isfinite(float(metrics[f"{stage}/loss"]))
    assert abs(float(metrics[f"{stage}/score"]) - sum(skills) / len(skills)) < 1e-5


class WeightWatch(L.Callback):
    """Copies the trainable weights when fitting starts; `changed()` names those an
    optimizer step has since moved (a run that logs metrics but never steps has none)."""

    def __init__(self) -> None:
        self.start: dict = {}
        self.module = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.module = pl_module
        self.start = {
            n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad
        }

    def changed(self) -> list[str]:
        now = dict(self.module.named_parameters())
        return [n for n, p in self.start.items() if not torch.equal(p, now[n].detach())]


def train_saw_checkpoint(
    root: Path, size: int = 300, epochs: int = 3, dataset_batch: int = 64
) -> tuple[Path, Path]:
    """(dataset folder, best checkpoint) of cnn_12k trained `epochs` on `size` easy saw notes,
    on one thread (seconds on one core at the defaults)."""
    from hydra.core.global_hydra import GlobalHydra

    from src.train import train
    from tests.conftest import compose_config
    from tests.helpers.synth_data import make_saw_dataset

    folder = make_saw_dataset(root / "data", size=size, batch_size=dataset_batch, seed=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = compose_config(
            "train",
            root / "train",
            [
                *on(folder),
                "model=cnn_12k",
                f"trainer.max_epochs={epochs}",
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
