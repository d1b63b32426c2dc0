"""Evaluate a checkpoint on the test split: `python src/eval.py ckpt_path=... [data=...]`.

The checkpoint is read once and trusted for nothing: the task module is rebuilt from it (net
config and heads are stored in it) only after its hyperparameters pass the allow-list of
`src/models/tasks.py`, and only for data like the data it was trained on (every head's range
and classes, input shape, sample rate, spectrogram config). The datamodule takes its
normalisation statistics before setup, so none are computed only to be replaced. The test
metrics equal those at the end of training for the same checkpoint and data; the eval
callbacks add per-record reports (predictions CSV, confusion matrices, scatter plots) to the
run folder.
"""

from __future__ import annotations

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.callbacks.resynthesis import ResynthesisReport
from src.data.provision import build_datamodule
from src.errors import ConfigError
from src.models.tasks import (
    check_data_matches,
    checked_hyper_parameters,
    datamodule_state,
    module_from_checkpoint,
    read_checkpoint,
)
from src.paths import CONFIG_DIR
from src.utils.instantiators import build_trainer
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, task_wrapper, user_errors

log = RankedLogger(__name__)


@task_wrapper
def evaluate(cfg: DictConfig) -> tuple[dict, dict]:
    """Test a checkpoint. Returns (metrics, objects)."""
    ckpt = read_checkpoint(cfg.ckpt_path)
    checked_hyper_parameters(ckpt, cfg.ckpt_path)  # refused before anything is built
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg.data, cfg.paths.data_dir)
    # Everything is checked before anything is built: the checkpoint's hyperparameters
    # against the allow-list, its data against this dataset, the dataset's splits.
    check_data_matches(ckpt, datamodule, cfg.ckpt_path)
    datamodule.open_splits()
    model = module_from_checkpoint(ckpt, cfg.ckpt_path)
    datamodule.load_state_dict(datamodule_state(ckpt, datamodule))
    trainer = build_trainer(cfg)
    if cfg.get("refine"):
        reports = [c for c in trainer.callbacks if isinstance(c, ResynthesisReport)]
        if not reports:
            raise ConfigError(
                "refine=true adds refined rows to the resynthesis report; use "
                "callbacks=eval_audio (docs/sound_matching.md)"
            )
        for report in reports:
            report.refiner = instantiate(cfg.refiner)
    log.info(f"Testing {cfg.ckpt_path}")
    trainer.test(model=model, datamodule=datamodule)
    metrics = dict(trainer.callback_metrics)
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    with user_errors():
        extras(cfg)
        evaluate(cfg)


if __name__ == "__main__":
    main()
