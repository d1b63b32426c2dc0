"""src/train.py and src/eval.py end to end on tiny generated datasets (CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.data.datamodule import VIMHDataModule
from src.errors import ConfigError
from src.eval import evaluate
from src.paths import CONFIG_DIR
from src.train import train
from tests.helpers.runs import QUIET, WeightWatch, assert_complete_metrics, on, raises_user_error
from tests.helpers.vimh import make_vimh

# Parameter-estimation experiments; the sequence ones (seq_*) run in test_sequence_train.py.
EXPERIMENTS = sorted(
    p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml") if not p.stem.startswith("seq_")
)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(compose_cfg, toy, experiment):
    if "multihead" not in compose_cfg("train", [f"experiment={experiment}"]).model._target_:
        pytest.skip("another task: its own tests run its experiments (e.g. test_codec_module.py)")
    cfg = compose_cfg("train", [f"experiment={experiment}", *on(toy), "debug=fdr"])
    watch = WeightWatch()
    metrics, objects = train(cfg, callbacks=[watch])
    model = objects["model"]
    assert model.head_names == ["note_number", "note_velocity"]
    # The experiment's network, read from its own file, is the one that trained ...
    defaults = OmegaConf.load(CONFIG_DIR / "experiment" / f"{experiment}.yaml").defaults
    name = next(d["override /model"] for d in defaults if "override /model" in d)
    net = OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml").net._target_
    assert f"{type(model.net).__module__}.{type(model.net).__name__}" == net
    # ... its one training step moved the weights, and the test scored every head.
    assert watch.changed(), "no weight changed: the optimizer never stepped"
    assert_complete_metrics(metrics, objects["datamodule"].heads)


@pytest.mark.parametrize(("version", "with_val"), [("2.0", False), ("2.1", False)])
def test_nsmt_layout_trains_with_only_data_dir(compose_cfg, tmp_path, version, with_val):
    root = make_vimh(tmp_path / "nsmt", n_train=96, n_test=32, version=version, with_val=with_val)
    cfg = compose_cfg("train", ["data=vimh", f"data.data_dir={root}", "debug=fdr"])
    metrics, objects = train(cfg)
    assert objects["datamodule"].val_carved
    assert_complete_metrics(metrics, objects["datamodule"].heads)


def test_short_run_beats_chance_and_eval_reproduces(compose_cfg, toy, monkeypatch):
    cfg = compose_cfg(
        "train",
        [
            *on(toy),
            "model=cnn_12k",
            "trainer.max_epochs=6",
            "data.batch_size=64",
            *QUIET,
        ],
    )
    metrics, objects = train(cfg)
    # Chance is 1/9 and 1/5; a learnable toy set should be far above.
    assert float(metrics["test/note_number/acc"]) > 0.6
    assert float(metrics["test/note_velocity/acc"]) > 0.6
    best = objects["trainer"].checkpoint_callback.best_model_path
    assert best and Path(best).is_file()

    ecfg = compose_cfg(
        "eval",
        [
            *on(toy),
            f"ckpt_path={best}",
            "logger=none",
            "callbacks.rich_progress_bar=null",
        ],
        out="eval",
    )
    # Eval reads the checkpoint once and takes its statistics instead of computing its own.
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))

    def no_stats(self):
        raise AssertionError("eval computed normalisation statistics")

    monkeypatch.setattr(VIMHDataModule, "_compute_stats", no_stats)
    emetrics, eobjects = evaluate(ecfg)
    assert len(loads) == 1
    assert torch.equal(eobjects["datamodule"].mean, objects["datamodule"].mean)
    for key in ("test/score", "test/loss", "test/note_number/acc", "test/note_velocity/mae"):
        assert float(emetrics[key]) == pytest.approx(float(metrics[key]), abs=1e-6), key
    out = Path(ecfg.paths.output_dir)
    for name in ("predictions.csv", "confusion_note_number.png", "scatter_note_velocity.png"):
        assert (out / name).is_file(), name
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + 128
    assert rows[0].startswith("index,note_number_true,note_number_pred")


def test_resume_from_last_checkpoint_continues_at_the_right_epoch(compose_cfg, toy):
    first = compose_cfg(
        "train", [*on(toy), "trainer.max_epochs=2", "test=false", *QUIET], out="first"
    )
    _, objects = train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert torch.load(last, weights_only=True)["epoch"] == 1
    second = compose_cfg(
        "train",
        [*on(toy), "trainer.max_epochs=3", "test=false", f"ckpt_path={last}", *QUIET],
        out="second",
    )
    _, objects = train(second)
    trainer = objects["trainer"]
    assert trainer.current_epoch == 3
    # Only one more epoch ran: the step counter continues from the first run's.
    steps_per_epoch = trainer.num_training_batches
    assert trainer.global_step == 3 * steps_per_epoch


def test_multirun_two_jobs_in_process(tmp_path, toy, monkeypatch):
    import src.train as train_module

    returned = []
    original = train_module.get_metric_value

    def record(metrics, name):
        value = original(metrics, name)
        returned.append(value)
        return value

    monkeypatch.setattr(train_module, "get_metric_value", record)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train.py",
            "-m",
            "model=cnn_12k,cnn_50k",
            *on(toy),
            "debug=fdr",
            f"paths.log_dir={tmp_path}/logs",
            "extras.print_config=false",
            "hydra.sweep.dir=" + str(tmp_path / "sweep"),
        ],
    )
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    train_module.main()
    sweep = tmp_path / "sweep"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    # Each job ran its own model and returned its own optimized metric (val/score), the one
    # its metrics.json holds; the two models do not score alike.
    for job, model in (("0", "cnn_12k"), ("1", "cnn_50k")):
        assert f"model={model}" in OmegaConf.load(sweep / job / ".hydra" / "overrides.yaml")
        saved = json.loads((sweep / job / "metrics.json").read_text())
        assert returned[int(job)] == pytest.approx(saved["val/score"], abs=1e-6)
    assert len(returned) == 2 and returned[0] != returned[1]


@pytest.mark.slow
def test_ddp_sim(compose_cfg, toy):
    # Lightning's CSVLogger cannot add test columns to a metrics.csv that a spawned fit wrote
    # (it rewrites the header from the keys this process saw): use TensorBoard here.
    cfg = compose_cfg(
        "train",
        [
            *on(toy),
            "trainer=ddp_sim",
            "trainer.max_epochs=1",
            "logger=tensorboard",
            *QUIET,
        ],
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].world_size == 2
    assert_complete_metrics(metrics, objects["datamodule"].heads)


def test_short_run_on_generated_synth_data(compose_cfg):
    """Real synth notes end to end: the default recipe at a small size, generated on first use
    under paths.data_dir, then the default model; every head well above chance."""
    cfg = compose_cfg(
        "train",
        [
            "data.recipe.dataset.size=2048",
            "data.recipe.overrides=['identifiability.probe_records=0']",
            "trainer.max_epochs=20",
            "data.batch_size=64",
            "callbacks.early_stopping=null",
            *QUIET,
        ],
    )
    metrics, objects = train(cfg)
    folder = objects["datamodule"].data_dir
    assert folder.parent == Path(cfg.paths.data_dir) and "_2048dss_saw-" in folder.name
    # Measured: pitch 1.00, level 0.83, decay 0.68 (chance 1/9, 1/8, 1/10).
    for spec in objects["datamodule"].heads:
        acc = float(metrics[f"test/{spec.name}/acc"])
        assert acc > 4.0 / spec.num_classes, (spec.name, acc)


# Invalid optimizer and scheduler values: (overrides, the one line that names them).
BAD_OPTIMIZATION = {
    "negative lr": (
        ["model.optimizer.lr=-1"],
        r"model.optimizer \(torch.optim.adamw.AdamW\): Invalid learning rate: -1$",
    ),
    "negative decay": (["model.optimizer.weight_decay=-0.5"], r"Invalid weight_decay value: -0.5$"),
    "unknown argument": (["+model.optimizer.foo=1"], r"unexpected keyword argument 'foo'$"),
    "no such class": (
        ["model.optimizer._target_=torch.optim.Nope"],
        r"^model.optimizer: Error locating target 'torch.optim.Nope'$",
    ),
    "missing argument": (
        ["model.scheduler._target_=torch.optim.lr_scheduler.StepLR"],
        r"model.scheduler \(torch.optim.lr_scheduler.StepLR\): .*'step_size'$",
    ),
    "bad factor": (
        [
            "model.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau",
            "+model.scheduler.factor=2",
        ],
        r"Factor should be < 1.0.$",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIMIZATION))
def test_invalid_optimizer_and_scheduler_values_are_one_line_before_training(
    compose_cfg, toy, case
):
    """Tried on a stand-in parameter when the model is built, not met inside the Trainer (a
    55-line traceback before)."""
    overrides, said = BAD_OPTIMIZATION[case]
    cfg = compose_cfg("train", [*on(toy), *overrides, *QUIET])
    with raises_user_error(ConfigError, match=said):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()
