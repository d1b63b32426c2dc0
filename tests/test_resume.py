"""Fault tolerance through the training entry point: a run stopped by SIGTERM and resumed with
`ckpt_path=last` ends exactly where an uninterrupted run does (same best checkpoint, same test
metrics), in its own run folder; checkpoint files are whole or absent; a bad resume checkpoint
gets a clear error."""

from __future__ import annotations

import csv
import os
import random
import re
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import src.train as train_module
from src.errors import ConfigError, DataError
from src.train import train
from src.utils.checkpoint_io import AtomicCheckpointIO
from src.utils.config import compose_config
from src.utils.instantiators import build_trainer
from tests.helpers.entry import run_script
from tests.helpers.runs import QUIET, on, raises_user_error

EPOCHS = 4  # the toy has 6 train batches of 128 per epoch


def base(toy) -> list[str]:
    """Training with random draws in every step (dropout, masking), so a resume that lost the
    generators' state would show."""
    return [
        "experiment=saw_cnn",
        *on(toy),
        f"trainer.max_epochs={EPOCHS}",
        "model.net.dropout=0.3",
        "data.augment={freq_mask: 2, time_mask: 2, n_masks: 1}",
        "extras.print_config=false",
        *QUIET,
    ]


def main_in_process(monkeypatch, argv: list[str]) -> tuple[dict, dict]:
    """`python src/train.py <argv>` in this process; returns what `train` returned."""
    out = {}
    real = train_module.train

    def keep(cfg):
        out["result"] = real(cfg)
        return out["result"]

    monkeypatch.setattr(train_module, "train", keep)
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    GlobalHydra.instance().clear()
    try:
        train_module.main()
    finally:
        GlobalHydra.instance().clear()
    return out["result"]


def val_scores(run: Path) -> dict[int, float]:
    """Every epoch's val/score from all the CSV logs of a run folder (one per segment)."""
    scores = {}
    for path in sorted(run.glob("csv/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("val/score"):
                scores[int(row["epoch"])] = float(row["val/score"])
    return scores


def test_sigterm_then_ckpt_path_last_ends_like_an_uninterrupted_run(
    tmp_path, toy, monkeypatch, one_thread
):
    whole, objects = main_in_process(monkeypatch, [*base(toy), f"paths.log_dir={tmp_path}/a"])
    whole_best = Path(objects["trainer"].checkpoint_callback.best_model_path)

    # A run stopped by SIGTERM mid-epoch (after batch 3 of 6 of epoch 2) saves its state.
    killed = run_script(
        "src/train.py",
        *base(toy),
        f"paths.log_dir={tmp_path}/b",
        "+callbacks.kill._target_=tests.helpers.faults.SigtermAt",
        "+callbacks.kill.epoch=2",
        "+callbacks.kill.batch=2",
    )
    assert killed.returncode == 143, killed.stdout + killed.stderr
    (run,) = (tmp_path / "b" / "train" / "runs").iterdir()
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, 15)
    assert not (run / "test_metrics_per_head.csv").exists()

    # `ckpt_path=last` finds that run and continues in its folder.
    resumed, objects = main_in_process(
        monkeypatch, [*base(toy), f"paths.log_dir={tmp_path}/b", "ckpt_path=last"]
    )
    callback = objects["trainer"].checkpoint_callback
    assert Path(callback.dirpath) == run / "checkpoints"
    assert [p.name for p in (tmp_path / "b" / "train" / "runs").iterdir()] == [run.name]
    assert OmegaConf.load(run / ".hydra" / "config.yaml").ckpt_path is None  # kept
    (record,) = (run / ".hydra").glob("resumed-*/config.yaml")
    assert OmegaConf.load(record).ckpt_path == "last"

    # The same best checkpoint is tested, with the same metrics, as without the interruption.
    assert Path(callback.best_model_path).name == whole_best.name
    assert float(callback.best_model_score) == max(val_scores(run).values())
    for key, value in whole.items():
        if key.startswith("test/"):
            assert float(resumed[key]) == pytest.approx(float(value), abs=1e-6), key


def test_run_folders_are_unique_and_a_resume_reuses_its_own(tmp_path):
    """Runs started in the same millisecond still get their own folders; a checkpoint inside
    a run folder resumes in that folder."""
    dirs = {
        compose_config(
            "train", [f"paths.log_dir={tmp_path}"], return_hydra_config=True
        ).hydra.run.dir
        for _ in range(5)
    }
    assert len(dirs) == 5
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{3}_[0-9a-f]{4}", Path(d).name)
        for d in dirs
    )
    run = tmp_path / "train" / "runs" / "2020-01-01_00-00-00"  # a run of an older version
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    ckpt = run / "checkpoints" / "epoch_001.ckpt"
    cfg = compose_config(
        "train", [f"paths.log_dir={tmp_path}", f"ckpt_path={ckpt}"], return_hydra_config=True
    )
    assert Path(cfg.hydra.run.dir) == run
    assert cfg.hydra.output_subdir.startswith(".hydra/resumed-")


def test_ckpt_path_last_needs_an_earlier_run(compose_cfg, toy):
    cfg = compose_cfg("train", [*on(toy), "ckpt_path=last", "debug=fdr"])
    with raises_user_error(ConfigError, match="ckpt_path=last: no run of experiment=None"):
        train(cfg)


def test_resuming_from_an_empty_or_garbage_file_is_a_clear_error(
    compose_cfg, toy, tmp_path, trained_ckpt
):
    """Empty, garbage (seeded: torch's unpickler raises IndexError, KeyError, OSError, ... on
    some bytes, and each must be the same clear line) and truncated files."""
    rng = random.Random(7)
    data = trained_ckpt.read_bytes()
    files = {"empty.ckpt": (b"", "empty checkpoint file")}
    for i in range(4):
        files[f"garbage_{i}.ckpt"] = (rng.randbytes(4096), "not a readable checkpoint")
    files["first_20k.ckpt"] = (data[:20_000], "not a readable checkpoint")
    for name, (content, match) in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        cfg = compose_cfg("train", [*on(toy), f"ckpt_path={path}", *QUIET], out=f"run_{name}")
        with raises_user_error(DataError, match=match):
            train(cfg)
        assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_checkpoint_writes_are_atomic(compose_cfg, toy, tmp_path, monkeypatch):
    trainer = build_trainer(compose_cfg("train", [*on(toy)]))
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    real_save = torch.save

    def killed_while_writing(obj, f, *args, **kwargs):
        real_save({"half": torch.zeros(1000)}, f)
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
