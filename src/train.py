"""Train a multihead model on a VIMH dataset: `python src/train.py [experiment=...] [overrides]`.

The datamodule is built first; its heads (from the dataset metadata) and input shape are passed
to the model's instantiation, so no layer is ever built from placeholders.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
if str(ROOT) not in sys.path:  # `python src/train.py` from a checkout without an install
    sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from src.utils.instantiators import instantiate_callbacks, instantiate_loggers  # noqa: E402
from src.utils.pylogger import RankedLogger  # noqa: E402
from src.utils.utils import build_datamodule, extras, get_metric_value, task_wrapper  # noqa: E402

log = RankedLogger(__name__)


def build(cfg: DictConfig) -> dict:
    """Datamodule, model (heads from the data), callbacks, loggers and trainer from `cfg`."""
    datamodule = build_datamodule(cfg.data)
    heads = [{"name": p.name, **p.mapping()} for p in datamodule.heads]
    log.info(
        f"Dataset {cfg.data.data_dir}: input {tuple(datamodule.input_shape)}, heads "
        + ", ".join(f"{p.name} ({p.num_classes} classes)" for p in datamodule.heads)
    )
    tcfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    compile_net = bool(tcfg.pop("compile", False))
    matmul_precision = tcfg.pop("matmul_precision", None)
    if matmul_precision:
        torch.set_float32_matmul_precision(matmul_precision)
    model = instantiate(
        cfg.model,
        heads=heads,
        input_shape=list(datamodule.input_shape),
        compile=compile_net,
    )
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate(tcfg, callbacks=callbacks, logger=loggers or False)
    return {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "callbacks": callbacks,
        "logger": loggers,
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


@task_wrapper
def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Fit, then test the best checkpoint. Returns (metrics, objects) so tests can call it."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    objects = build(cfg)
    trainer, model, datamodule = objects["trainer"], objects["model"], objects["datamodule"]
    log_hyperparameters(objects)

    if cfg.get("train"):
        log.info("Starting training")
        # Our checkpoints hold only tensors and plain containers: load them weights-only.
        trainer.fit(
            model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
        )
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
    return {**train_metrics, **test_metrics}, objects


@hydra.main(version_base="1.3", config_path=str(ROOT / "configs"), config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    extras(cfg)
    metrics, _ = train(cfg)
    return get_metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
