"""Hyperparameter search with Optuna: `python src/search.py hparams_search=<name> [overrides]`.

Hydra's Optuna sweeper pins Optuna < 3, so this entry point drives a current Optuna itself:
each trial composes the training config with the command line's overrides plus its sampled
values, runs the train task in this process (its run folder `<search folder>/trials/<n>`) and
returns `optimized_metric`. The study is persistent (`search.storage`, by default
`<search folder>/study.db`; `search.study_name`), so running the same command again continues
an interrupted search, retrying the trial that was cut short. A trial that raises or whose loss
is not finite is recorded as failed and the search goes on; the pruner stops unpromising trials
through Optuna's Lightning integration. The best trial is logged and written to `best.json`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import warnings
from dataclasses import asdict
from pathlib import Path

import hydra
import lightning as L
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.samplers import TPESampler
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from src.errors import ConfigError, NSMError
from src.paths import CONFIG_DIR
from src.train import train
from src.utils.config import compose_config
from src.utils.pylogger import RankedLogger
from src.utils.search_space import Param, check_keys, parse_space
from src.utils.utils import extras, get_metric_value, task_wrapper, user_errors

log = RankedLogger(__name__)

INTERRUPTED = "interrupted"  # user attribute of a trial cut short by Ctrl-C (retried on resume)


class TrialPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback (reports `optimized_metric` after each validation),
    ending the fit cleanly when the pruner says so, instead of raising out of Lightning's
    loop; the objective then raises TrialPruned."""

    pruned_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            self.pruned_epoch = pl_module.current_epoch
            trainer.should_stop = True


class FiniteLoss(L.Callback):
    """End a diverged trial at the first validation whose loss is not finite."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if not trainer.sanity_checking and loss is not None and not torch.isfinite(loss):
            raise FloatingPointError(f"val/loss is {float(loss)} at epoch {trainer.current_epoch}")


def task_overrides() -> list[str]:
    """The command line's overrides of this run (what every trial starts from)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


# Overrides that do not change what a trial learns: the search's own settings and cosmetics.
NOT_THE_PROBLEM = (
    "search.",
    "hydra.",
    "hydra/",
    "extras.",
    "paths.",
    "logger",
    "callbacks.rich_progress_bar",
    "callbacks.model_summary",
)


def fixed(overrides: list[str]) -> list[str]:
    """The overrides that define the trials' problem."""
    return [o for o in overrides if not o.lstrip("+~").startswith(NOT_THE_PROBLEM)]


def differences(stored: dict, now: dict) -> str:
    """What differs between two problems, in words."""
    out = []
    old, new = set(stored["overrides"]), set(now["overrides"])
    if old != new:
        out.append(f"overrides {sorted(old - new)} then, {sorted(new - old)} now")
    for name in sorted(set(stored["params"]) | set(now["params"])):
        then, later = stored["params"].get(name), now["params"].get(name)
        if then != later:
            out.append(f"search.params.{name} {then} then, {later} now")
    then, later = stored["optimized_metric"], now["optimized_metric"]
    if then != later:
        out.append(f"optimized_metric {then} then, {later} now")
    return "; ".join(out)


def open_study(cfg: DictConfig, folder: Path, space: tuple[Param, ...]) -> optuna.Study:
    """Create the study or load it to continue, checking it searches the same problem."""
    s = cfg.search
    url = s.get("storage") or f"sqlite:///{folder / 'study.db'}"
    # Heartbeats mark a trial whose process died (e.g. a preempted job) as failed; the
    # callback enqueues it again with the same parameters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=60, heartbeat_stale_trial_callback=retry
    )
    problem = {
        "overrides": fixed(task_overrides()),
        "params": {p.name: asdict(p) for p in space},
        "optimized_metric": cfg.optimized_metric,
    }
    study = optuna.create_study(
        storage=storage, study_name=s.study_name, direction=s.direction, load_if_exists=True
    )
    stored = study.user_attrs.get("problem")
    problem = json.loads(json.dumps(problem))  # as storage gives it back (lists, not tuples)
    if stored is None:
        study.set_user_attr("problem", problem)
        for params in s.get("enqueue") or []:
            study.enqueue_trial(OmegaConf.to_container(params, resolve=True))
    elif problem != stored:
        raise ConfigError(
            f"study {s.study_name!r} in {url} searched another problem ("
            f"{differences(stored, problem)}); use search.study_name=<new name> for a new study"
        )
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        retried = study.user_attrs.get("retried", [])
        if t.user_attrs.get(INTERRUPTED) and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            study.set_user_attr("retried", [*retried, t.number])
    seed = int(s.get("seed") or 0) + len(study.trials)  # a resumed search draws new points
    sampler = s.get("sampler")
    study.sampler = instantiate(sampler, seed=seed) if sampler else TPESampler(seed=seed)
    study.pruner = instantiate(s.pruner) if s.get("pruner") else optuna.pruners.NopPruner()
    return study


def counted(study: optuna.Study) -> int:
    """Trials that used up the budget: finished ones, except those cut short by Ctrl-C."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(
        not t.user_attrs.get(INTERRUPTED) for t in study.get_trials(deepcopy=False, states=done)
    )


def objective(cfg: DictConfig, folder: Path, space: tuple[Param, ...]):
    """A trial: compose the trial's config, train, return the optimized metric."""

    def run(trial: optuna.Trial) -> float:
        values = {p.name: p.suggest(trial) for p in space}
        overrides = [*task_overrides(), *(p.override(values[p.name]) for p in space)]
        out = folder / "trials" / str(trial.number)
        trial.set_user_attr("output_dir", str(out))
        trial_cfg = compose_config("train", overrides, return_hydra_config=False)
        with open_dict(trial_cfg):
            trial_cfg.paths = cfg.paths  # the search's folders, except the run's own
            trial_cfg.paths.output_dir = str(out)
        pruning = TrialPruning(trial, monitor=cfg.optimized_metric)
        log.info(f"Trial {trial.number}: {', '.join(f'{k}={v}' for k, v in values.items())}")
        try:
            metrics, objects = train(trial_cfg, callbacks=[pruning, FiniteLoss()])
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        del objects
        final = {k: float(v) for k, v in metrics.items()}
        trial.set_user_attr("metrics", final)
        if pruning.pruned_epoch is not None:
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_epoch}")
        value = get_metric_value(metrics, cfg.optimized_metric)
        if not math.isfinite(value) or not all(map(math.isfinite, final.values())):
            bad = sorted(k for k, v in final.items() if not math.isfinite(v))
            trial.set_user_attr("error", f"not finite: {bad}")
            raise FloatingPointError(f"trial {trial.number}: not finite: {bad}")
        return value

    return run


def write_best(study: optuna.Study, folder: Path) -> dict | None:
    """The best trial (number, value, params, run folder) in `best.json`; None if none completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    t = study.best_trial
    best = {"number": t.number, "value": t.value, "params": t.params, **t.user_attrs}
    path = folder / "best.json"
    tmp = path.with_name(".best.json.tmp")
    tmp.write_text(json.dumps(best, indent=2) + "\n")
    os.replace(tmp, path)
    return best


@task_wrapper
def search(cfg: DictConfig) -> tuple[dict, dict]:
    """Run (or continue) the study of `cfg.search`. Returns ({best_value, ...}, {study})."""
    if not cfg.get("search"):
        raise ConfigError(
            "no search config: pick an Optuna search with hparams_search=<name> (those with a "
            f"`search:` node in {CONFIG_DIR / 'hparams_search'}); grids run with train.py -m"
        )
    devices, strategy = cfg.trainer.get("devices", 1), str(cfg.trainer.get("strategy", "auto"))
    if strategy.startswith("ddp") or (isinstance(devices, int) and devices > 1):
        raise ConfigError(
            f"trainer.strategy={strategy}, trainer.devices={devices}: search trials run in the "
            "search's process on one device; run several searches on one study to use more"
        )
    space = parse_space(cfg.search.params)
    check_keys(space, cfg)
    folder = Path(cfg.paths.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    study = open_study(cfg, folder, space)
    n_trials = int(cfg.search.n_trials)
    remaining = n_trials - counted(study)
    log.info(
        f"Study {study.study_name!r}: {counted(study)} of {n_trials} trials done, "
        f"{max(remaining, 0)} to run; trials in {folder / 'trials'}"
    )

    def budget(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if counted(study) >= n_trials:  # also stops workers sharing the study
            study.stop()

    if remaining > 0:
        study.optimize(
            objective(cfg, folder, space),
            n_trials=remaining,
            timeout=cfg.search.get("timeout"),
            catch=(Exception,),
            callbacks=[budget],
            gc_after_trial=True,
        )
    gc.collect()
    states = {s.name.lower(): len(study.get_trials(states=(s,))) for s in TrialState}
    best = write_best(study, folder)
    if best is None:
        raise NSMError(
            f"study {study.study_name!r}: no trial completed ({states}); each failed trial's "
            f"error is in {folder / 'search.log'} and the study's user attributes"
        )
    log.info(
        f"Best trial {best['number']}: {cfg.optimized_metric}={best['value']:.4f} with "
        f"{best['params']} ({best.get('output_dir')}); trials: {states}"
    )
    return {"best_value": best["value"], "best_trial": best["number"], **states}, {"study": study}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        extras(cfg)
        metrics, _ = search(cfg)
        return metrics["best_value"]


if __name__ == "__main__":
    main()
