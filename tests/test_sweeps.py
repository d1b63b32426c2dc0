"""Grid sweeps (Hydra multirun), their collection into a CSV and a figure, and the SLURM
launcher config."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import src.train as train_module
from src.data.vimh import VIMHDataset
from src.paths import PROJECT_ROOT
from tests.helpers.runs import QUIET, assert_complete_metrics, on
from tests.helpers.vimh import make_vimh
from tests.test_scripts import load_script


def installed(module: str) -> bool:
    """Whether a dotted module can be imported (False when its parent package is missing,
    where find_spec would raise)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


HAS_SUBMITIT = installed("hydra_plugins.hydra_submitit_launcher")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_vimh(tmp_path_factory.mktemp("small"), n_train=96, n_val=32, n_test=32)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_multirun_of_two_jobs_collects_into_csv_and_png(tmp_path, small, monkeypatch):
    # The saw_lr grid, cut to two learning rates from the command line.
    sweep = tmp_path / "sweep"
    argv = [
        "train.py",
        "-m",
        "hparams_search=saw_lr",
        "model.optimizer.lr=0.001,0.01",
        "model.optimizer.weight_decay=0.0",
        *on(small),
        "trainer.max_epochs=1",
        "logger=none",
        "callbacks.lr_monitor=null",
        *QUIET,
        f"paths.log_dir={tmp_path}/logs",
        "extras.print_config=false",
        f"hydra.sweep.dir={sweep}",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    GlobalHydra.instance().clear()
    train_module.main()
    GlobalHydra.instance().clear()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]

    result = load_script("collect_runs").main([str(sweep)])
    rows = read_csv(sweep / "runs.csv")
    assert [r["job"] for r in rows] == ["0", "1"] and result["swept"] == ["model.optimizer.lr"]
    header = list(rows[0])
    assert header[:4] == ["job", "state", "model.optimizer.lr", "val/score"]
    assert "test/score" in header and header[-1] == "output_dir"
    for row, lr in zip(rows, ("0.001", "0.01")):
        final = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert row["state"] == "complete" and row["model.optimizer.lr"] == lr
        assert float(row["val/score"]) == pytest.approx(final["val/score"])
    assert (sweep / "runs.png").stat().st_size > 1000
    # A job that left no metrics (it failed) is a row too, in state "failed".
    (sweep / "1" / "metrics.json").unlink()
    load_script("collect_runs").main([str(sweep), "--out", str(tmp_path / "again")])
    rows = read_csv(tmp_path / "again.csv")
    assert [r["state"] for r in rows] == ["complete", "failed"] and rows[1]["val/score"] == ""


@pytest.mark.skipif(not HAS_SUBMITIT, reason="pip install -e '.[slurm]'")
def test_slurm_launcher_config_asks_one_task_per_device(compose_cfg, tmp_path, monkeypatch):
    import hydra
    import submitit

    cfg = compose_cfg(
        "train",
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.num_nodes=2",
            "trainer.devices=4",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.partition=gpu",
        ],
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    params = hydra.utils.instantiate(launcher).params  # what the plugin submits with
    # The plugin's translation to submitit (its launch()), then submitit's sbatch header;
    # a fake `srun` on PATH stands in for a cluster.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    base = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb"}
    base |= {"nodes", "name", "stderr_to_stdout"}
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "submitit")
    executor.update_parameters(
        **{
            k if k in base else f"slurm_{k}": v
            for k, v in params.items()
            if k not in ("submitit_folder", "max_num_timeout")
        }
    )
    sbatch = executor._executor._make_submission_file_text("python train.py", "0")
    for line in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu"):
        assert f"#SBATCH {line}" in sbatch, line
    # Without DDP settings, a job is one task on one node.
    cfg = compose_cfg("train", ["hydra/launcher=slurm"], out="plain")
    assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.tasks_per_node) == (1, 1)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SUBMITIT, reason="pip install -e '.[slurm]'")
def test_submitit_launcher_runs_a_sweep(tmp_path, small):
    """The launcher plugin end to end, with its local executor (the SLURM one needs a cluster)."""
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        str(PROJECT_ROOT / "src" / "train.py"),
        "-m",
        "hydra/launcher=submitit_local",
        "model.optimizer.lr=0.001,0.01",
        *on(small),
        "trainer.max_epochs=1",
        *QUIET,
        f"paths.log_dir={tmp_path}/logs",
        "extras.print_config=false",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(cmd, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # What each submitit job handed back (its pickled result): job number -> value returned.
    returned = {}
    for path in (sweep / ".submitit").glob("*/*_result.pkl"):
        status, job_return = pickle.loads(path.read_bytes())
        assert status == "success", path
        returned[str(job_return.hydra_cfg.hydra.job.num)] = job_return.return_value
    assert sorted(returned) == ["0", "1"]
    scores = []
    for job, lr in (("0", 0.001), ("1", 0.01)):
        # Each job ran with its own learning rate and returned its own validation score ...
        config = OmegaConf.load(sweep / job / ".hydra" / "config.yaml")
        assert config.model.optimizer.lr == lr
        # ... trained and tested: complete, consistent test metrics.
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert_complete_metrics(metrics, VIMHDataset(small).params)
        assert returned[job] == pytest.approx(metrics["val/score"], abs=1e-6)
        scores.append(metrics["val/score"])
    assert scores[0] != scores[1]  # two learning rates, two results
