"""The training budget (src/callbacks/budget.py): small datasets learn with the defaults, a short
fixed budget warns before training, and the default experiment's budget is left as it was."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from hydra.utils import instantiate

from src.callbacks.budget import TrainingBudget
from src.errors import ConfigError
from src.train import train
from src.utils.instantiators import build_trainer
from tests.helpers.runs import QUIET
from tests.helpers.synth_data import make_saw_dataset


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """400 saw notes from the real pipeline (320 train, 40 val, 40 test) on coarse grids of
    pitch (5 classes), level (4) and decay (3): separable, yet in batches of 128 (3 steps an
    epoch, 60 in 20 epochs) the old defaults left level and decay far from learned."""
    return make_saw_dataset(tmp_path_factory.mktemp("small"), size=400, store_audio=False)


def budget_record(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "budget.json").read_text())


def test_small_dataset_learns_with_the_default_settings(compose_cfg, small, one_thread):
    cfg = compose_cfg("train", ["data=vimh", f"data.data_dir={small}", *QUIET])
    metrics, objects = train(cfg)
    for head in ("pitch", "level", "decay"):
        assert float(metrics[f"test/{head}/acc"]) > 0.9, head
    plan = budget_record(cfg)
    assert plan["train_records"] == objects["datamodule"].num_records("train") == 320
    # Batch 128 would be 3 steps an epoch: capped at 320 // 16 = 20, epochs added for the steps.
    assert plan["batch_size"] == 20 and plan["configured_batch_size"] == 128
    assert plan["steps_per_epoch"] == 16
    assert plan["epochs"] == 125 and plan["total_steps"] == 2000
    assert plan["too_short"] is None
    assert objects["trainer"].early_stopping_callback.patience == 50  # 800 steps


def test_a_budget_too_small_to_learn_warns_before_training(compose_cfg, small, caplog):
    cfg = compose_cfg(
        "train",
        ["data=vimh", f"data.data_dir={small}", "trainer.max_epochs=3", "test=false", *QUIET],
    )
    with caplog.at_level(logging.INFO):
        _, objects = train(cfg)
    text = caplog.text
    # Stated before the first training step, the fixed count and batch kept as given.
    assert text.index("Training budget:") < text.index("Training budget too small to learn")
    assert "batch size         128" in text and "epochs             3 (trainer.max_epochs)" in text
    assert (
        "Training budget too small to learn: 9 optimizer steps (3 an epoch), fewer than the "
        "2,000 the budget asks for (callbacks.budget.min_steps), so expect an under-trained "
        "model. Leave trainer.max_epochs unset (auto: 125 epochs of 16 steps here, batch 20), "
        "or set trainer.max_epochs=667 or more."
    ) in text
    assert objects["trainer"].current_epoch == 3
    assert budget_record(cfg)["too_short"].startswith("Training budget too small")


def test_the_default_experiment_keeps_its_budget(compose_cfg):
    """13,108 train records in batches of 128 (the default experiment, docs/results.md): the
    budget keeps batch 128, 20 epochs (2,060 steps) and early stopping's patience of 8."""
    cfg = compose_cfg("train", [])
    assert cfg.trainer.max_epochs == "auto" and cfg.data.batch_size == 128
    budget = instantiate(cfg.callbacks.budget)
    assert budget.auto
    assert min(cfg.data.batch_size, budget.batch_cap(13108)) == 128
    steps = math.ceil(13108 / 128)
    assert budget.auto_epochs(steps) == 20
    assert math.ceil(budget.patience_steps / steps) <= cfg.callbacks.early_stopping.patience


def test_auto_epochs_start_from_the_budget_and_bad_values_are_refused(compose_cfg):
    trainer = build_trainer(compose_cfg("train", ["callbacks.budget.epochs=7"]))
    assert trainer.max_epochs == 7  # until the budget sees the data at setup
    trainer = build_trainer(compose_cfg("train", ["callbacks=none"]))
    assert trainer.max_epochs == 20  # no budget: the old default
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs must be a number or 'auto'"):
        build_trainer(compose_cfg("train", ["trainer.max_epochs=many", "callbacks=none"]))
    with pytest.raises(ConfigError, match="min_batch_size must be >= 1"):
        TrainingBudget(min_batch_size=0)


@pytest.mark.slow  # three short trainings, one in a subprocess
def test_an_auto_budget_resumes_exactly(tmp_path, toy, monkeypatch, one_thread):
    """A run whose epochs and batch the budget chose, stopped by SIGTERM and resumed with
    `ckpt_path=last`, plans the same again and ends as the uninterrupted run does."""
    from tests.helpers.entry import run_script
    from tests.test_resume import base, main_in_process

    # The toy's 768 train records: batch 768 // 16 = 48, 16 steps an epoch, 4 epochs for 60.
    auto = [
        "trainer.max_epochs=auto",
        "callbacks.budget.epochs=2",
        "callbacks.budget.min_steps=60",
        "callbacks.budget.patience_steps=0",
    ]
    whole, objects = main_in_process(
        monkeypatch, [*base(toy), *auto, f"paths.log_dir={tmp_path}/a"]
    )
    assert objects["datamodule"].batch_size == 48 and objects["trainer"].global_step == 64
    killed = run_script(
        "src/train.py",
        *base(toy),
        *auto,
        f"paths.log_dir={tmp_path}/b",
        "+callbacks.kill._target_=tests.helpers.faults.SigtermAt",
        "+callbacks.kill.epoch=2",
        "+callbacks.kill.batch=2",
    )
    assert killed.returncode == 143, killed.stdout + killed.stderr
    resumed, objects = main_in_process(
        monkeypatch, [*base(toy), *auto, f"paths.log_dir={tmp_path}/b", "ckpt_path=last"]
    )
    assert objects["datamodule"].batch_size == 48 and objects["trainer"].global_step == 64
    for key, value in whole.items():
        if key.startswith("test/"):
            assert float(resumed[key]) == pytest.approx(float(value), abs=1e-6), key
