"""Run folders: unique names, and the folder a resumed training continues in.

A run folder is `<paths.runs_dir>/<run id>`, the id being the start time to the millisecond
plus a random suffix, so runs started together never share a folder. A training resumed from
one of its own checkpoints (`ckpt_path=last`: the latest run of the same experiment with a
`checkpoints/last.ckpt`, or a path inside a run's `checkpoints/`) continues in that run's folder:
its checkpoint callback finds its own folder and keeps the best score and checkpoint, new logs
go beside the old ones, and the resumed run's configs go to `.hydra/resumed-<run id>/` so the
original ones stay. The Hydra configs call these functions through resolvers.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
CONFIG_SUBDIR = ".hydra"


def new_run_id() -> str:
    """`YYYY-MM-DD_HH-MM-SS-mmm_xxxx`: sorts by start time; the suffix keeps it unique."""
    now = datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S}-{now.microsecond // 1000:03d}_{secrets.token_hex(2)}"


def run_experiment(run: Path) -> str | None:
    """The `experiment` choice a run folder was started with (from its Hydra record)."""
    record = run / CONFIG_SUBDIR / "hydra.yaml"
    if not record.is_file():
        return None
    try:
        choice = OmegaConf.select(OmegaConf.load(record), "hydra.runtime.choices.experiment")
    except Exception:  # an unreadable record: not a run to resume
        return None
    return None if choice in (None, "null") else str(choice)


def latest_run(runs_dir: str | Path, experiment: str | None) -> Path | None:
    """The latest run of `experiment` under `runs_dir` that has `checkpoints/last.ckpt`."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    runs = sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.name)
    for run in reversed(runs):
        if (run / CHECKPOINTS / LAST).is_file() and run_experiment(run) == experiment:
            return run
    return None


def run_of_checkpoint(ckpt_path: str | Path) -> Path | None:
    """The run folder a checkpoint file lives in (`<run>/checkpoints/x.ckpt`), if any."""
    path = Path(ckpt_path)
    run = path.parent.parent
    if path.parent.name == CHECKPOINTS and (run / CONFIG_SUBDIR).is_dir():
        return run
    return None


def resume_run(runs_dir: str | Path, ckpt_path: str | None, experiment: str | None) -> Path | None:
    """The run folder a training with this `ckpt_path` continues in, or None for a new one."""
    if not ckpt_path:
        return None
    if str(ckpt_path) == "last":
        return latest_run(runs_dir, experiment)
    return run_of_checkpoint(ckpt_path)


def experiment_choice(cfg: DictConfig) -> str | None:
    """The `experiment` choice of a composed config (with its `hydra` node)."""
    choice = OmegaConf.select(cfg, "hydra.runtime.choices.experiment", default=None)
    return None if choice in (None, "null") else str(choice)


def current_experiment() -> str | None:
    """The `experiment` choice of the running Hydra app (None outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("experiment")
    return None if choice in (None, "null") else str(choice)


def _run_dir(runs_dir: str, ckpt_path: str | None, experiment: str | None) -> str:
    run = resume_run(runs_dir, ckpt_path, experiment)
    return str(run) if run is not None else f"{runs_dir}/{new_run_id()}"


def _config_subdir(runs_dir: str, ckpt_path: str | None, experiment: str | None) -> str:
    run = resume_run(runs_dir, ckpt_path, experiment)
    return CONFIG_SUBDIR if run is None else f"{CONFIG_SUBDIR}/resumed-{new_run_id()}"


def register_run_resolvers() -> None:
    """`${nsm_run_id:}`, `${nsm_run_dir:runs_dir,ckpt_path,experiment}` and
    `${nsm_config_subdir:...}`, cached per config (as Hydra's `now`), so a run and the copies
    Hydra makes of its config agree on one value."""
    resolvers = {
        "nsm_run_id": new_run_id,
        "nsm_run_dir": _run_dir,
        "nsm_config_subdir": _config_subdir,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)
