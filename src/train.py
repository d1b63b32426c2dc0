"""Train a model on a VIMH dataset: `python src/train.py [experiment=...] [overrides]`.

The datamodule is built first (its dataset generated on first use); the data's `spec` (heads,
input kind and shape, sample rate) is passed to the model's instantiation, so no layer is ever
built from placeholders and no model config restates a dataset fact.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from src.data.provision import build_datamodule
from src.errors import ConfigError, DataError
from src.models.tasks import check_data_matches, read_checkpoint, task_of
from src.paths import CONFIG_DIR
from src.utils.instantiators import build_trainer
from src.utils.pylogger import RankedLogger
from src.utils.runs import CHECKPOINTS, LAST, current_experiment, latest_run, run_of_checkpoint
from src.utils.utils import extras, get_metric_value, task_wrapper, user_errors, write_metrics

log = RankedLogger(__name__)


def build(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Datamodule, model (built for the data), callbacks, loggers and trainer from `cfg`;
    `callbacks` are added to the configured ones (e.g. a search's pruning callback)."""
    datamodule = build_datamodule(cfg.data, cfg.paths.data_dir)
    datamodule.open_splits()  # a missing or empty split fails here, before any training
    spec = datamodule.spec
    log.info(f"Dataset {datamodule.data_dir}: {spec.describe()}")
    model = instantiate(
        cfg.model, **spec.model_kwargs(), compile=bool(cfg.trainer.get("compile", False))
    )
    trainer = build_trainer(cfg, callbacks)
    return {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "callbacks": trainer.callbacks,
        "logger": trainer.loggers,
        "trainer": trainer,
    }


def log_hyperparameters(objects: dict) -> None:
    """Send the run's config and parameter counts to every logger."""
    trainer, model, cfg = objects["trainer"], objects["model"], objects["cfg"]
    if not trainer.loggers:
        return
    params = {
        "model/params/total": sum(p.numel() for p in model.parameters()),
        "model/params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    hparams = {
        k: OmegaConf.to_container(cfg[k], resolve=True)
        if isinstance(cfg[k], DictConfig)
        else cfg[k]
        for k in ("data", "model", "trainer", "callbacks", "task_name", "tags", "ckpt_path", "seed")
        if k in cfg
    }
    for lg in trainer.loggers:
        lg.log_hyperparams({**hparams, **params})


def resume_checkpoint(cfg: DictConfig, objects: dict) -> str | None:
    """The checkpoint `cfg.ckpt_path` names (`last`: the latest run of this experiment with a
    last.ckpt), read and checked against this run's task, model and data; None when not
    resuming. A garbage file or a checkpoint of other data gets a clear error here rather
    than a traceback from inside Lightning."""
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path:
        return None
    if str(ckpt_path) == "last":
        experiment = current_experiment()
        run = latest_run(cfg.paths.runs_dir, experiment)
        if run is None:
            raise ConfigError(
                f"ckpt_path=last: no run of experiment={experiment} under {cfg.paths.runs_dir} "
                f"has {CHECKPOINTS}/{LAST}; start without ckpt_path, or give a checkpoint path"
            )
        path = run / CHECKPOINTS / LAST
    else:
        path = Path(ckpt_path)
    ckpt = read_checkpoint(path)
    model = objects["model"]
    task = task_of(ckpt, path)
    if task is not type(model):
        raise DataError(f"{path} holds a {task.__name__}, not a {type(model).__name__}")
    check_data_matches(ckpt, objects["datamodule"], path)
    saved = ckpt["hyper_parameters"]
    for key in ("net", "head_modes"):
        if key in saved and saved[key] != model.hparams.get(key):
            raise ConfigError(
                f"{path} was trained with model.{key}={saved[key]}, this run has "
                f"{model.hparams.get(key)}; resume with the same model config"
            )
    run = run_of_checkpoint(path)
    here = Path(cfg.paths.output_dir)
    if run is None or run.resolve() != here.resolve():
        log.warning(
            f"Resuming {path} in another folder ({here}): its best checkpoint and score stay "
            f"behind, so the test may use a checkpoint worse than the best so far"
        )
    log.info(f"Resuming from {path} (epoch {ckpt.get('epoch')}, step {ckpt.get('global_step')})")
    return str(path)


@task_wrapper
def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> tuple[dict, dict]:
    """Fit, then test the best checkpoint; the final metrics also go to `metrics.json` in the
    run folder. Returns (metrics, objects) so tests and the search can call it."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    objects = build(cfg, callbacks)
    trainer, model, datamodule = objects["trainer"], objects["model"], objects["datamodule"]
    log_hyperparameters(objects)

    if cfg.get("train"):
        ckpt_path = resume_checkpoint(cfg, objects)
        log.info("Starting training")
        # Our checkpoints hold only tensors and plain containers: load them weights-only.
        try:
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException as e:
            log.warning("Stopped by SIGTERM; continue with ckpt_path=last (same overrides)")
            raise SystemExit(128 + signal.SIGTERM) from e
    train_metrics = dict(trainer.callback_metrics)

    if cfg.get("test"):
        ckpt = None
        if trainer.checkpoint_callback is not None:
            ckpt = trainer.checkpoint_callback.best_model_path or None
        if ckpt is None:
            log.warning("No best checkpoint found: testing the current weights")
        else:
            log.info(f"Testing the best checkpoint: {ckpt}")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    test_metrics = dict(trainer.callback_metrics)
    metrics = {**train_metrics, **test_metrics}
    if trainer.is_global_zero:
        write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
    return metrics, objects


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    with user_errors():
        if cfg.get("search"):
            raise ConfigError("this hparams_search config is an Optuna search: run src/search.py")
        extras(cfg)
        metrics, _ = train(cfg)
        return get_metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
